"""Every reason code the canonical CBOR codec gives, each from a hand-written input."""

from __future__ import annotations

from typing import Any

import pytest

from p2pnode.wire import cbor
from p2pnode.wire.reasons import Reason, WireError


def reason_of(data: bytes, **kw: Any) -> Reason:
    with pytest.raises(WireError) as exc:
        cbor.decode(data, **kw)
    return exc.value.reason


def encode_reason(value: Any) -> Reason:
    with pytest.raises(WireError) as exc:
        cbor.encode(value)
    return exc.value.reason


@pytest.mark.parametrize(
    ("value", "hexed"),
    [
        (0, "00"),
        (23, "17"),
        (24, "1818"),
        (255, "18ff"),
        (256, "190100"),
        (65535, "19ffff"),
        (65536, "1a00010000"),
        (2**32 - 1, "1affffffff"),
        (2**32, "1b0000000100000000"),
        (2**64 - 1, "1bffffffffffffffff"),
        (-1, "20"),
        (-24, "37"),
        (-25, "3818"),
        (-(2**64), "3bffffffffffffffff"),
        (b"", "40"),
        (b"\x01\x02", "420102"),
        ("", "60"),
        ("a", "6161"),
        ("\u00fc", "62c3bc"),
        ([], "80"),
        ([1, [2, 3]], "8201820203"),
        ({}, "a0"),
        ({"b": 1, "a": 2}, "a2616102616201"),
        # bytewise order of the encoded keys: 10 (0x0a) < 100 (0x1864) < -1 (0x20) < "a"
        ({"a": 0, -1: 1, 100: 2, 10: 3}, "a40a031864022001616100"),
        (False, "f4"),
        (True, "f5"),
        (None, "f6"),
    ],
)
def test_known_encodings(value: Any, hexed: str) -> None:
    data = bytes.fromhex(hexed)
    assert cbor.encode(value) == data
    assert cbor.decode(data) == value


# -- TRUNCATED -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hexed",
    [
        "",  # empty input
        "18",  # 1-byte argument missing
        "19ff",  # 2-byte argument cut short
        "1affffff",
        "1bffffffffffffff",
        "6261",  # text of 2 with 1 byte
        "43aabb",  # bytes of 3 with 2
        "8201",  # array of 2 with 1 item
        "a1",  # map of 1 with nothing
        "a16161",  # map of 1: key without value
        "5bffffffffffffffff",  # 2^64-1 bytes announced: refused, not allocated
        "9bffffffffffffffff",  # likewise for an array
    ],
)
def test_truncated(hexed: str) -> None:
    assert reason_of(bytes.fromhex(hexed)) == Reason.TRUNCATED


def test_every_strict_prefix_of_a_value_is_truncated() -> None:
    data = cbor.encode({"net": "devnet", "seq": 70000, "gpus": [{"mem": 2**40}], "x": b"\0" * 30})
    for cut in range(len(data)):
        assert reason_of(data[:cut]) == Reason.TRUNCATED, cut


# -- TRAILING_BYTES --------------------------------------------------------------------


@pytest.mark.parametrize("hexed", ["0000", "f6f6", "8000", "a0ff", "616100"])
def test_trailing_bytes(hexed: str) -> None:
    assert reason_of(bytes.fromhex(hexed)) == Reason.TRAILING_BYTES


# -- NON_CANONICAL ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "hexed",
    [
        "1800",  # 0 in a 1-byte argument
        "1817",  # 23: the last value that fits in the initial byte
        "1900ff",  # 255 in 2 bytes
        "1a0000ffff",  # 65535 in 4 bytes
        "1b00000000ffffffff",  # 2^32-1 in 8 bytes
        "3817",  # -24 in a 1-byte argument
        "580161",  # byte string length in a 1-byte argument
        "78016161",  # text string length likewise
        "980100",  # array length
        "b8016161f6",  # map length
        "a2616201616102",  # keys "b", "a": not in bytewise order
        "a2200100f6",  # keys -1 (0x20), 0 (0x00): not in bytewise order
        "a2616100186401",  # keys "a", 100: major type 3 before 0 is out of order
    ],
)
def test_non_canonical(hexed: str) -> None:
    assert reason_of(bytes.fromhex(hexed)) == Reason.NON_CANONICAL


# -- INDEFINITE_LENGTH -----------------------------------------------------------------


@pytest.mark.parametrize(
    "hexed",
    [
        "5f4161ff",  # indefinite byte string
        "7f6161ff",  # indefinite text string
        "9f01ff",  # indefinite array
        "9fff",
        "bf616101ff",  # indefinite map
        "ff",  # a break with nothing to end
        "8201ff",  # a break where an item belongs
    ],
)
def test_indefinite_length(hexed: str) -> None:
    assert reason_of(bytes.fromhex(hexed)) == Reason.INDEFINITE_LENGTH


# -- DUPLICATE_KEY ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "hexed",
    [
        "a2616101616102",  # "a" twice
        "a2010001f6",  # 1 twice
        "a3010001006161f6",  # 1 twice, then a later key
    ],
)
def test_duplicate_key(hexed: str) -> None:
    assert reason_of(bytes.fromhex(hexed)) == Reason.DUPLICATE_KEY


# -- FLOAT_FORBIDDEN -------------------------------------------------------------------


@pytest.mark.parametrize(
    "hexed",
    [
        "f93c00",  # half 1.0
        "fa3f800000",  # single 1.0
        "fb3ff0000000000000",  # double 1.0
        "f97e00",  # half NaN
        "8201f90000",  # a float inside an array
    ],
)
def test_float_forbidden_decode(hexed: str) -> None:
    assert reason_of(bytes.fromhex(hexed)) == Reason.FLOAT_FORBIDDEN


