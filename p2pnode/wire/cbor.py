"""Deterministic CBOR, the p2pnode profile (spec/01-encoding.md §2).

The profile is RFC 8949 §4.2.1 "core deterministic encoding" restricted to the types a
protocol object needs: unsigned and negative integers of at most 64 bits, byte strings,
UTF-8 text strings, arrays, maps, false, true and null. Floats, tags, undefined, other
simple values and indefinite lengths are outside the profile.

The decoder is strict: any input that is not the one canonical encoding of its value is
rejected with a reason code, so that ``encode(decode(b)) == b`` for every accepted ``b``
and a signature over the canonical bytes of a body covers exactly one byte string.

Two implementations agree here: :func:`reference_encode` and :func:`reference_decode`, in
pure Python, are the reference and give the precise reason for a refusal; :func:`encode`
and :func:`decode` run cbor2's native codec and prove its result is the reference's (see
"The fast path" below), falling back to the reference whenever the proof does not hold.
"""

from __future__ import annotations

import struct
from typing import Any

from cbor2 import CBORError as _CBORError
from cbor2 import dumps as _dumps
from cbor2 import loads as _loads

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


def reference_encode(value: CborValue, *, depth: int = 0) -> bytes:
    """Encode ``value`` to its one canonical byte string, in pure Python: the reference that
    :func:`encode` agrees with, and the source of its precise reason codes. ``depth`` is
    the depth the item will have where it is embedded (ENC-11)."""
    out: list[bytes] = []
    _encode(value, out, depth)
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


def reference_decode(data: bytes, max_size: int = MAX_MESSAGE_SIZE) -> CborValue:
    """Decode exactly one canonical CBOR item, in pure Python; raise :class:`WireError`
    otherwise. The reference :func:`decode` agrees with; it reads front to back and so
    reports the first defect in reading order (spec 01 §2.3)."""
    if len(data) > max_size:
        raise WireError(Reason.TOO_LARGE, "%d bytes > limit %d" % (len(data), max_size))
    if not data:
        raise WireError(Reason.TRUNCATED, "empty input")
    d = _Decoder(bytes(data))
    value = d.item(0)
    if d.pos != len(d.data):
        raise WireError(Reason.TRAILING_BYTES, "%d bytes after the item" % (len(d.data) - d.pos))
    return value


# -- The fast path ---------------------------------------------------------------------
#
# cbor2's native (Rust) decoder and encoder do the work; this module only proves that what
# they did is what the reference would have done, and hands anything it cannot prove to the
# reference, which then decides and names the reason. The fast path therefore never refuses
# on its own: it either returns the reference's result or steps aside.
#
# Decoding, three steps:
#  1. ``loads`` with every tag refused at its head (so no bignum, date or shared reference
#     ever becomes a Python value, and every integer came from a plain head: ENC-1, ENC-2);
#  2. ``dumps(value) == data`` with cbor2's plain encoder, which writes every head in its
#     shortest form, every length definite, and map entries in the order the decoder met
#     them. Equal bytes prove shortest arguments (ENC-3), definite lengths (ENC-4), distinct
#     keys (a repeated key collapses into one entry, so the count differs: ENC-6), valid
#     UTF-8 (ENC-8) and no trailing bytes (ENC-9);
#  3. a walk of the value for what bytes cannot show: types (no floats, simple values or
#     undefined, ENC-1; keys text or integers, ENC-5), key order (ENC-6) and depth (ENC-11).
#
# Key order. RFC 8949 §4.2.1 (our ENC-6) sorts keys by their encoded bytes; cbor2's
# ``canonical=True`` sorts by encoded length first (RFC 7049 §3.9). Within one major type
# the two agree: a head's length grows with its argument, so a longer encoding is a larger
# argument or a longer string, and a longer string's head is bytewise larger. So text keys
# sort by (UTF-8 length, then the text itself; code point order is UTF-8 byte order). They
# differ across major types ({"a": 1, 1000: 2}: length-first puts "a" first, bytewise puts
# 1000 first); maps with integer or non-ASCII keys are therefore ordered by their encoded
# bytes, computed here, and cbor2's canonical mode is never used.
#
# Encoding: a walk checks types, integer ranges and depth and rebuilds every map in key
# order, then cbor2's plain encoder writes it; anything the walk does not know (subclasses
# of list or dict, bytearray, memoryview, floats, ...) goes to the reference encoder.

_INT_MIN = -(1 << 64)


class _Refused:
    """The fast path's "not proven": the caller falls back to the reference."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "REFUSED"


REFUSED: Any = _Refused()

# Types cbor2 decodes from plain heads that the profile allows as they are.
_PLAIN = frozenset({str, bytes, int, bool, type(None)})
# The encoder's, less int: a Python int may lie outside 64 bits, so each is range-checked.
_ENCODE_LEAVES = frozenset({str, bytes, bool, type(None)})


class _TagRefused(ValueError):
    pass


class _NoTags(dict[int, Any]):
    """cbor2's semantic decoders, consulted at every tag head: raising a non-lookup error
    there makes cbor2 abandon the input before it builds anything from the tag. Always
    empty; a dict (not a Mapping) because cbor2 accepts a dict at no cost per call."""

    def __missing__(self, tag: int) -> Any:
        raise _TagRefused(tag)


_NO_TAGS = _NoTags()


def _key_encoding(key: Any) -> bytes | None:
    """A map key's canonical bytes, or None when it cannot be a key (ENC-5)."""
    t = type(key)
    if t is str:
        try:
            raw: bytes = key.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return _head(_MT_TEXT, len(raw)) + raw
    if t is int:
        if key >= 0:
            return _head(_MT_UINT, key) if key <= _UINT64_MAX else None
        return _head(_MT_NINT, -1 - key) if key >= _INT_MIN else None
    return None


