"""The ledger's state (spec 07 §3-§4, LGR-6..LGR-11): merge is a set union, replicas that
hold the same elements agree on every balance and root, reconciliation repairs what was
dropped, late elements still count, claims lower only open settlements, and cumulative
amounts never fall."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pnode.ledger import samples
from p2pnode.ledger.elements import Element, Kind, open_element
from p2pnode.ledger.reconcile import run_session
from p2pnode.ledger.state import Ledger, Params
from p2pnode.wire.cid import CID_PREFIX

NET = "devnet"
L, G = 20_000, 5_000
P = Params(epoch_len_ms=L, grace_ms=G)
E0 = 85_000_000  # the first epoch with elements: epoch E0 starts at E0 * L ms
SPAN = 6  # elements' ts fall in epochs E0 .. E0 + SPAN - 1
EPOCHS = range(E0 - 1, E0 + SPAN + 4)
EARLY = (E0 - 1) * L  # an arrival before any of these epochs closes: first_open < E0
REQUESTERS = [samples.identity("requester %d" % i) for i in range(3)]
WORKERS = [samples.identity("worker %d" % i).public_key for i in range(6)]


def _credits(n: int) -> list[Element]:
    out = []
    for i in range(n):
        ts = E0 * L + (i * 7919) % (SPAN * L)
        data = samples.credit(REQUESTERS[i % 3], NET, WORKERS[(i * 5) % 6],
                              1 + (i * 104_729) % 50_000, ts, i)
        out.append(open_element(data, net=NET, now_ms=(E0 + SPAN) * L))
    return out


def slash_of(account: bytes, ts: int, tag: int) -> Element:
    """A slash as the state sees one (its proof was checked on the way in)."""
    proof = hashlib.sha256(b"proof %d" % tag).digest()
    return Element(id=CID_PREFIX + proof, kind=Kind.SLASH, account=account,
                   payer=REQUESTERS[0].public_key, amount=0, ts=ts, job=CID_PREFIX + proof,
                   raw=b"slash %d" % tag)


CREDITS = _credits(240)
SLASHES = [slash_of(WORKERS[i % 6], E0 * L + (i * 3331) % (SPAN * L), i) for i in range(12)]
POOL = CREDITS + SLASHES

indices = st.lists(st.integers(0, len(POOL) - 1), max_size=120)
credit_indices = st.lists(st.integers(0, len(CREDITS) - 1), max_size=120)


def ledger_of(els: list[Element], arrival: int = EARLY) -> Ledger:
    led = Ledger(P)
    for el in els:
        led.add(el, arrival)
    return led


def copy(led: Ledger) -> Ledger:
    return Ledger(led.params, dict(led.held), led.frozen)


def merged(a: Ledger, b: Ledger, arrival: int = EARLY) -> Ledger:
    out = copy(a)
    out.merge(b, arrival)
    return out


def snapshot(led: Ledger) -> tuple[Any, ...]:
    """Everything that follows from a replica: what it holds, where each settles, and every
    epoch's balances and root."""
    return ({i: s for i, (_, s) in led.held.items()}, led.fingerprint(),
            [led.balances(e) for e in EPOCHS], [led.tree(e).root for e in EPOCHS],
            [led.count(e) for e in EPOCHS])


def pick(idx: list[int]) -> list[Element]:
    return [POOL[i] for i in idx]


# -- params ------------------------------------------------------------------------------


def test_epochs_and_closes() -> None:
    assert P.epoch(E0 * L) == E0 and P.epoch(E0 * L - 1) == E0 - 1
    assert P.closes_at(E0) == (E0 + 1) * L + G
    assert P.first_open(P.closes_at(E0) - 1) == E0
    assert P.first_open(P.closes_at(E0)) == E0 + 1
    assert P.last_closed(P.closes_at(E0)) == E0
    assert P.first_open(0) == 0 and P.last_closed(0) == -1
    assert P.settle(E0 * L, EARLY) == E0
    assert P.settle(E0 * L, P.closes_at(E0)) == E0 + 1
    for bad in ((999, 0), (20_000, 20_000), (20_000, -1)):
        with pytest.raises(ValueError):
            Params(*bad)
    assert (Params().epoch_len_ms, Params().grace_ms) == (3_600_000, 30_000)


def test_a_credit_pays_its_worker_in_its_epoch() -> None:
    el = CREDITS[0]
    led = ledger_of([el])
    s = P.epoch(el.ts)
    assert led.held[el.id] == (el, s)
    assert led.balances(s - 1) == {}
    assert led.balances(s) == {el.account: el.amount}
    assert led.spent(s) == {el.payer: el.amount}
    assert led.count(s - 1) == 0 and led.count(s) == 1
    assert led.late == 0


