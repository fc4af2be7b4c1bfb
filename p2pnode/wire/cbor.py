"""Deterministic CBOR, the p2pnode profile (spec/01-encoding.md §2).

The profile is RFC 8949 §4.2.1 "core deterministic encoding" restricted to the types a
protocol object needs: unsigned and negative integers of at most 64 bits, byte strings,
UTF-8 text strings, arrays, maps, false, true and null. Floats, tags, undefined, other
simple values and indefinite lengths are outside the profile.

The decoder is strict: any input that is not the one canonical encoding of its value is
rejected with a reason code, so that ``encode(decode(b)) == b`` for every accepted ``b``
and a signature over the canonical bytes of a body covers exactly one byte string.
"""

from __future__ import annotations

import struct
from typing import Any

from p2pnode.wire.reasons import Reason, WireError

# Hard limits of the decoder itself; message types set tighter ones (spec 01 §4).
MAX_MESSAGE_SIZE = 1 << 20
MAX_DEPTH = 16

_MT_UINT, _MT_NINT, _MT_BYTES, _MT_TEXT, _MT_ARRAY, _MT_MAP, _MT_TAG, _MT_SIMPLE = range(8)
_UINT64_MAX = (1 << 64) - 1

CborValue = Any  # int | bytes | str | list | dict | bool | None


def _head(major: int, arg: int) -> bytes:
    mt = major << 5
    if arg < 24:
        return bytes((mt | arg,))
    if arg <= 0xFF:
        return bytes((mt | 24, arg))
    if arg <= 0xFFFF:
        return bytes((mt | 25,)) + struct.pack(">H", arg)
    if arg <= 0xFFFFFFFF:
        return bytes((mt | 26,)) + struct.pack(">I", arg)
    return bytes((mt | 27,)) + struct.pack(">Q", arg)