@pytest.mark.parametrize("value", [1.0, 0.0, float("nan"), [1, 2.5], {"price": 0.1}])
def test_float_forbidden_encode(value: Any) -> None:
    assert encode_reason(value) == Reason.FLOAT_FORBIDDEN


# -- UNSUPPORTED_TYPE ------------------------------------------------------------------


@pytest.mark.parametrize(
    "hexed",
    [
        "c074323031332d30332d32315432303a30343a30305a",  # tag 0 (date/time)
        "c249010000000000000000",  # tag 2: bignum 2^64
        "d8186161",  # tag 24 with a 1-byte argument
        "f7",  # undefined
        "e0",  # simple value 0
        "f3",  # simple value 19
        "f820",  # simple value 32, two-byte form
        "a1f401",  # map key false
        "a1f601",  # map key null
        "a1416101",  # map key: a byte string
        "a1800101",  # map key: an array
    ],
)
def test_unsupported_type_decode(hexed: str) -> None:
    assert reason_of(bytes.fromhex(hexed)) == Reason.UNSUPPORTED_TYPE


@pytest.mark.parametrize(
    "value",
    [
        2**64,  # one past the largest unsigned
        -(2**64) - 1,  # one past the smallest negative
        {1, 2},
        frozenset(),
        object(),
        1j,
        {(1, 2): 3},  # a tuple key
        {b"k": 1},  # a byte-string key
        {True: 1},  # bool keys are refused although bool is an int
        {None: 1},
    ],
)
def test_unsupported_type_encode(value: Any) -> None:
    assert encode_reason(value) == Reason.UNSUPPORTED_TYPE


def test_tuples_and_bytearrays_encode_as_arrays_and_bytes() -> None:
    assert cbor.encode((1, 2)) == cbor.encode([1, 2])
    assert cbor.encode(bytearray(b"ab")) == cbor.encode(b"ab")
    assert cbor.encode(memoryview(b"ab")) == cbor.encode(b"ab")


# -- TOO_LARGE -------------------------------------------------------------------------


def test_too_large_against_an_explicit_limit() -> None:
    data = cbor.encode(b"x" * 100)
    assert cbor.decode(data, max_size=len(data)) == b"x" * 100
    assert reason_of(data, max_size=len(data) - 1) == Reason.TOO_LARGE


def test_too_large_against_the_decoder_limit() -> None:
    # Checked on the length alone, before a byte is parsed: garbage of that size too.
    assert reason_of(b"\xff" * (cbor.MAX_MESSAGE_SIZE + 1)) == Reason.TOO_LARGE
    fits = cbor.encode(b"\0" * (cbor.MAX_MESSAGE_SIZE - 5))
    assert len(fits) == cbor.MAX_MESSAGE_SIZE
    assert len(cbor.decode(fits)) == cbor.MAX_MESSAGE_SIZE - 5


# -- TOO_DEEP --------------------------------------------------------------------------


def nested_arrays(levels: int) -> bytes:
    """``levels`` arrays, each the only item of the one around it."""
    return b"\x81" * (levels - 1) + b"\x80"


def test_depth_limit_is_exact_on_decode() -> None:
    # The innermost of k nested arrays sits k-1 levels below the top item.
    ok = nested_arrays(cbor.MAX_DEPTH + 1)
    assert cbor.decode(ok) is not None
    assert reason_of(nested_arrays(cbor.MAX_DEPTH + 2)) == Reason.TOO_DEEP
    assert reason_of(b"\xa1\x61k" * (cbor.MAX_DEPTH + 1) + b"\x00") == Reason.TOO_DEEP


def test_depth_limit_is_exact_on_encode() -> None:
    v: Any = []
    for _ in range(cbor.MAX_DEPTH):
        v = [v]
    assert cbor.encode(v) == nested_arrays(cbor.MAX_DEPTH + 1)
    assert encode_reason([v]) == Reason.TOO_DEEP
    assert encode_reason({"k": v}) == Reason.TOO_DEEP


def test_deep_garbage_does_not_exhaust_the_stack() -> None:
    assert reason_of(b"\x81" * 100_000 + b"\x00") == Reason.TOO_DEEP


# -- MALFORMED -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hexed",
    [
        "62c328",  # invalid UTF-8 continuation
        "61ff",  # 0xff never occurs in UTF-8
        "63eda080",  # an encoded surrogate (U+D800)
        "62c0af",  # overlong encoding of "/"
        "1c",  # reserved additional information 28..30, on each major type
        "1d",
        "1e",
        "3c",
        "5d",
        "7e",
        "9c",
        "bd",
        "dc",
        "fc",
        "fd",
        "fe",
    ],
)
def test_malformed(hexed: str) -> None:
    assert reason_of(bytes.fromhex(hexed)) == Reason.MALFORMED


@pytest.mark.parametrize("hexed", ["1f", "3f", "df", "f8", "f818"])
def test_not_well_formed_heads_are_rejected(hexed: str) -> None:
    # ai 31 on major types 0, 1 and 6, and a simple value below 32 in its two-byte form,
    # are not well-formed CBOR (RFC 8949 §3); whatever the reason, none may decode.
    with pytest.raises(WireError):
        cbor.decode(bytes.fromhex(hexed))


def test_wire_error_carries_reason_and_detail() -> None:
    with pytest.raises(WireError) as exc:
        cbor.decode(b"\x00\x00")
    assert exc.value.reason is Reason.TRAILING_BYTES
    assert "1 bytes after" in exc.value.detail
    assert str(exc.value).startswith("trailing_bytes")
    assert isinstance(exc.value, ValueError)
