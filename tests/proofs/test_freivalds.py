"""Freivalds' check: exact at the largest allowed n, sound against tampering."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pnode.jobs.executors.matmul import matmul_exact_cpu
from p2pnode.proofs.freivalds import (
    EXACT_LIMIT,
    bits_for,
    check,
    entry_bound,
    random_matrix,
    rounds_for,
)

MAX_N = 2048  # matmul_max_n


def test_widths_and_rounds_at_the_largest_n() -> None:
    bits = bits_for(MAX_N, MAX_N)
    assert bits == 17
    unit = MAX_N * MAX_N * 128 * 128
    assert unit * ((1 << bits) - 1) < EXACT_LIMIT <= unit * ((1 << (bits + 1)) - 1)
    assert rounds_for(bits) == 3 and bits * rounds_for(bits) >= 40


def test_exact_at_the_largest_n_with_extreme_entries() -> None:
    # Every product entry is 2048 * 128 * 128 = 2^25, the bound, and every sum of the check
    # is as large as the width allows: a single unit of error must still show.
    a = np.full((MAX_N, MAX_N), -128, dtype=np.int8)
    b = np.full((MAX_N, MAX_N), -128, dtype=np.int8)
    c = matmul_exact_cpu(a, b)
    assert int(c[0, 0]) == entry_bound(MAX_N)
    ok = check(a, b, c, b"seed")
    assert ok.ok and ok.soundness_bits == 51
    c[1000, 7] -= 1
    assert check(a, b, c, b"seed").why == "mismatch"


def test_random_int8_at_the_largest_n() -> None:
    rng = np.random.default_rng(7)
    a = rng.integers(-128, 128, size=(MAX_N, MAX_N), dtype=np.int8)
    b = rng.integers(-128, 128, size=(MAX_N, MAX_N), dtype=np.int8)
    c = matmul_exact_cpu(a, b)
    assert check(a, b, c, b"s1").ok
    c[MAX_N - 1, 0] += 1
    assert not check(a, b, c, b"s1").ok


small = st.integers(1, 12)


@st.composite
def product(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n, k, m = draw(small), draw(small), draw(small)
    vals = st.integers(-128, 127)
    a = np.array(draw(st.lists(vals, min_size=n * k, max_size=n * k)), dtype=np.int8)
    b = np.array(draw(st.lists(vals, min_size=k * m, max_size=k * m)), dtype=np.int8)
    return a.reshape(n, k), b.reshape(k, m)


@settings(max_examples=200, deadline=None)
@given(product(), st.binary(max_size=16))
def test_a_true_product_is_always_accepted(ab: tuple[np.ndarray, np.ndarray],
                                           seed: bytes) -> None:
    a, b = ab
    assert check(a, b, matmul_exact_cpu(a, b), seed).ok


@settings(max_examples=300, deadline=None)
@given(product(), st.binary(max_size=16), st.data())
def test_any_tampered_entry_is_refused(ab: tuple[np.ndarray, np.ndarray], seed: bytes,
                                       data: st.DataObject) -> None:
    a, b = ab
    c = matmul_exact_cpu(a, b)
    i = data.draw(st.integers(0, c.shape[0] - 1))
    j = data.draw(st.integers(0, c.shape[1] - 1))
    delta = data.draw(st.integers(-(1 << 20), 1 << 20).filter(lambda d: d != 0))
    c[i, j] += delta
    # A wrong product passes with probability <= 2^-51 over the seed; entries pushed past
    # the bound are refused before any arithmetic.
    assert check(a, b, c, seed).why in ("mismatch", "entry_bound")


def test_entries_beyond_the_bound_are_refused_before_arithmetic() -> None:
    a = np.ones((2, 3), dtype=np.int8)
    b = np.ones((3, 2), dtype=np.int8)
    c = matmul_exact_cpu(a, b)
    for bad in (entry_bound(3) + 1, -entry_bound(3) - 1, np.iinfo(np.int64).min,
                np.iinfo(np.int64).max):
        t = c.copy()
        t[0, 1] = bad
        assert check(a, b, t, b"x").why == "entry_bound"


def test_shape_and_dtype_are_checked() -> None:
    a = np.ones((2, 3), dtype=np.int8)
    b = np.ones((3, 4), dtype=np.int8)
    c = matmul_exact_cpu(a, b)
    assert check(a, b, c.T.copy(), b"x").why == "shape"
    assert check(a, b.T.copy(), c, b"x").why == "shape"
    assert check(a, b, c.astype(np.int32), b"x").why == "dtype"
    assert check(a.astype(np.int16), b, c, b"x").why == "dtype"


@pytest.mark.parametrize("bits", [1, 17, 32])
def test_random_matrix_is_a_function_of_the_seed(bits: int) -> None:
    r = random_matrix(b"abc", 50, 3, bits)
    assert r.shape == (50, 3)
    assert np.array_equal(r, random_matrix(b"abc", 50, 3, bits))
    assert not np.array_equal(r, random_matrix(b"abd", 50, 3, bits))
    assert r.min() >= 0 and r.max() < (1 << bits) and np.all(r == np.floor(r))
    if bits == 1:
        assert set(np.unique(r)) == {0.0, 1.0}
