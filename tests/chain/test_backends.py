"""The same test functions for every chain backend (devchain and the EVM contract): anchors
by the rotation and its fallbacks, one root per epoch, claims by Merkle proof of the
ledger's tree paying cumulative minus claimed, and every refusal with its reason code."""

from __future__ import annotations

from typing import Any

import pytest

from p2pnode.chain.base import ChainError, ChainReason
from p2pnode.ledger import merkle
from tests.chain.world import SCHEDULE

E = 100  # an epoch; anchorer rotation: designated = sender E % 3 = 1, then 2, then 0
CLOSE = SCHEDULE.closes_at(E)
ROOT = bytes(range(1, 33))


def _refused(reason: ChainReason, fn: Any, *args: Any) -> None:
    with pytest.raises(ChainError) as e:
        fn(*args)
    assert e.value.reason is reason, e.value


def test_the_designated_anchorer_anchors_once_the_epoch_closed(world: Any) -> None:
    first = world.chain(1)
    world.set_time(CLOSE - 1)
    _refused(ChainReason.NOT_ANCHORER, first.anchor, E, ROOT, 7)
    world.set_time(CLOSE)
    a = first.anchor(E, ROOT, 7)
    assert (a.epoch, a.root, a.count, a.anchorer) == (E, ROOT, 7, world.sender_name(1))
    assert first.root_of(E) == ROOT and world.chain(3).root_of(E) == ROOT
    assert world.chain(0).latest() == (E, ROOT)
    assert [(x.epoch, x.root) for x in world.chain(2).anchors()] == [(E, ROOT)]
    assert world.chain(0).root_of(E + 1) is None


def test_fallbacks_anchor_in_turn_after_their_wait(world: Any) -> None:
    world.set_time(CLOSE)
    _refused(ChainReason.NOT_ANCHORER, world.chain(2).anchor, E, ROOT, 1)  # k = 1
    world.set_time(CLOSE + SCHEDULE.fallback_s - 1)
    _refused(ChainReason.NOT_ANCHORER, world.chain(0).anchor, E, ROOT, 1)  # k = 2
    world.set_time(CLOSE + SCHEDULE.fallback_s)
    _refused(ChainReason.NOT_ANCHORER, world.chain(0).anchor, E, ROOT, 1)
    assert world.chain(2).anchor(E, ROOT, 1).anchorer == world.sender_name(2)


def test_a_non_anchorer_never_anchors(world: Any) -> None:
    world.set_time(CLOSE + 100 * SCHEDULE.fallback_s)
    _refused(ChainReason.NOT_ANCHORER, world.chain(3).anchor, E, ROOT, 1)
    _refused(ChainReason.NOT_ANCHORER, world.chain(3).bind, bytes(32), world.payee(0))


def test_one_root_per_epoch_in_increasing_order(world: Any) -> None:
    world.set_time(SCHEDULE.closes_at(E + 3))
    world.chain(1).anchor(E, ROOT, 1)
    _refused(ChainReason.ROOT_EXISTS, world.chain(1).anchor, E, bytes(31) + b"\x01", 1)
    world.chain(0).anchor(E + 2, ROOT, 2)  # (E + 2) % 3 = 0
    _refused(ChainReason.STALE_EPOCH, world.chain(2).anchor, E + 1, ROOT, 1)
    _refused(ChainReason.ZERO_ROOT, world.chain(1).anchor, E + 3, bytes(32), 1)
    assert world.chain(3).latest() == (E + 2, ROOT)


def _tree(amounts: dict[int, int]) -> tuple[merkle.Tree, list[bytes]]:
    accounts = [bytes([i + 1]) * 32 for i in range(max(amounts) + 1)]
    return merkle.build({accounts[i]: v for i, v in amounts.items()}), accounts


def test_claims_pay_cumulative_minus_claimed_against_the_newest_root(world: Any) -> None:
    tree, accounts = _tree({0: 500, 1: 300, 2: 200})
    a = accounts[0]
    anchorer = world.chain(1)
    for i, acc in enumerate(accounts):
        anchorer.bind(acc, world.payee(i))
    claimer = world.chain(3)  # anyone may send a claim; the payee is the bound one
    _refused(ChainReason.NO_ROOT, claimer.claim, a, 500, tree.proof(a))
    world.set_time(CLOSE)
    anchorer.anchor(E, tree.root, 3)
    before = world.payee_balance(world.payee(0))
    c = claimer.claim(a, 500, tree.proof(a))
    assert (c.paid, c.cumulative, c.epoch, c.payee) == (500, 500, E, world.payee(0))
    assert claimer.claimed(a) == 500
    assert world.payee_balance(world.payee(0)) - before == 500
    _refused(ChainReason.NOTHING_TO_CLAIM, claimer.claim, a, 500, tree.proof(a))  # replay
    # The next epoch's root: the same account's cumulative amount grew by 250.
    tree2, _ = _tree({0: 750, 1: 300, 2: 200})
    world.set_time(SCHEDULE.closes_at(E + 1) + SCHEDULE.fallback_s)
    world.chain(2).anchor(E + 1, tree2.root, 4)
    _refused(ChainReason.BAD_PROOF, claimer.claim, a, 500, tree.proof(a))  # an older root
    c2 = claimer.claim(a, 750, tree2.proof(a))
    assert (c2.paid, c2.epoch) == (250, E + 1)
    assert world.payee_balance(world.payee(0)) - before == 750


def test_claims_that_do_not_match_the_tree_are_refused(world: Any) -> None:
    tree, accounts = _tree({0: 500, 1: 300, 2: 200, 3: 100})
    for i, acc in enumerate(accounts):
        world.chain(0).bind(acc, world.payee(i))
    world.set_time(CLOSE)
    world.chain(1).anchor(E, tree.root, 4)
    c = world.chain(3)
    a, b = accounts[0], accounts[1]
    _refused(ChainReason.BAD_PROOF, c.claim, a, 499, tree.proof(a))  # a wrong amount
    _refused(ChainReason.BAD_PROOF, c.claim, a, 501, tree.proof(a))  # above cumulative
    _refused(ChainReason.BAD_PROOF, c.claim, a, 500, tree.proof(b))  # a wrong proof
    _refused(ChainReason.BAD_PROOF, c.claim, a, 500, (tree.proof(a) or [])[:-1])
    _refused(ChainReason.BAD_PROOF, c.claim, b, 500, tree.proof(a))  # another's amount
    stranger = bytes([99]) * 32
    _refused(ChainReason.BAD_PROOF, c.claim, stranger, 1, tree.proof(a))
    assert c.claimed(a) == 0
    assert c.claim(b, 300, tree.proof(b)).paid == 300


def test_a_claim_needs_a_bound_payee(world: Any) -> None:
    tree, accounts = _tree({0: 10, 1: 20})
    world.set_time(CLOSE)
    world.chain(1).anchor(E, tree.root, 2)
    _refused(ChainReason.UNBOUND, world.chain(3).claim, accounts[1], 20,
             tree.proof(accounts[1]))
    world.chain(2).bind(accounts[1], world.payee(1))
    assert world.chain(3).claim(accounts[1], 20, tree.proof(accounts[1])).paid == 20