def _encode(value: CborValue, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise WireError(Reason.TOO_DEEP, "nesting deeper than %d" % MAX_DEPTH)
    # bool before int: bool is a subclass of int in Python.
    if value is False:
        out.append(b"\xf4")
    elif value is True:
        out.append(b"\xf5")
    elif value is None:
        out.append(b"\xf6")
    elif isinstance(value, int):
        if value >= 0:
            if value > _UINT64_MAX:
                raise WireError(Reason.UNSUPPORTED_TYPE, "integer exceeds 64 bits")
            out.append(_head(_MT_UINT, value))
        else:
            n = -1 - value
            if n > _UINT64_MAX:
                raise WireError(Reason.UNSUPPORTED_TYPE, "integer exceeds 64 bits")
            out.append(_head(_MT_NINT, n))
    elif isinstance(value, bytes | bytearray | memoryview):
        b = bytes(value)
        out.append(_head(_MT_BYTES, len(b)))
        out.append(b)
    elif isinstance(value, str):
        try:
            b = value.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate has no UTF-8 form
            raise WireError(Reason.MALFORMED, "text is not valid Unicode") from e
        out.append(_head(_MT_TEXT, len(b)))
        out.append(b)
    elif isinstance(value, list | tuple):
        out.append(_head(_MT_ARRAY, len(value)))
        for item in value:
            _encode(item, out, depth + 1)
    elif isinstance(value, dict):
        pairs = []
        for k, v in value.items():
            if not isinstance(k, str | int) or isinstance(k, bool):
                raise WireError(Reason.UNSUPPORTED_TYPE, "map keys are text or integers")
            kb: list[bytes] = []
            _encode(k, kb, depth + 1)
            pairs.append((b"".join(kb), v))
        pairs.sort(key=lambda p: p[0])
        for i in range(1, len(pairs)):
            if pairs[i][0] == pairs[i - 1][0]:
                raise WireError(Reason.DUPLICATE_KEY)
        out.append(_head(_MT_MAP, len(pairs)))
        for kb_, v in pairs:
            out.append(kb_)
            _encode(v, out, depth + 1)
    elif isinstance(value, float):
        raise WireError(Reason.FLOAT_FORBIDDEN, "floats are not part of the p2pnode profile")
    else:
        raise WireError(Reason.UNSUPPORTED_TYPE, type(value).__name__)


def encode(value: CborValue) -> bytes:
    """Encode ``value`` to its one canonical byte string."""
    out: list[bytes] = []
    _encode(value, out, 0)
    return b"".join(out)


class _Decoder:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise WireError(Reason.TRUNCATED, "need %d bytes at offset %d" % (n, self.pos))
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def _arg(self, ai: int) -> int:
        if ai < 24:
            return ai
        if ai == 24:
            v = self._take(1)[0]
            minimum = 24
        elif ai == 25:
            v = struct.unpack(">H", self._take(2))[0]
            minimum = 0x100
        elif ai == 26:
            v = struct.unpack(">I", self._take(4))[0]
            minimum = 0x10000
        elif ai == 27:
            v = struct.unpack(">Q", self._take(8))[0]
            minimum = 0x100000000
        elif ai == 31:
            raise WireError(Reason.INDEFINITE_LENGTH)
        else:
            raise WireError(Reason.MALFORMED, "reserved additional information %d" % ai)
        if v < minimum:
            raise WireError(Reason.NON_CANONICAL, "argument not in shortest form")
        return int(v)

    def item(self, depth: int) -> CborValue:
        if depth > MAX_DEPTH:
            raise WireError(Reason.TOO_DEEP, "nesting deeper than %d" % MAX_DEPTH)
        ib = self._take(1)[0]
        major, ai = ib >> 5, ib & 0x1F
        if major == _MT_SIMPLE:
            if ai == 20:
                return False
            if ai == 21:
                return True
            if ai == 22:
                return None
            if ai in (25, 26, 27):
                raise WireError(Reason.FLOAT_FORBIDDEN)
            if ai == 31:
                raise WireError(Reason.INDEFINITE_LENGTH, "break outside indefinite item")
            if ai in (28, 29, 30):
                raise WireError(Reason.MALFORMED, "reserved additional information %d" % ai)
            raise WireError(Reason.UNSUPPORTED_TYPE, "simple value")
        if major == _MT_TAG:
            self._arg(ai)
            raise WireError(Reason.UNSUPPORTED_TYPE, "tags are not part of the profile")
        arg = self._arg(ai)
        if major == _MT_UINT:
            return arg
        if major == _MT_NINT:
            return -1 - arg
        if major == _MT_BYTES:
            return self._take(arg)
        if major == _MT_TEXT:
            raw = self._take(arg)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise WireError(Reason.MALFORMED, "invalid UTF-8") from e
        # Every element takes at least one byte: refuse lengths the input cannot hold
        # before allocating anything for them.
        if arg > len(self.data) - self.pos:
            raise WireError(Reason.TRUNCATED, "container longer than the input")
        if major == _MT_ARRAY:
            return [self.item(depth + 1) for _ in range(arg)]
        # map
        result: dict[Any, Any] = {}
        prev_key: bytes | None = None
        for _ in range(arg):
            start = self.pos
            key = self.item(depth + 1)
            key_bytes = self.data[start : self.pos]
            if not isinstance(key, str | int) or isinstance(key, bool):
                raise WireError(Reason.UNSUPPORTED_TYPE, "map keys are text or integers")
            if prev_key is not None:
                if key_bytes == prev_key:
                    raise WireError(Reason.DUPLICATE_KEY, repr(key))
                if key_bytes < prev_key:
                    raise WireError(Reason.NON_CANONICAL, "map keys not in bytewise order")
            prev_key = key_bytes
            result[key] = self.item(depth + 1)
        return result


def decode(data: bytes, max_size: int = MAX_MESSAGE_SIZE) -> CborValue:
    """Decode exactly one canonical CBOR item; raise :class:`WireError` otherwise."""
    if len(data) > max_size:
        raise WireError(Reason.TOO_LARGE, "%d bytes > limit %d" % (len(data), max_size))
    if not data:
        raise WireError(Reason.TRUNCATED, "empty input")
    d = _Decoder(bytes(data))
    value = d.item(0)
    if d.pos != len(d.data):
        raise WireError(Reason.TRAILING_BYTES, "%d bytes after the item" % (len(d.data) - d.pos))
    return value
