"""Just enough Ed25519 arithmetic (RFC 8032 §5.1) to build signatures that a strict verifier
must refuse for exactly one reason each (ENV-8).

Independent of the reference, which verifies with libsodium: the vectors' bytes come from
here, their expected results from the spec, and the generator checks that the reference
agrees. Variable-time and slow; for building test inputs only.
"""

from __future__ import annotations

import hashlib

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493  # the order of the base point
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

# Extended coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, x*y = T/Z.
Point = tuple[int, int, int, int]
IDENTITY: Point = (0, 1, 1, 0)


def add(p: Point, q: Point) -> Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % P
    b = (p[1] + p[0]) * (q[1] + q[0]) % P
    c = 2 * p[3] * q[3] * D % P
    d = 2 * p[2] * q[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def mul(n: int, p: Point) -> Point:
    result = IDENTITY
    while n > 0:
        if n & 1:
            result = add(result, p)
        p = add(p, p)
        n >>= 1
    return result


def neg(p: Point) -> Point:
    return (-p[0] % P, p[1], p[2], -p[3] % P)


def encode(p: Point) -> bytes:
    zinv = pow(p[2], P - 2, P)
    x, y = p[0] * zinv % P, p[1] * zinv % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def decode(s: bytes) -> Point:
    """RFC 8032 §5.1.3; raises ValueError for a string that encodes no point or a
    non-canonical one."""
    n = int.from_bytes(s, "little")
    y, sign = n & ((1 << 255) - 1), n >> 255
    if y >= P:
        raise ValueError("y is not reduced")
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P == (-u) % P:
        x = x * SQRT_M1 % P
    elif v * x * x % P != u:
        raise ValueError("not on the curve")
    if x == 0 and sign:
        raise ValueError("negative zero x")
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def same(p: Point, q: Point) -> bool:
    return encode(p) == encode(q)


_BY = 4 * pow(5, P - 2, P) % P
B = decode(_BY.to_bytes(32, "little"))
# A point of order 8 (the first entry of libsodium's list of small-order encodings).
T8 = decode(bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"))
assert not same(mul(4, T8), IDENTITY) and same(mul(8, T8), IDENTITY)
assert same(mul(L, B), IDENTITY)


def secret_scalar(seed: bytes) -> int:
    """The clamped scalar of RFC 8032 §5.1.5 for a 32-byte seed."""
    a = int.from_bytes(hashlib.sha512(seed).digest()[:32], "little")
    return (a & ((1 << 254) - 8)) | (1 << 254)


def challenge(r: bytes, a: bytes, message: bytes) -> int:
    """SHA-512(R || A || M) as an integer, not reduced."""
    return int.from_bytes(hashlib.sha512(r + a + message).digest(), "little")


def signature(r: bytes, s: int) -> bytes:
    return r + s.to_bytes(32, "little")
