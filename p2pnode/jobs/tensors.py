"""Matrix blobs: the byte format of matmul inputs and outputs, and seeded random matrices.

Matrix blob (spec/04-jobs.md §7.2, MAT-1 to MAT-4)
---------------------------------------------------
A matrix blob is one canonical CBOR item (spec/01-encoding.md §2), a map of exactly three
entries::

    Matrix = {
      "data": bstr,                 ; rows*cols elements, row-major, little-endian
      "dtype": "int8" / "int64",    ; two's complement, 1 or 8 bytes per element
      "shape": [rows: uint, cols: uint],
    }

Rules:

1. ``shape`` is an array of exactly two unsigned integers, ``rows >= 1`` and ``cols >= 1``.
2. ``len(data) == rows * cols * itemsize`` where itemsize is 1 for ``"int8"`` and 8 for
   ``"int64"``. Element ``(i, j)`` starts at byte ``(i * cols + j) * itemsize``.
3. A decoder MUST reject: input that is not canonical CBOR (the codec's own reason), a top
   level that is not a map, a missing entry, a ``dtype`` other than the two above, a
   malformed ``shape`` or a ``data`` length that breaks rule 2 (``bad_field``); any other
   key (``unknown_field``); and ``rows * cols`` above the receiver's element limit
   (``too_large``), which it checks before it looks at ``data``.
4. Canonical CBOR fixes the key order ``"data"``, ``"dtype"``, ``"shape"``, so one matrix
   has exactly one blob and its content id is well defined.

Seeded random int8 matrices (MAT-5)
-----------------------------------
``random_int8_matrix(rows, cols, seed)`` is reproducible by any implementation:

1. ``d = SHA-256(seed)``; ``initstate`` = ``d[0:16]`` and ``initseq`` = ``d[16:32]``, each
   read as an unsigned 128-bit little-endian integer.
2. A PCG64 generator (PCG XSL-RR 128/64, multiplier
   ``M = 0x2360ED051FC65DA44385DF649FCCF645``) is seeded the standard PCG way
   (``pcg_setseq_128_srandom_r``), all arithmetic mod 2^128::

       inc = (initseq << 1) | 1
       s = 0;  s = s*M + inc;  s = s + initstate;  s = s*M + inc

3. Each 64-bit output: ``s = s*M + inc``, then
   ``rotr64(((s >> 64) XOR s) mod 2^64, s >> 122)``.
4. The outputs, each written as 8 bytes little-endian and concatenated, give a byte stream;
   its first ``rows * cols`` bytes, read as two's-complement int8 (full range -128..127),
   fill the matrix in row-major order.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from p2pnode.wire import cbor
from p2pnode.wire.reasons import Reason, WireError

# The only element types of the format: name -> little-endian numpy dtype.
DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "int8": np.dtype("<i1"),
    "int64": np.dtype("<i8"),
}
MATRIX_KEYS: Final = frozenset({"data", "dtype", "shape"})

# Bound on everything in a blob but the element bytes: map head, three keys, the dtype text,
# the shape array with two 64-bit uints and the byte string head. It sizes the CBOR decoder's
# input limit so that an oversized blob is refused before it is parsed.
_MAX_OVERHEAD: Final = 64

_PCG_MULT: Final = 0x2360ED051FC65DA44385DF649FCCF645
_MASK128: Final = (1 << 128) - 1


def _dtype_name(dtype: np.dtype[Any]) -> str:
    for name, dt in DTYPES.items():
        if dtype.kind == dt.kind and dtype.itemsize == dt.itemsize:
            return name
    raise ValueError(f"matrix dtype must be int8 or int64, not {dtype}")


def encode_matrix(matrix: npt.NDArray[Any]) -> bytes:
    """Encode a 2-D int8 or int64 array as a matrix blob (canonical CBOR)."""
    if matrix.ndim != 2:
        raise ValueError(f"a matrix has 2 dimensions, not {matrix.ndim}")
    rows, cols = (int(d) for d in matrix.shape)
    if rows < 1 or cols < 1:
        raise ValueError(f"matrix dimensions must be >= 1, got {rows}x{cols}")
    name = _dtype_name(matrix.dtype)
    data = np.ascontiguousarray(matrix, dtype=DTYPES[name]).tobytes()
    return cbor.encode({"data": data, "dtype": name, "shape": [rows, cols]})


def _uint_head_size(n: int) -> int:
    if n < 24:
        return 1
    if n <= 0xFF:
        return 2
    if n <= 0xFFFF:
        return 3
    if n <= 0xFFFFFFFF:
        return 5
    return 9


def encoded_matrix_size(dtype: str, rows: int, cols: int) -> int:
    """Exact length of the blob of a ``rows`` x ``cols`` matrix of ``dtype``, unencoded.

    Lets an executor refuse an output over its byte limit before computing it.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}")
    nbytes = rows * cols * DTYPES[dtype].itemsize
    return (
        1  # map of 3
        + 5 + _uint_head_size(nbytes) + nbytes  # "data": bstr
        + 6 + 1 + len(dtype)  # "dtype": tstr
        + 6 + 1 + _uint_head_size(rows) + _uint_head_size(cols)  # "shape": [rows, cols]
    )


