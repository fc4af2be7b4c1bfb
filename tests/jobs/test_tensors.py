"""Matrix blobs and seeded random matrices (p2pnode.jobs.tensors)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from p2pnode.jobs.tensors import (
    decode_matrix,
    encode_matrix,
    encoded_matrix_size,
    random_int8_matrix,
)
from p2pnode.wire import cbor
from p2pnode.wire.reasons import Reason, WireError

BIG = 1 << 20

shapes = st.tuples(st.integers(1, 12), st.integers(1, 12))


def blob(value: object) -> bytes:
    return cbor.encode(value)


def good_map() -> dict[str, object]:
    return {"data": bytes(range(6)), "dtype": "int8", "shape": [2, 3]}


@given(hnp.arrays(np.int8, shapes))
def test_int8_roundtrip(m: np.ndarray) -> None:
    out = decode_matrix(encode_matrix(m), BIG)
    assert out.dtype == np.int8
    assert np.array_equal(out, m)


@given(hnp.arrays(np.int64, shapes))
def test_int64_roundtrip(m: np.ndarray) -> None:
    data = encode_matrix(m)
    out = decode_matrix(data, BIG)
    assert out.dtype.kind == "i" and out.dtype.itemsize == 8
    assert np.array_equal(out, m)
    assert encode_matrix(out) == data  # one matrix, one blob


def test_layout_is_row_major_little_endian() -> None:
    m = np.array([[1, -2], [3, 2**40]], dtype=np.int64)
    value = cbor.decode(encode_matrix(m))
    assert value["dtype"] == "int64"
    assert value["shape"] == [2, 2]
    expected = b"".join(v.to_bytes(8, "little", signed=True) for v in (1, -2, 3, 2**40))
    assert value["data"] == expected


def test_big_endian_input_is_encoded_little_endian() -> None:
    m = np.array([[1, 256]], dtype=">i8")
    assert cbor.decode(encode_matrix(m))["data"] == (1).to_bytes(8, "little") + (
        256
    ).to_bytes(8, "little")


def test_key_order_is_canonical() -> None:
    data = encode_matrix(np.zeros((1, 1), dtype=np.int8))
    # map(3), "data", bstr(1) 00, "dtype", "int8", "shape", [1, 1]
    assert data == bytes.fromhex("a3") + b"\x64data\x41\x00\x65dtype\x64int8\x65shape\x82\x01\x01"


@pytest.mark.parametrize(
    ("dtype", "rows", "cols"),
    [("int8", 1, 1), ("int8", 23, 1), ("int8", 24, 11), ("int64", 300, 2), ("int8", 1, 70000),
     ("int64", 3, 3000), ("int8", 256, 256)],
)
def test_encoded_size_is_exact(dtype: str, rows: int, cols: int) -> None:
    m = np.ones((rows, cols), dtype=dtype)
    assert encoded_matrix_size(dtype, rows, cols) == len(encode_matrix(m))


@pytest.mark.parametrize(
    "bad",
    [np.zeros(3, dtype=np.int8), np.zeros((2, 2), dtype=np.float64),
     np.zeros((2, 2), dtype=np.int32), np.zeros((0, 2), dtype=np.int8),
     np.zeros((1, 1, 1), dtype=np.int8)],
)
def test_encode_refuses_non_matrices(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        encode_matrix(bad)


def _reject(data: bytes, reason: Reason, max_elements: int = BIG, **kw: str) -> None:
    with pytest.raises(WireError) as info:
        decode_matrix(data, max_elements, **kw)
    assert info.value.reason is reason


def test_good_map_decodes() -> None:
    m = decode_matrix(blob(good_map()), BIG)
    assert m.tolist() == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"extra": 1}, Reason.UNKNOWN_FIELD),
        ({"dtype": "int16"}, Reason.BAD_FIELD),
        ({"dtype": 8}, Reason.BAD_FIELD),
        ({"shape": [6]}, Reason.BAD_FIELD),
        ({"shape": [1, 2, 3]}, Reason.BAD_FIELD),
        ({"shape": [True, 6]}, Reason.BAD_FIELD),
        ({"shape": "2x3"}, Reason.BAD_FIELD),
        ({"shape": [0, 3]}, Reason.BAD_FIELD),
        ({"shape": [-2, -3]}, Reason.BAD_FIELD),
        ({"shape": [3, 3]}, Reason.BAD_FIELD),  # data too short
        ({"shape": [1, 5]}, Reason.BAD_FIELD),  # data too long
        ({"data": "abcdef"}, Reason.BAD_FIELD),
        ({"dtype": "int64"}, Reason.BAD_FIELD),  # 6 bytes are not 6 int64
    ],
)
def test_field_rejections(change: dict[str, object], reason: Reason) -> None:
    _reject(blob({**good_map(), **change}), reason)


@pytest.mark.parametrize("key", ["data", "dtype", "shape"])
def test_missing_key(key: str) -> None:
    value = good_map()
    del value[key]
    _reject(blob(value), Reason.BAD_FIELD)


def test_not_a_map() -> None:
    _reject(blob([1, 2]), Reason.BAD_FIELD)


def test_too_many_elements() -> None:
    _reject(blob(good_map()), Reason.TOO_LARGE, max_elements=5)
    assert decode_matrix(blob(good_map()), 6).shape == (2, 3)


def test_element_count_checked_before_data() -> None:
    # A shape past the limit is too_large even when data does not match it.
    _reject(blob({**good_map(), "shape": [10**6, 10**6]}), Reason.TOO_LARGE, max_elements=100)


def test_oversized_blob_refused_before_parsing() -> None:
    m = np.zeros((100, 100), dtype=np.int8)
    _reject(encode_matrix(m), Reason.TOO_LARGE, max_elements=10)


def test_non_canonical_cbor() -> None:
    data = encode_matrix(np.zeros((1, 1), dtype=np.int8))
    # shape [1, 1] with the first 1 in a two-byte head (0x18 0x01): not shortest form
    bad = data.replace(b"\x82\x01\x01", b"\x82\x18\x01\x01")
    _reject(bad, Reason.NON_CANONICAL)


def test_required_dtype() -> None:
    data = encode_matrix(np.zeros((2, 2), dtype=np.int64))
    _reject(data, Reason.BAD_FIELD, dtype="int8")
    assert decode_matrix(data, BIG, dtype="int64").shape == (2, 2)


# --- seeded random matrices --------------------------------------------------------------

_M = 0x2360ED051FC65DA44385DF649FCCF645
_M128 = (1 << 128) - 1
_M64 = (1 << 64) - 1


def reference_random_bytes(seed: bytes, count: int) -> bytes:
    """The generator of the tensors module docstring, written out in plain integers."""
    d = hashlib.sha256(seed).digest()
    initstate, initseq = int.from_bytes(d[:16], "little"), int.from_bytes(d[16:], "little")
    inc = ((initseq << 1) | 1) & _M128
    s = 0
    s = (s * _M + inc) & _M128
    s = (s + initstate) & _M128
    s = (s * _M + inc) & _M128
    out = bytearray()
    while len(out) < count:
        s = (s * _M + inc) & _M128
        x = ((s >> 64) ^ s) & _M64
        r = s >> 122
        out += (((x >> r) | (x << ((64 - r) & 63))) & _M64).to_bytes(8, "little")
    return bytes(out[:count])


@pytest.mark.parametrize(("rows", "cols", "seed"), [(1, 1, b""), (3, 5, b"p2pnode"),
                                                    (7, 9, b"\x00" * 40), (16, 16, b"x")])
def test_random_matches_reference(rows: int, cols: int, seed: bytes) -> None:
    m = random_int8_matrix(rows, cols, seed)
    assert m.shape == (rows, cols) and m.dtype == np.int8
    assert m.tobytes() == reference_random_bytes(seed, rows * cols)


def test_random_pinned_vector() -> None:
    # Pinned so that a change in the generator shows up as a failure, not as silently
    # different challenge matrices.
    m = random_int8_matrix(3, 5, b"p2pnode")
    assert m.tolist() == [[76, 19, 115, 41, 68], [-1, 54, -123, -127, -109],
                          [28, 8, -83, 104, 54]]
    big = random_int8_matrix(256, 256, b"p2pnode")
    assert hashlib.sha256(big.tobytes()).hexdigest() == PINNED_256x256


def test_random_is_deterministic_and_seed_dependent() -> None:
    a = random_int8_matrix(32, 32, b"seed-1")
    assert np.array_equal(a, random_int8_matrix(32, 32, b"seed-1"))
    assert not np.array_equal(a, random_int8_matrix(32, 32, b"seed-2"))


def test_random_covers_full_int8_range() -> None:
    m = random_int8_matrix(64, 64, b"range")
    assert int(m.min()) == -128 and int(m.max()) == 127


def test_random_prefix_property() -> None:
    # The matrix is the byte stream cut to rows*cols, so shapes of one size share bytes.
    assert random_int8_matrix(4, 6, b"s").tobytes() == random_int8_matrix(6, 4, b"s").tobytes()


def test_random_refuses_empty() -> None:
    with pytest.raises(ValueError):
        random_int8_matrix(0, 3, b"s")


PINNED_256x256 = "7ff54811e6df987aba816bb08379eb5bf2efa40195a76a6e5814a03df1122061"
