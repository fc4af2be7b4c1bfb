"""Cases for the signed envelope (spec/01-encoding.md §3).

``open``: decode and check ``input.cbor`` as an envelope of ``params.expected_type`` (null: any
type the receiver understands); a valid one yields ``envelope.json``.
``seal``: sign ``body.json`` as type ``params.t`` version ``params.v`` with the key whose seed
is ``params.seed``; yields ``signing_input.bin`` and ``envelope.cbor``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

from conformance.cases import ed25519
from conformance.cases.common import ALICE, BASE_AD, BOB, assemble, key, seal, sign_bytes
from conformance.jsonform import to_json
from conformance.model import Case, Expected, Inputs, reject, valid
from p2pnode.identity import Identity
from p2pnode.wire import cbor, envelope
from p2pnode.wire.reasons import Reason

AD = "caps.ad"
BODY = BASE_AD.to_body()
BODY_BYTES = cbor.encode(BODY)
K = ALICE.public_key
SIG = sign_bytes(ALICE, BODY_BYTES)
GOOD = seal(BODY)
L = ed25519.L


def _fields(**changes: Any) -> dict[Any, Any]:
    m: dict[Any, Any] = {"t": AD, "v": 1, "b": BODY, "k": K, "s": SIG}
    for name, v in changes.items():
        if v is None:
            del m[name]
        else:
            m[name] = v
    return m


def _env(**changes: Any) -> bytes:
    return cbor.encode(_fields(**changes))


def _case(name: str, data: bytes, expected: Expected, desc: str, rules: tuple[str, ...],
          expected_type: str | None = AD) -> Case:
    return Case(name, Inputs({"input.cbor": data}, {"expected_type": expected_type}),
                expected, desc, rules)


def _flip(b: bytes, i: int) -> bytes:
    return b[:i] + bytes([b[i] ^ 0x01]) + b[i + 1 :]


def open_() -> Iterator[Case]:
    # valid
    yield _case("valid_caps_ad", GOOD, valid(), "a capability ad signed by its author",
                ("ENV-1", "ENV-7", "ENV-8", "ENV-10"))
    yield _case("valid_any_type", GOOD, valid(),
                "the same envelope with no expected type: any type the receiver understands",
                ("ENV-5",), expected_type=None)
    yield _case("valid_null_body", seal(None), valid(),
                "the envelope layer does not look inside b: a null body is a valid envelope "
                "(the caps rules then reject it)", ("ENV-11",))
    # ENV-1: structure
    yield _case("not_a_map", cbor.encode([AD, 1, BODY, K, SIG]), reject(Reason.BAD_ENVELOPE),
                "an array holding the five fields", ("ENV-1",))
    yield _case("missing_s", _env(s=None), reject(Reason.BAD_ENVELOPE), "no signature field",
                ("ENV-1",))
    yield _case("missing_b", _env(b=None), reject(Reason.BAD_ENVELOPE), "no body field",
                ("ENV-1",))
    yield _case("unknown_field", _env(x=1), reject(Reason.UNKNOWN_FIELD),
                'a sixth field "x"', ("ENV-1",))
    with_int_key = _fields()
    with_int_key[0] = 0
    yield _case("unknown_int_field", cbor.encode(with_int_key), reject(Reason.UNKNOWN_FIELD),
                "a sixth field with the integer key 0", ("ENV-1",))
    # ENV-2: t and v
    yield _case("t_empty", _env(t=""), reject(Reason.BAD_ENVELOPE), "an empty type name",
                ("ENV-2",))
    yield _case("t_bytes", _env(t=AD.encode()), reject(Reason.BAD_ENVELOPE),
                "the type name as a byte string", ("ENV-2",))
    yield _case("t_33_bytes", _env(t="a" * 33), reject(Reason.BAD_ENVELOPE),
                "a 33-byte type name", ("ENV-2",))
    yield _case("t_33_bytes_17_characters", _env(t="\u00e9" * 16 + "a"),
                reject(Reason.BAD_ENVELOPE),
                "17 characters but 33 bytes of UTF-8: the limit counts bytes", ("ENV-2",))
    yield _case("v_negative", _env(v=-1), reject(Reason.BAD_ENVELOPE), "version -1",
                ("ENV-2",))
    yield _case("v_text", _env(v="1"), reject(Reason.BAD_ENVELOPE), 'version "1"', ("ENV-2",))
    yield _case("v_true", _env(v=True), reject(Reason.BAD_ENVELOPE),
                "version true: booleans are not integers", ("ENV-2",))
    # ENV-3, ENV-4: key and signature sizes
    yield _case("k_31_bytes", _env(k=K[:31]), reject(Reason.BAD_KEY), "a 31-byte key",
                ("ENV-3",))
    yield _case("k_33_bytes", _env(k=K + b"\x00"), reject(Reason.BAD_KEY), "a 33-byte key",
                ("ENV-3",))
    yield _case("k_text", _env(k=K.hex()), reject(Reason.BAD_KEY),
                "the key as a hex text string", ("ENV-3",))
    yield _case("s_63_bytes", _env(s=SIG[:63]), reject(Reason.BAD_SIGNATURE),
                "a 63-byte signature", ("ENV-4",))
    yield _case("s_65_bytes", _env(s=SIG + b"\x00"), reject(Reason.BAD_SIGNATURE),
                "a 65-byte signature", ("ENV-4",))
    yield _case("s_text", _env(s=SIG.hex()), reject(Reason.BAD_SIGNATURE),
                "the signature as a hex text string", ("ENV-4",))
    # ENV-5: type and version
    yield _case("unknown_type", seal(BODY, t="jobs.spec"), reject(Reason.UNKNOWN_TYPE),
                'a correctly signed envelope of type "jobs.spec" where "caps.ad" is expected',
                ("ENV-5",))
    yield _case("unknown_type_any", seal(BODY, t="jobs.spec"), reject(Reason.UNKNOWN_TYPE),
                'type "jobs.spec", which the receiver does not understand', ("ENV-5",),
                expected_type=None)
    yield _case("unsupported_version_2", seal(BODY, v=2), reject(Reason.UNSUPPORTED_VERSION),
                "caps.ad version 2, correctly signed", ("ENV-5",))
    yield _case("unsupported_version_0", seal(BODY, v=0), reject(Reason.UNSUPPORTED_VERSION),
                "caps.ad version 0, correctly signed", ("ENV-5",))
    # ENV-6: size
    big = seal({"pad": bytes(5000)})
    yield _case("too_large", big, reject(Reason.TOO_LARGE),
                "a correctly signed caps.ad envelope of %d bytes, over the 4096 limit" % len(big),
                ("ENV-6",))
    yield _case("too_large_before_decoding", b"\xff" * 4097, reject(Reason.TOO_LARGE),
                "4097 bytes that are not CBOR: the size is checked before decoding",
                ("ENV-6", "ENC-10"))
    # ENV-6 with no expected type: the type's own limit, once t is read
    yield _case("too_large_any_type", big, reject(Reason.TOO_LARGE),
                "the same %d-byte caps.ad envelope with no expected type: under the largest "
                "limit of any type (8704), over caps.ad's own, checked once t is read"
                % len(big), ("ENV-6",), expected_type=None)
    spec_sized = seal({"pad": bytes(5000)}, t="job.spec")
    yield _case("large_job_spec_any_type", spec_sized, valid(),
                "a correctly signed job.spec envelope of %d bytes with no expected type: "
                "over caps.ad's limit, under job.spec's (8192), valid" % len(spec_sized),
                ("ENV-6",), expected_type=None)
    yield _case("too_large_any_type_before_decoding", b"\xff" * 8705, reject(Reason.TOO_LARGE),
                "8705 bytes that are not CBOR and no expected type: over the largest limit of "
                "any type (job.offer, 8704), refused before decoding", ("ENV-6", "ENC-10"),
                expected_type=None)
    yield _case("largest_limit_any_type_decodes", b"\xff" * 8704,
                reject(Reason.INDEFINITE_LENGTH),
                "8704 bytes that are not CBOR and no expected type: within the largest limit, "
                "so decoding starts and meets a stray break byte", ("ENV-6", "ENC-4"),
                expected_type=None)
    # ENV-7, ENV-8: the signature
    yield _case("bad_signature", _env(s=_flip(SIG, 10)), reject(Reason.BAD_SIGNATURE),
                "one bit of R flipped", ("ENV-8",))
    yield _case("bad_signature_s_part", _env(s=_flip(SIG, 40)), reject(Reason.BAD_SIGNATURE),
                "one bit of S flipped", ("ENV-8",))
    yield _case("body_modified", _env(b={**BODY, "seq": BODY["seq"] + 1}),
                reject(Reason.BAD_SIGNATURE), "the seq in the body raised after signing",
                ("ENV-8",))
    yield _case("signer_swapped", _env(k=BOB.public_key), reject(Reason.BAD_SIGNATURE),
                "signed by alice, claiming bob's key", ("ENV-8",))
    yield _case("signed_by_other_key", _env(s=sign_bytes(BOB, BODY_BYTES)),
                reject(Reason.BAD_SIGNATURE), "alice's key, bob's signature", ("ENV-8",))
    yield _case("domain_other_type", _env(s=sign_bytes(ALICE, BODY_BYTES, t="jobs.spec")),
                reject(Reason.BAD_SIGNATURE),
                'a signature made for type "jobs.spec" presented as caps.ad', ("ENV-7",))
    yield _case("domain_other_version", _env(s=sign_bytes(ALICE, BODY_BYTES, v=2)),
                reject(Reason.BAD_SIGNATURE),
                "a signature made for caps.ad version 2 presented as version 1", ("ENV-7",))
    yield _case("domain_missing", _env(s=ALICE.sign(BODY_BYTES)), reject(Reason.BAD_SIGNATURE),
                "a signature over the bare body, without the signing-input header", ("ENV-7",))
    yield _case("domain_other_protocol_version",
                _env(s=ALICE.sign(b"p2pnode/v2/caps.ad/1\x00" + BODY_BYTES)),
                reject(Reason.BAD_SIGNATURE), 'a signature under the domain "p2pnode/v2/"',
                ("ENV-7",))
    yield _case("domain_leading_zero_version",
                _env(s=ALICE.sign(b"p2pnode/v1/caps.ad/01\x00" + BODY_BYTES)),
                reject(Reason.BAD_SIGNATURE),
                'a signature with the version written "01": decimal has no leading zeros',
                ("ENV-7",))
    small = {"x": 1}
    yield _case("signed_non_canonical_body",
                _env(b=small, s=sign_bytes(ALICE, bytes.fromhex("a161781801"))),
                reject(Reason.BAD_SIGNATURE),
                'the signature covers {"x": 1} encoded with a non-canonical 1 (0x1801); the '
                "envelope carries the canonical body: the signer must sign canonical bytes",
                ("ENV-7",))
    nc = bytes.fromhex("a161781801")
    yield _case("non_canonical_body", assemble(nc, k=K, s=sign_bytes(ALICE, nc)),
                reject(Reason.NON_CANONICAL),
                "the body inside the envelope is not canonical, though the signature covers "
                "exactly its bytes: the envelope does not decode", ("ENC-3", "ENV-7"))
    identity_point = bytes([1]) + bytes(31)
    yield _case("k_small_order", _env(b=BODY, k=identity_point, s=identity_point + bytes(32)),
                reject(Reason.BAD_SIGNATURE),
                "the identity point as key and (R = identity, S = 0) as signature: satisfies "
                "the cofactorless equation for every message, and must be refused",
                ("ENV-8",))
    yield from _ed25519_strictness()
    s_int = int.from_bytes(SIG[32:], "little")
    yield _case("s_scalar_not_reduced",
                _env(s=SIG[:32] + (s_int + L).to_bytes(32, "little")),
                reject(Reason.BAD_SIGNATURE),
                "a valid signature with L added to S: S must be less than L", ("ENV-8",))
    # decoding applies to the envelope as a whole
    yield _case("keys_out_of_order",
                bytes([0xA5]) + b"".join(
                    cbor.encode(x) for x in ("t", AD, "v", 1, "b", BODY, "k", K, "s", SIG)),
                reject(Reason.NON_CANONICAL),
                "the five fields in the order t, v, b, k, s", ("ENC-6", "ENV-1"))
    yield _case("trailing_bytes", GOOD + b"\x00", reject(Reason.TRAILING_BYTES),
                "a valid envelope followed by one byte", ("ENC-9",))
    yield _case("truncated", GOOD[:-1], reject(Reason.TRUNCATED),
                "a valid envelope without its last byte", ("ENC-9",))
    # order of checks (ENV-9)
    yield _case("order_unknown_before_missing", _env(x=1, s=None),
                reject(Reason.UNKNOWN_FIELD),
                "an extra field and a missing one: unknown fields are checked first",
                ("ENV-9", "ENV-1"))
    yield _case("order_key_before_type", _env(t="jobs.spec", k=K[:31]),
                reject(Reason.BAD_KEY),
                "a short key and an unknown type: field sizes are checked before the type",
                ("ENV-9", "ENV-3"))
    yield _case("order_type_before_signature", _env(t="jobs.spec"),
                reject(Reason.UNKNOWN_TYPE),
                "an unknown type whose signature (made for caps.ad) does not verify: the type "
                "is checked before the signature", ("ENV-9", "ENV-5"))


def _nonce(label: str) -> int:
    return int.from_bytes(hashlib.sha512(b"p2pnode conformance nonce " + label.encode())
                          .digest(), "little") % L


def _ed25519_strictness() -> Iterator[Case]:
    """One signature per check of ENV-8 that only that check refuses: a verifier that skips
    it, or uses the cofactored equation instead of the cofactorless one, accepts exactly one
    of these three and passes every other vector."""
    message = envelope.signing_input(AD, 1, BODY_BYTES)
    a = ed25519.secret_scalar(ALICE.seed)
    big_a = ed25519.mul(a, ed25519.B)
    assert ed25519.encode(big_a) == K

    # R = [r]B + T with T of order 8 and S = r + h*a: [S]B = R - T, so the cofactorless
    # equation fails while [8][S]B = [8]R + [8][h]A holds.
    r = _nonce("cofactored")
    big_r = ed25519.add(ed25519.mul(r, ed25519.B), ed25519.T8)
    r_bytes = ed25519.encode(big_r)
    h = ed25519.challenge(r_bytes, K, message) % L
    sig = ed25519.signature(r_bytes, (r + h * a) % L)
    yield _case("cofactored_equation_only", _env(s=sig), reject(Reason.BAD_SIGNATURE),
                "alice's key; R = [r]B + T with T of order 8, S = r + h*a: the cofactored "
                "equation [8][S]B = [8]R + [8][h]A holds, the cofactorless one does not; "
                "neither the key nor R is of small order", ("ENV-8",))

    # k of order 8 and R = [r]B, S = r, with r chosen so that 8 divides h (reduced mod L
    # or not): then [h]k is the identity and [S]B = R + [h]k holds.
    t8 = ed25519.encode(ed25519.T8)
    r = _nonce("small order key")
    big_r = ed25519.mul(r, ed25519.B)
    while True:
        r_bytes = ed25519.encode(big_r)
        h_full = ed25519.challenge(r_bytes, t8, message)
        if h_full % 8 == 0 and h_full % L % 8 == 0:
            break
        r, big_r = r + 1, ed25519.add(big_r, ed25519.B)
    assert ed25519.same(ed25519.mul(r % L, ed25519.B),
                        ed25519.add(big_r, ed25519.mul(h_full % L, ed25519.T8)))
    yield _case("k_small_order_alone", _env(k=t8, s=ed25519.signature(r_bytes, r % L)),
                reject(Reason.BAD_SIGNATURE),
                "k is a point of order 8 (not the identity); R = [r]B is of large order and "
                "[S]B = R + [h]k holds because 8 divides h: only the small-order check of k "
                "refuses it", ("ENV-8",))

    # R the identity and S = h*a: [S]B = [h]A = R + [h]A, cofactorless; k is alice's.
    r_bytes = ed25519.encode(ed25519.IDENTITY)
    h = ed25519.challenge(r_bytes, K, message) % L
    yield _case("r_small_order_alone", _env(s=ed25519.signature(r_bytes, h * a % L)),
                reject(Reason.BAD_SIGNATURE),
                "alice's key; R is the identity point and S = h*a, so [S]B = R + [h]A "
                "holds: only the small-order check of R refuses it", ("ENV-8",))


RFC8032_TEST1 = Identity(bytes.fromhex(
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))


def _seal_case(name: str, ident: Identity, t: str, v: int, body: Any, desc: str,
               rules: tuple[str, ...], body_json: Any = None) -> Case:
    body_bytes = cbor.encode(body)
    header = b"p2pnode/v1/" + t.encode() + b"/" + str(v).encode() + b"\x00"
    return Case(
        name,
        Inputs({"body.json": body_json if body_json is not None else to_json(body)},
               {"seed": ident.seed.hex(), "t": t, "v": v}),
        valid({"signing_input.bin": header + body_bytes}),
        desc, rules)


def seal_() -> Iterator[Case]:
    yield _seal_case("caps_ad", ALICE, AD, 1, BODY,
                     "alice signs the sample capability ad", ("ENV-7", "ID-1"))
    yield _seal_case("other_type_and_version", ALICE, "jobs.spec", 12, BODY,
                     "the same body as type jobs.spec version 12: another signing input, "
                     "another signature", ("ENV-7",))
    yield _seal_case("version_zero", ALICE, AD, 0, BODY,
                     'version 0 is written "0" in the signing input', ("ENV-7",))
    unsorted = {"map": [["zz", {"int": "1"}], ["a", {"int": "2"}], [{"int": "-1"}, None]]}
    yield _seal_case("body_sorted", BOB, AD, 1, {"zz": 1, "a": 2, -1: None},
                     "a body given with its keys out of order is signed, and sent, in "
                     "canonical order", ("ENV-7", "ENC-13"), body_json=unsorted)
    yield _seal_case("null_body", BOB, AD, 1, None, "a null body", ("ENV-7",))
    yield _seal_case("rfc8032_key", RFC8032_TEST1, AD, 1, BODY,
                     "the key of RFC 8032 section 7.1 test 1", ("ENV-7", "ID-1"))
    yield _seal_case("nested_body", key("carol"), "test.nested", 3,
                     {"list": [1, -1, b"\x00", "x", [True, False, None]], 2: {"k": {}}},
                     "a body using every type of the profile", ("ENV-7", "ENC-1"))


HANDLERS: dict[str, Callable[[], Iterator[Case]]] = {"open": open_, "seal": seal_}
