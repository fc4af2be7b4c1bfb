"""Epoch roots and proofs (spec 07 §5, LGR-12..LGR-14): small trees by hand, every proof
verifies, nothing else does."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pnode.ledger import merkle
from p2pnode.ledger.merkle import EMPTY_ROOT, MAX_DEPTH, build, keccak256, leaf, node, verify


def account(i: int) -> bytes:
    return hashlib.sha256(b"account %d" % i).digest()


A, B, C = sorted(account(i) for i in range(3))


def test_keccak256_is_keccak_not_sha3() -> None:
    assert keccak256(b"").hex() == \
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert keccak256(b"").hex() != hashlib.sha3_256(b"").hexdigest()


def test_leaf_and_node_inputs() -> None:
    amount = 123_456
    assert leaf(A, amount) == keccak256(b"\x00" + A + amount.to_bytes(32, "big"))
    assert len(b"\x00" + A + amount.to_bytes(32, "big")) == 65
    x, y = keccak256(b"x"), keccak256(b"y")
    assert node(x, y) == node(y, x) == keccak256(min(x, y) + max(x, y))


def test_a_leaf_is_never_an_inner_node() -> None:
    # The 65-byte leaf input split into the 32+32 bytes an inner node hashes: other hashes.
    for amount in (0, 1, 2**64, merkle.MAX_AMOUNT):
        data = b"\x00" + A + amount.to_bytes(32, "big")
        lf = leaf(A, amount)
        assert lf != node(data[:32], data[32:64])
        assert lf != node(data[1:33], data[33:65])
        assert lf != keccak256(data[1:])
        assert lf != keccak256(data[:64])


def test_bad_leaves_raise() -> None:
    with pytest.raises(ValueError):
        leaf(A[:31], 1)
    with pytest.raises(ValueError):
        leaf(A, -1)
    with pytest.raises(ValueError):
        leaf(A, 1 << 256)
    with pytest.raises(ValueError):
        build({A[:31]: 1})


def test_the_root_of_nothing_is_zero() -> None:
    assert build({}).root == EMPTY_ROOT == bytes(32)
    assert build({A: 0, B: 0}).root == EMPTY_ROOT
    assert build({}).proof(A) is None


def test_one_leaf() -> None:
    t = build({A: 5})
    assert t.root == leaf(A, 5)
    assert t.proof(A) == []
    assert verify(t.root, A, 5, [])


def test_two_leaves() -> None:
    t = build({B: 7, A: 5})
    la, lb = leaf(A, 5), leaf(B, 7)
    assert t.root == node(la, lb)
    assert t.proof(A) == [lb] and t.proof(B) == [la]
    assert verify(t.root, A, 5, [lb]) and verify(t.root, B, 7, [la])


def test_three_leaves_carry_the_odd_one_up() -> None:
    t = build({C: 9, A: 5, B: 7})
    la, lb, lc = leaf(A, 5), leaf(B, 7), leaf(C, 9)
    assert t.accounts == (A, B, C)
    assert t.root == node(node(la, lb), lc)
    assert t.proof(A) == [lb, lc]
    assert t.proof(B) == [la, lc]
    assert t.proof(C) == [node(la, lb)]  # no sibling on the first level: left out


def test_five_leaves() -> None:
    accts = sorted(account(i) for i in range(5))
    ls = [leaf(a, i + 1) for i, a in enumerate(accts)]
    t = build({a: i + 1 for i, a in enumerate(accts)})
    n01, n23 = node(ls[0], ls[1]), node(ls[2], ls[3])
    assert t.root == node(node(n01, n23), ls[4])
    assert t.proof(accts[4]) == [node(n01, n23)]
    assert t.proof(accts[2]) == [ls[3], n01, ls[4]]


def test_accounts_with_zero_have_no_leaf() -> None:
    assert build({A: 5, B: 0}).root == build({A: 5}).root
    assert build({A: 5, B: 0}).proof(B) is None


balances = st.dictionaries(st.binary(min_size=32, max_size=32),
                           st.integers(1, merkle.MAX_AMOUNT), max_size=200)


@settings(max_examples=60, deadline=None)
@given(balances)
def test_every_account_has_a_proof_that_verifies(bal: dict[bytes, int]) -> None:
    t = build(bal)
    assert t.accounts == tuple(sorted(bal))
    for a, v in bal.items():
        path = t.proof(a)
        assert path is not None and len(path) <= MAX_DEPTH
        assert verify(t.root, a, v, path)
    # The root does not depend on the order the map was built in.
    assert build(dict(reversed(list(bal.items())))).root == t.root


@settings(max_examples=60, deadline=None)
@given(balances.filter(lambda b: len(b) >= 2), st.data())
def test_nothing_else_verifies(bal: dict[bytes, int], data: st.DataObject) -> None:
    t = build(bal)
    accts = sorted(bal)
    a = data.draw(st.sampled_from(accts))
    other = data.draw(st.sampled_from([x for x in accts if x != a]))
    v = bal[a]
    path = t.proof(a)
    assert path is not None and verify(t.root, a, v, path)
    if v < merkle.MAX_AMOUNT:
        assert not verify(t.root, a, v + 1, path)
    assert not verify(t.root, a, v - 1, path)
    assert not verify(t.root, other, v, path)
    assert not verify(t.root, other, bal[other], path)
    assert path, "two leaves or more: every proof has a sibling"
    i = data.draw(st.integers(0, len(path) - 1))
    changed = [*path]
    changed[i] = bytes([changed[i][0] ^ 1]) + changed[i][1:]
    assert not verify(t.root, a, v, changed)
    assert not verify(t.root, a, v, path[:i] + path[i + 1:])  # a sibling dropped
    assert not verify(t.root, a, v, [*path, path[-1]])  # one too many
    assert not verify(t.root, a, v, [p[:31] for p in path])  # short hashes
    assert not verify(bytes(32), a, v, path)


def test_an_overlong_path_is_refused_even_if_it_folds_to_the_root() -> None:
    # A path of 65 hashes ending at "root": folding it gives the root, but LGR-14 caps the
    # length at 64.
    assert MAX_DEPTH == 64
    path = [account(i) for i in range(65)]
    h = leaf(A, 1)
    for p in path:
        h = node(h, p)
    assert not verify(h, A, 1, path)
    h = leaf(A, 1)
    for p in path[:64]:
        h = node(h, p)
    assert verify(h, A, 1, path[:64])


def test_bad_amounts_never_verify() -> None:
    t = build({A: 5, B: 7})
    path = t.proof(A)
    assert path is not None
    assert not verify(t.root, A, -1, path)
    assert not verify(t.root, A, 1 << 256, path)
    assert not verify(t.root, A[:31], 5, path)


def test_root_of_matches_build() -> None:
    bal = {account(i): i + 1 for i in range(10)}
    assert merkle.root_of(bal) == build(bal).root