# -- merge is a set union -----------------------------------------------------------------


@given(indices, indices)
def test_merge_is_commutative(x: list[int], y: list[int]) -> None:
    a, b = ledger_of(pick(x)), ledger_of(pick(y))
    ab, ba = merged(a, b), merged(b, a)
    assert snapshot(ab) == snapshot(ba) == snapshot(ledger_of(pick(sorted(set(x) | set(y)))))
    assert set(ab.held) == set(a.held) | set(b.held)


@given(indices, indices, indices)
def test_merge_is_associative(x: list[int], y: list[int], z: list[int]) -> None:
    a, b, c = ledger_of(pick(x)), ledger_of(pick(y)), ledger_of(pick(z))
    assert snapshot(merged(merged(a, b), c)) == snapshot(merged(a, merged(b, c)))


@given(indices, indices)
def test_merge_is_idempotent(x: list[int], y: list[int]) -> None:
    a, b = ledger_of(pick(x)), ledger_of(pick(y))
    assert snapshot(merged(a, a)) == snapshot(a)
    once = merged(a, b)
    assert snapshot(merged(once, b)) == snapshot(once)
    assert snapshot(merged(once, a)) == snapshot(once)
    # Adding an element held already changes nothing and says so.
    for el in pick(x):
        assert a.add(el, EARLY) is None


@given(indices, st.randoms(use_true_random=False))
def test_same_elements_in_any_order_with_duplicates_give_one_state(
        x: list[int], rnd: random.Random) -> None:
    els = pick(x)
    shuffled = els + els[: len(els) // 2]
    rnd.shuffle(shuffled)
    a, b = ledger_of(els), ledger_of(shuffled)
    assert snapshot(a) == snapshot(b)
    assert len(a) == len(set(x))


@given(indices, st.randoms(use_true_random=False))
def test_arrival_before_the_close_does_not_matter(x: list[int], rnd: random.Random) -> None:
    # Any arrival while an element's epoch is open settles it in that epoch.
    els = pick(x)
    led = Ledger(P)
    for el in els:
        led.add(el, rnd.randint(0, P.closes_at(P.epoch(el.ts)) - 1))
    assert snapshot(led) == snapshot(ledger_of(els))
    assert led.late == 0


# -- reconciliation repairs drops ---------------------------------------------------------


def key_of(el: Element) -> bytes:
    return el.key


def repair(a: Ledger, b: Ledger, arrival: int) -> int:
    """Sessions between a (initiator) and b until they hold the same set, moving each
    element with its sender's settlement (RCN-8); the number of sessions."""
    for sessions in range(1, 4):
        r = run_session([key_of(el) for el in a.elements()],
                        [key_of(el) for el in b.elements()])
        if r.same:
            return sessions
        assert r.wanted == r.missing
        for k in r.missing:
            el, s = b.held[CID_PREFIX + k]
            assert a.add(el, arrival, claim=s) is not None
        for k in r.extra:
            el, s = a.held[CID_PREFIX + k]
            assert b.add(el, arrival, claim=s) is not None
    raise AssertionError("replicas did not converge in 3 sessions")


@settings(max_examples=40, deadline=None)
@given(st.sets(st.integers(0, len(POOL) - 1), max_size=200), st.data())
def test_replicas_with_drops_are_repaired_by_sync(full: set[int], data: st.DataObject) -> None:
    full_l = sorted(full)
    drops_a = data.draw(st.sets(st.sampled_from(full_l))) if full_l else set()
    drops_b = data.draw(st.sets(st.sampled_from(full_l))) if full_l else set()
    rnd = data.draw(st.randoms(use_true_random=False))
    a, b = Ledger(P), Ledger(P)
    for replica, drops in ((a, drops_a), (b, drops_b)):
        for i in full_l:
            if i not in drops:
                replica.add(POOL[i], rnd.randint(0, EARLY))
    held = {i for i in full_l if i not in drops_a or i not in drops_b}
    sessions = repair(a, b, EARLY)
    assert sessions == (1 if not drops_a ^ drops_b else 2)
    assert snapshot(a) == snapshot(b) == snapshot(ledger_of(pick(sorted(held))))
    assert set(a.held) == {POOL[i].id for i in held}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(POOL) - 1), st.integers(0, 3)), max_size=80),
       st.integers(0, 2))