def decode_matrix(
    data: bytes, max_elements: int, *, dtype: str | None = None
) -> npt.NDArray[Any]:
    """Decode and check a matrix blob; raise :class:`WireError` as the format's rules say.

    ``max_elements`` bounds ``rows * cols``; ``dtype``, when given, is the one element type
    the caller accepts. The result is a read-only view of ``data``'s element bytes.
    """
    value = cbor.decode(data, max_size=max_elements * DTYPES["int64"].itemsize + _MAX_OVERHEAD)
    if not isinstance(value, dict):
        raise WireError(Reason.BAD_FIELD, "a matrix blob is a map")
    extra = set(value) - MATRIX_KEYS
    if extra:
        raise WireError(Reason.UNKNOWN_FIELD, "matrix keys %s" % sorted(map(str, extra)))
    missing = MATRIX_KEYS - set(value)
    if missing:
        raise WireError(Reason.BAD_FIELD, "matrix lacks %s" % sorted(missing))
    name = value["dtype"]
    if not isinstance(name, str) or name not in DTYPES:
        raise WireError(Reason.BAD_FIELD, "dtype must be one of %s" % sorted(DTYPES))
    if dtype is not None and name != dtype:
        raise WireError(Reason.BAD_FIELD, f"dtype {name} where {dtype} is required")
    shape = value["shape"]
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
    ):
        raise WireError(Reason.BAD_FIELD, "shape must be [rows, cols]")
    rows, cols = shape
    if rows < 1 or cols < 1:
        raise WireError(Reason.BAD_FIELD, f"matrix dimensions must be >= 1, got {rows}x{cols}")
    if rows * cols > max_elements:
        raise WireError(
            Reason.TOO_LARGE, f"{rows}x{cols} = {rows * cols} elements > limit {max_elements}"
        )
    raw = value["data"]
    if not isinstance(raw, bytes):
        raise WireError(Reason.BAD_FIELD, "data must be a byte string")
    dt = DTYPES[name]
    if len(raw) != rows * cols * dt.itemsize:
        raise WireError(
            Reason.BAD_FIELD,
            f"data is {len(raw)} bytes, {rows}x{cols} {name} needs {rows * cols * dt.itemsize}",
        )
    return np.frombuffer(raw, dtype=dt).reshape(rows, cols)


def _pcg64_seeded(seed: bytes) -> np.random.PCG64:
    digest = hashlib.sha256(seed).digest()
    initstate = int.from_bytes(digest[:16], "little")
    initseq = int.from_bytes(digest[16:], "little")
    # pcg_setseq_128_srandom_r, spelled out so that the seeding does not depend on numpy's
    # SeedSequence and another implementation can follow the module docstring alone.
    inc = ((initseq << 1) | 1) & _MASK128
    s = inc  # 0 * M + inc
    s = (s + initstate) & _MASK128
    s = (s * _PCG_MULT + inc) & _MASK128
    bg = np.random.PCG64()
    bg.state = {
        "bit_generator": "PCG64",
        "state": {"state": s, "inc": inc},
        "has_uint32": 0,
        "uinteger": 0,
    }
    return bg


def random_int8_matrix(rows: int, cols: int, seed: bytes) -> npt.NDArray[np.int8]:
    """The seeded uniform int8 matrix of the module docstring (challenges, tests, benches).

    Uses the PCG64 bit generator's raw 64-bit outputs, whose stream numpy keeps stable across
    versions, rather than ``Generator.integers``, whose mapping numpy may change.
    """
    if rows < 1 or cols < 1:
        raise ValueError(f"matrix dimensions must be >= 1, got {rows}x{cols}")
    count = rows * cols
    words = _pcg64_seeded(seed).random_raw((count + 7) // 8)
    stream = np.asarray(words, dtype=np.uint64).astype("<u8").tobytes()
    return np.frombuffer(stream[:count], dtype=np.int8).reshape(rows, cols).copy()