def _key_order(keys: list[Any]) -> list[Any] | None:
    """``keys`` in canonical order (ENC-6), or None when one cannot be a key."""
    if len(keys) > 1:
        try:
            ascii_text = "".join(keys).isascii()
        except TypeError:  # not all text
            ascii_text = False
        if ascii_text:
            # ASCII text: the encoded length follows the text's, and the bytes are the text.
            return sorted(sorted(keys), key=len)
    encoded = []
    for k in keys:
        enc = _key_encoding(k)
        if enc is None:
            return None
        encoded.append((enc, k))
    encoded.sort(key=lambda pair: pair[0])
    for i in range(1, len(encoded)):
        if encoded[i][0] == encoded[i - 1][0]:
            return None  # equal keys that are distinct Python objects
    return [k for _, k in encoded]


def _keys_in_order(keys: list[Any]) -> bool:
    """Whether the keys of a decoded map are keys (ENC-5), in canonical order (ENC-6)."""
    if len(keys) == 2:  # the commonest small case, without sorting
        a, b = keys
        if type(a) is str and type(b) is str and a.isascii() and b.isascii():
            return len(a) < len(b) or (len(a) == len(b) and a < b)
    return _key_order(keys) == keys


def _in_profile(value: list[Any] | dict[Any, Any], depth: int) -> bool:
    """Whether a container cbor2 decoded is in the profile: types, key order, depth."""
    if depth >= MAX_DEPTH and value:
        return False  # its items would sit deeper than MAX_DEPTH
    if type(value) is dict:
        if not _keys_in_order(list(value)):
            return False
        items: Any = value.values()
    else:
        items = value
    depth += 1
    for item in items:
        t = type(item)
        if t in _PLAIN:
            continue
        if (t is dict or t is list) and _in_profile(item, depth):
            continue
        return False
    return True


def fast_decode(data: bytes) -> CborValue:
    """Decode ``data`` with cbor2 and prove it canonical; :data:`REFUSED` when the proof
    fails (the input may still be canonical: only the reference decides)."""
    try:
        value = _loads(data, semantic_decoders=_NO_TAGS)
        if _dumps(value) != data:
            return REFUSED
    except _CBORError:
        return REFUSED
    t = type(value)
    if t in _PLAIN:
        return value
    if (t is dict or t is list) and _in_profile(value, 0):
        return value
    return REFUSED


def _canonical(value: list[Any] | tuple[Any, ...] | dict[Any, Any], depth: int) -> Any:
    """A copy of a container with every map in key order, or :data:`REFUSED` when some
    item is not one the fast path knows to be in the profile."""
    if depth >= MAX_DEPTH and value:
        return REFUSED
    depth += 1
    # The item check is written out in both loops on purpose: folding them into one loop
    # over the values (and zipping the keys back) made encoding a capability ad 35 %
    # slower (14 to 19.5 us), the whole margin of bench_wire's encode target.
    if type(value) is dict:
        order = _key_order(list(value))
        if order is None:
            return REFUSED
        out: dict[Any, Any] = {}
        for k in order:
            item = value[k]
            t = type(item)
            if t in _ENCODE_LEAVES or (t is int and _INT_MIN <= item <= _UINT64_MAX):
                pass
            elif t is dict or t is list or t is tuple:
                item = _canonical(item, depth)
                if item is REFUSED:
                    return REFUSED
            else:
                return REFUSED
            out[k] = item
        return out
    items: list[Any] = []
    for item in value:
        t = type(item)
        if t in _ENCODE_LEAVES or (t is int and _INT_MIN <= item <= _UINT64_MAX):
            pass
        elif t is dict or t is list or t is tuple:
            item = _canonical(item, depth)
            if item is REFUSED:
                return REFUSED
        else:
            return REFUSED
        items.append(item)
    return items


def fast_encode(value: CborValue, *, depth: int = 0) -> bytes | None:
    """The canonical bytes of ``value`` by cbor2, or None when the fast path cannot show
    they are the reference's (then the reference encodes, or refuses with the reason)."""
    t = type(value)
    if t is dict or t is list or t is tuple:
        value = _canonical(value, depth)
        if value is REFUSED:
            return None
    elif not (t in _ENCODE_LEAVES or (t is int and _INT_MIN <= value <= _UINT64_MAX)):
        return None
    try:
        return _dumps(value)
    except (_CBORError, UnicodeEncodeError):  # a lone surrogate has no UTF-8 form
        return None


def encode(value: CborValue, *, depth: int = 0) -> bytes:
    """Encode ``value`` to its one canonical byte string (ENC-13); raise
    :class:`WireError` with the reason for a value outside the profile. ``depth`` is the
    depth the item will have where it is embedded, so that the whole stays within
    ``MAX_DEPTH`` (ENC-11); the bytes do not depend on it."""
    data = fast_encode(value, depth=depth)
    return reference_encode(value, depth=depth) if data is None else data


def decode(data: bytes, max_size: int = MAX_MESSAGE_SIZE) -> CborValue:
    """Decode exactly one canonical CBOR item; raise :class:`WireError` otherwise.

    The size limit is checked first (ENC-10); then the fast path decodes, and whatever it
    does not prove canonical is decided by :func:`reference_decode`, so the result and the
    reason are the reference's."""
    if len(data) > max_size:
        raise WireError(Reason.TOO_LARGE, "%d bytes > limit %d" % (len(data), max_size))
    if type(data) is not bytes:
        data = bytes(data)
    value = fast_decode(data)
    if value is REFUSED:
        return reference_decode(data, max_size)
    return value