def test_a_new_replica_adopts_the_settlements_it_is_told(
        held: list[tuple[int, int]], later: int) -> None:
    # b settled some elements late (restored from its store); a, new, learns them by sync
    # long after their epochs closed and settles each where b did, not now.
    b = Ledger(P)
    for i, late in held:
        b.restore(POOL[i], P.epoch(POOL[i].ts) + late)
    a = Ledger(P)
    now = P.closes_at(E0 + SPAN + 4) + later * L
    repair(a, b, now)
    assert snapshot(a) == snapshot(b)


# -- late elements and claims (LGR-8) -----------------------------------------------------


def test_a_late_element_settles_in_the_first_open_epoch_and_still_counts() -> None:
    el = CREDITS[1]
    e = P.epoch(el.ts)
    on_time, late = Ledger(P), Ledger(P)
    assert on_time.add(el, P.closes_at(e) - 1) == e
    assert late.add(el, P.closes_at(e)) == e + 1
    assert late.add(el, P.closes_at(e) + 5 * L) is None  # never raised by a later arrival
    assert late.held[el.id] == (el, e + 1)
    assert late.held[el.id][0].ts == el.ts  # keeps its own ts
    assert late.late == 1 and on_time.late == 0
    assert late.balances(e) == {}
    assert late.balances(e + 1) == {el.account: el.amount} == on_time.balances(e + 1)
    # Much later: settles in the then first open epoch.
    later = Ledger(P)
    assert later.add(el, P.closes_at(e + 7)) == e + 8


def test_a_late_element_settles_after_the_frozen_epoch() -> None:
    el = CREDITS[2]
    e = P.epoch(el.ts)
    led = Ledger(P)
    led.freeze(e + 2)  # roots fixed through e + 2, whatever the clock says
    assert led.add(el, EARLY) == e + 3
    led.freeze(e)  # freezing never goes back
    assert led.frozen == e + 2


def test_a_claim_lowers_an_open_settlement() -> None:
    el = CREDITS[3]
    e = P.epoch(el.ts)
    led = Ledger(P)
    now = P.closes_at(e + 4)
    assert led.add(el, now) == e + 5  # late, by gossip
    assert led.add(el, now, claim=e + 7) is None  # a claim never raises it
    assert led.add(el, now, claim=e + 2) == e + 2  # a peer settled it earlier
    assert led.held[el.id][1] == e + 2
    assert led.add(el, now, claim=e - 3) == e  # never before its own epoch
    assert led.add(el, now, claim=e) is None


def test_a_claim_never_moves_a_frozen_settlement() -> None:
    el = CREDITS[4]
    e = P.epoch(el.ts)
    led = Ledger(P)
    now = P.closes_at(e + 4)
    assert led.add(el, now) == e + 5
    root = led.tree(e + 5).root
    led.freeze(e + 5)
    assert led.add(el, now, claim=e) is None
    assert led.held[el.id][1] == e + 5
    assert led.tree(e + 5).root == root


def test_a_claim_lowers_only_down_to_the_first_unfrozen_epoch() -> None:
    el = CREDITS[5]
    e = P.epoch(el.ts)
    led = Ledger(P)
    now = P.closes_at(e + 4)
    assert led.add(el, now) == e + 5
    led.freeze(e + 2)
    assert led.add(el, now, claim=e) == e + 3
    assert led.balances(e + 2) == {}


def test_a_claim_is_capped_at_the_current_epoch() -> None:
    # A new element told to have settled far ahead settles no later than now's epoch.
    el = CREDITS[6]
    e = P.epoch(el.ts)
    led = Ledger(P)
    assert led.add(el, P.closes_at(e + 1), claim=e + 50) == e + 2


@given(st.integers(0, len(CREDITS) - 1), st.integers(0, 6),
       st.lists(st.tuples(st.integers(0, 10), st.integers(-1, 10), st.booleans()),
                max_size=12))
def test_settlements_only_fall_and_never_in_a_frozen_epoch(
        i: int, late: int, steps: list[tuple[int, int, bool]]) -> None:
    el = CREDITS[i]
    e = P.epoch(el.ts)
    led = Ledger(P)
    s = led.add(el, P.closes_at(e + late - 1) if late else EARLY)
    assert s == e + late
    for claim, freeze, gossip in steps:
        before = led.held[el.id][1]
        if freeze >= 0:
            led.freeze(e + freeze)
        out = led.add(el, P.closes_at(e + 10), None if gossip else e + claim)
        after = led.held[el.id][1]
        assert after <= before and after >= e
        if before <= led.frozen:
            assert after == before and out is None
        if after != before:
            assert out == after and after > led.frozen


