"""Row commitments: RFC 6962 roots and audit paths, and locating wrong rows."""

from __future__ import annotations

import hashlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pnode.jobs.executors.matmul import matmul_exact_cpu
from p2pnode.proofs import rows
from p2pnode.proofs.freivalds import wrong_rows


def rfc6962(data: list[bytes]) -> bytes:
    """MTH written as RFC 6962 states it (recursive split), independent of rows.root."""
    if len(data) == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < len(data):
        k *= 2
    return hashlib.sha256(b"\x01" + rfc6962(data[:k]) + rfc6962(data[k:])).digest()


def test_rfc6962_empty_leaf_value() -> None:
    # RFC 6962 / Certificate Transparency: MTH of one empty leaf is SHA-256(0x00).
    assert rows.root([b""]).hex() == \
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=24), min_size=1, max_size=40), st.data())
def test_root_and_every_path(data: list[bytes], draw: st.DataObject) -> None:
    root = rows.root(data)
    assert root == rfc6962(data)
    leaves = [rows.leaf_hash(d) for d in data]
    for i in range(len(data)):
        audit = rows.path(leaves, i)
        assert len(audit) <= max(1, (len(data) - 1).bit_length())
        assert rows.verify_path(leaves[i], i, len(data), audit, root)
    i = draw.draw(st.integers(0, len(data) - 1))
    audit = rows.path(leaves, i)
    # Any other index, size, leaf, or a path one hash short or long fails.
    assert not rows.verify_path(rows.leaf_hash(data[i] + b"x"), i, len(data), audit, root)
    if len(data) > 1:
        j = draw.draw(st.integers(0, len(data) - 1).filter(lambda j: leaves[j] != leaves[i]))
        assert not rows.verify_path(leaves[i], j, len(data), audit, root)
        assert not rows.verify_path(leaves[i], i, len(data), audit[:-1], root)
    assert not rows.verify_path(leaves[i], i, len(data), [*audit, root], root)
    assert not rows.verify_path(leaves[i], i + len(data), len(data), audit, root)
    # At the tree's own size (a fraud proof takes it from the output's shape) an inner
    # node never verifies as a leaf: the 0x00 / 0x01 prefixes.
    if len(data) >= 2:
        inner = rows.node_hash(leaves[0], leaves[1])
        assert not rows.verify_path(inner, 0, len(data), rows.path(leaves, 0)[1:], root)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**31),
       st.data())
def test_wrong_rows_finds_exactly_the_tampered_rows(n: int, k: int, m: int, seed: int,
                                                    draw: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, size=(n, k), dtype=np.int8)
    b = rng.integers(-128, 128, size=(k, m), dtype=np.int8)
    c = matmul_exact_cpu(a, b)
    assert wrong_rows(a, b, c, b"s") == []
    bad = sorted(draw.draw(st.sets(st.integers(0, n - 1), min_size=1)))
    for i in bad:
        c[i, draw.draw(st.integers(0, m - 1))] += draw.draw(st.sampled_from([-1, 1, 2**20]))
    found = wrong_rows(a, b, c, b"s")
    over = [i for i in bad if np.abs(c[i]).max() > k * 128 * 128]
    # Rows beyond the entry bound are reported alone (no arithmetic); else every wrong row.
    assert found == (over or bad)
    c[bad[0], 0] = 2**40  # beyond the entry bound: refused without arithmetic
    assert bad[0] in wrong_rows(a, b, c, b"s")
