"""Cases for matrix blobs and seeded random matrices (spec/04-jobs.md §7.2).

``matrix``: decode ``input.cbor`` as a matrix blob with ``max_elements`` and, if not null,
the one ``dtype`` accepted (MAT-1 to MAT-4); yields ``matrix.json`` (dtype, shape and the
elements as decimal strings).
``random_matrix``: the seeded int8 matrix of ``rows`` x ``cols`` for ``seed`` (hex) (MAT-5);
yields ``cid.txt`` (content id of its blob), ``data_sha256.txt`` (SHA-256 of its row-major
element bytes) and ``head.txt`` (its first 32 element bytes, hex). The expected values are
computed here from MAT-5 alone, in pure Python, not by the reference.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

from conformance.model import Case, Expected, Inputs, reject, valid
from p2pnode.wire import cbor
from p2pnode.wire.reasons import Reason

_M = 0x2360ED051FC65DA44385DF649FCCF645
_MASK128 = (1 << 128) - 1
_MASK64 = (1 << 64) - 1


def pcg64_bytes(seed: bytes, n: int) -> bytes:
    """The first ``n`` bytes of MAT-5's stream, written from the rule's text."""
    d = hashlib.sha256(seed).digest()
    initstate, initseq = int.from_bytes(d[:16], "little"), int.from_bytes(d[16:], "little")
    inc = ((initseq << 1) | 1) & _MASK128
    s = (0 * _M + inc) & _MASK128
    s = (s + initstate) & _MASK128
    s = (s * _M + inc) & _MASK128
    out = bytearray()
    while len(out) < n:
        s = (s * _M + inc) & _MASK128
        x, r = ((s >> 64) ^ s) & _MASK64, s >> 122
        out += (((x >> r) | (x << (-r & 63))) & _MASK64).to_bytes(8, "little")
    return bytes(out[:n])


def _blob(data: Any, dtype: Any, shape: Any) -> bytes:
    return cbor.encode({"data": data, "dtype": dtype, "shape": shape})


def _i64(*xs: int) -> bytes:
    return b"".join(x.to_bytes(8, "little", signed=True) for x in xs)


def _matrix(name: str, data: bytes, expected: Expected, desc: str, rules: tuple[str, ...],
            *, max_elements: int = 1 << 20, dtype: str | None = None) -> Case:
    return Case(name, Inputs({"input.cbor": data}, {"max_elements": max_elements,
                                                    "dtype": dtype}),
                expected, desc, rules)


def matrix() -> Iterator[Case]:
    yield _matrix("int8_2x3", _blob(bytes([1, 2, 3, 0xff, 0x80, 0x7f]), "int8", [2, 3]),
                  valid({"matrix.json": {"dtype": "int8", "shape": [2, 3], "elements": [
                      ["1", "2", "3"], ["-1", "-128", "127"]]}}),
                  "row-major two's complement bytes", ("MAT-1", "MAT-2"))
    yield _matrix("int64_extremes", _blob(_i64(-(1 << 63), (1 << 63) - 1), "int64", [1, 2]),
                  valid({"matrix.json": {"dtype": "int64", "shape": [1, 2], "elements": [
                      [str(-(1 << 63)), str((1 << 63) - 1)]]}}),
                  "the extreme int64 values, little-endian", ("MAT-1", "MAT-2"))
    yield _matrix("column", _blob(bytes([5, 6, 7]), "int8", [3, 1]),
                  valid({"matrix.json": {"dtype": "int8", "shape": [3, 1],
                                         "elements": [["5"], ["6"], ["7"]]}}),
                  "a 3x1 column", ("MAT-1",))
    yield _matrix("at_element_limit", _blob(bytes(6), "int8", [2, 3]), valid(),
                  "6 elements where 6 are allowed", ("MAT-3",), max_elements=6)
    yield _matrix("required_dtype", _blob(bytes(6), "int8", [2, 3]), valid(),
                  "an int8 matrix where int8 is required", ("MAT-3",), dtype="int8")
    yield _matrix("not_a_map", cbor.encode([b"", "int8", [1, 1]]), reject(Reason.BAD_FIELD),
                  "an array", ("MAT-3",))
    yield _matrix("unknown_key", cbor.encode({"data": b"\x00", "dtype": "int8",
                                              "shape": [1, 1], "order": "C"}),
                  reject(Reason.UNKNOWN_FIELD), 'a key "order"', ("MAT-3",))
    yield _matrix("missing_data", cbor.encode({"dtype": "int8", "shape": [1, 1]}),
                  reject(Reason.BAD_FIELD), "no data", ("MAT-3",))
    yield _matrix("dtype_int16", _blob(bytes(2), "int16", [1, 1]), reject(Reason.BAD_FIELD),
                  "dtype int16", ("MAT-1", "MAT-3"))
    yield _matrix("dtype_not_required", _blob(_i64(1), "int64", [1, 1]),
                  reject(Reason.BAD_FIELD), "an int64 matrix where int8 is required",
                  ("MAT-3",), dtype="int8")
    yield _matrix("shape_three", _blob(bytes(1), "int8", [1, 1, 1]), reject(Reason.BAD_FIELD),
                  "a shape of three dimensions", ("MAT-1", "MAT-3"))
    yield _matrix("shape_zero", _blob(b"", "int8", [0, 3]), reject(Reason.BAD_FIELD),
                  "zero rows", ("MAT-1", "MAT-3"))
    yield _matrix("shape_negative", _blob(b"", "int8", [-1, 3]), reject(Reason.BAD_FIELD),
                  "-1 rows", ("MAT-1", "MAT-3"))
    yield _matrix("shape_bool", _blob(bytes(1), "int8", [True, 1]), reject(Reason.BAD_FIELD),
                  "a dimension that is true", ("MAT-1", "MAT-3"))
    yield _matrix("data_short", _blob(bytes(5), "int8", [2, 3]), reject(Reason.BAD_FIELD),
                  "5 bytes for 6 elements", ("MAT-2", "MAT-3"))
    yield _matrix("data_int64_short", _blob(bytes(8), "int64", [1, 2]),
                  reject(Reason.BAD_FIELD), "8 bytes for 2 int64 elements", ("MAT-2", "MAT-3"))
    yield _matrix("data_text", _blob("\x00", "int8", [1, 1]), reject(Reason.BAD_FIELD),
                  "data as text", ("MAT-3",))
    yield _matrix("too_many_elements", _blob(b"", "int8", [1 << 16, 1 << 16]),
                  reject(Reason.TOO_LARGE),
                  "2^32 elements and no data: the element limit is checked before data",
                  ("MAT-3",))
    yield _matrix("over_element_limit", _blob(bytes(6), "int8", [2, 3]),
                  reject(Reason.TOO_LARGE), "6 elements where 5 are allowed", ("MAT-3",),
                  max_elements=5)
    yield _matrix("input_too_long", _blob(bytes(100), "int8", [10, 10]),
                  reject(Reason.TOO_LARGE),
                  "a %d-byte blob where max_elements 1 allows 8 + 64 bytes: refused "
                  "before decoding" % len(_blob(bytes(100), "int8", [10, 10])), ("MAT-3",),
                  max_elements=1)
    unsorted = (b"\xa3" + cbor.encode("dtype") + cbor.encode("int8") + cbor.encode("data")
                + cbor.encode(b"\x01") + cbor.encode("shape") + cbor.encode([1, 1]))
    yield _matrix("keys_not_canonical", unsorted, reject(Reason.NON_CANONICAL),
                  "dtype before data: one matrix has one blob", ("MAT-4",))
    yield _matrix("trailing_bytes", _blob(b"\x01", "int8", [1, 1]) + b"\x00",
                  reject(Reason.TRAILING_BYTES), "a byte after the map", ("MAT-4",))


def _random(name: str, rows: int, cols: int, seed: bytes, desc: str) -> Case:
    data = pcg64_bytes(seed, rows * cols)
    blob = _blob(data, "int8", [rows, cols])
    return Case(name, Inputs({}, {"rows": rows, "cols": cols, "seed": seed.hex()}),
                valid({"cid.txt": "1220" + hashlib.sha256(blob).hexdigest(),
                       "data_sha256.txt": hashlib.sha256(data).hexdigest(),
                       "head.txt": data[:32].hex()}),
                desc, ("MAT-5",))


def random_matrix() -> Iterator[Case]:
    yield _random("one_by_one_empty_seed", 1, 1, b"", "the first byte of the empty seed's "
                  "stream")
    yield _random("seven_by_one", 7, 1, b"a", "7 bytes: less than one 64-bit output")
    yield _random("three_by_three", 3, 3, b"p2pnode", "9 bytes: one output and one byte of "
                  "the next")
    yield _random("rows_and_columns_differ", 2, 16, b"conformance", "32 bytes, row-major")
    yield _random("square_256", 256, 256, bytes(range(32)),
                  "a 256x256 challenge-sized matrix: 8192 outputs")


HANDLERS: dict[str, Callable[[], Iterator[Case]]] = {
    "matrix": matrix, "random_matrix": random_matrix}