# -- balances (LGR-9, LGR-10) -------------------------------------------------------------


def random_ledger(idx: list[int], rnd: random.Random) -> Ledger:
    """The elements of ``idx``, each arriving at a random time (on time, or some epochs
    late), with freezes in between."""
    led = Ledger(P)
    for i in idx:
        el = POOL[i]
        if rnd.random() < 0.1:
            led.freeze(rnd.randrange(E0 - 1, E0 + SPAN))
        led.add(el, rnd.randint(EARLY, P.closes_at(E0 + SPAN + 1)))
    return led


@given(indices, st.randoms(use_true_random=False))
def test_cumulative_balances_never_fall(idx: list[int], rnd: random.Random) -> None:
    led = random_ledger(idx, rnd)
    prev: dict[bytes, int] = {}
    for e in EPOCHS:
        cur = led.balances(e)
        for a, v in prev.items():
            assert cur.get(a, 0) >= v
        assert all(v > 0 for v in cur.values())
        prev = cur


@given(indices, st.randoms(use_true_random=False))
def test_balances_are_what_unslashed_credits_pay(idx: list[int], rnd: random.Random) -> None:
    led = random_ledger(idx, rnd)
    for e in EPOCHS:
        slashed = {(el.account, s) for el, s in led.held.values()
                   if el.kind is Kind.SLASH and s <= e}
        want: dict[bytes, int] = {}
        for el, s in led.held.values():
            if el.kind is Kind.CREDIT and s <= e and (el.account, s) not in slashed:
                want[el.account] = want.get(el.account, 0) + el.amount
        assert led.balances(e) == {a: v for a, v in want.items() if v}
        assert sum(led.spent(e).values()) == sum(
            el.amount for el, s in led.held.values() if el.kind is Kind.CREDIT and s <= e)


@given(credit_indices, st.integers(0, 5), st.integers(0, SPAN - 1), st.integers(1, 3))
def test_a_slash_forfeits_exactly_its_settlement_epochs_earnings(
        idx: list[int], w: int, k: int, copies: int) -> None:
    cheater = WORKERS[w]
    s = E0 + k
    without = ledger_of(pick(idx))
    with_slash = copy(without)
    for c in range(copies):
        assert with_slash.add(slash_of(cheater, s * L + c, 1000 + c), EARLY) == s
    forfeited = without.earned(s).get((cheater, s), 0)
    for e in EPOCHS:
        before, after = without.balances(e), with_slash.balances(e)
        lost = forfeited if e >= s else 0
        assert after.get(cheater, 0) == before.get(cheater, 0) - lost
        assert {a: v for a, v in after.items() if a != cheater} == \
            {a: v for a, v in before.items() if a != cheater}
        if lost == 0:
            assert with_slash.tree(e).root == without.tree(e).root


def test_a_slash_in_another_epoch_forfeits_nothing_there() -> None:
    el = CREDITS[0]
    e = P.epoch(el.ts)
    led = ledger_of([el, slash_of(el.account, (e + 1) * L, 1), slash_of(el.account,
                                                                         (e - 1) * L, 2)])
    assert led.balances(e + 3) == {el.account: el.amount}
    led.add(slash_of(el.account, e * L + 1, 3), EARLY)
    assert led.balances(e + 3) == {}


def test_a_late_slash_forfeits_the_epoch_it_settles_in() -> None:
    # A credit of epoch e+1 and a slash of epoch e that arrived late, in e+1: the credit is
    # forfeited, not anything of epoch e.
    c0 = next(c for c in CREDITS if P.epoch(c.ts) == E0)
    c1 = next(c for c in CREDITS if P.epoch(c.ts) == E0 + 1 and c.account == c0.account)
    led = ledger_of([c0, c1])
    assert led.add(slash_of(c0.account, E0 * L, 9), P.closes_at(E0)) == E0 + 1
    assert led.balances(E0) == {c0.account: c0.amount}
    assert led.balances(E0 + 1) == {c0.account: c0.amount}
    assert led.tree(E0).root == led.tree(E0 + 1).root


def test_an_epoch_with_nothing_settled_has_the_previous_root() -> None:
    els = [c for c in CREDITS if P.epoch(c.ts) in (E0, E0 + 2)]
    led = ledger_of(els)
    assert E0 + 1 not in led.settled_epochs()
    assert led.tree(E0 + 1).root == led.tree(E0).root
    assert led.tree(E0 + 2).root != led.tree(E0).root
