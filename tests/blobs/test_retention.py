"""The blob store's quota and retention: the pure policy, then the store that applies it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pnode.blobs.retention import PRESSURE_TARGET_PERCENT, HeldBlob, RetentionPolicy, plan_gc
from p2pnode.blobs.store import BlobStore, StoreFull
from p2pnode.wire.cid import cid_of
from p2pnode.wire.reasons import Reason

DAY_MS = 86_400_000


def blob(i: int, size: int, used: int) -> HeldBlob:
    return HeldBlob(cid_of(i.to_bytes(4, "big")), size, used)


def test_expired_unpinned_blobs_go_and_pinned_ones_stay() -> None:
    old, pinned_old, fresh = blob(1, 10, 0), blob(2, 10, 0), blob(3, 10, DAY_MS)
    plan = plan_gc([old, pinned_old, fresh], {pinned_old.cid}, DAY_MS + 1,
                   RetentionPolicy(quota_bytes=1000, retention_ms=DAY_MS))
    assert plan.expired == (old.cid,) and plan.pressure == () and plan.fits
    assert plan.usage_after == 20


def test_under_pressure_least_recently_used_go_first_down_to_the_target() -> None:
    a, b, c = blob(1, 40, 300), blob(2, 40, 100), blob(3, 40, 200)
    policy = RetentionPolicy(quota_bytes=120, retention_ms=DAY_MS)
    plan = plan_gc([a, b, c], set(), 400, policy, incoming=30)
    # without b, 80 + 30 would fit under 120 but not under the target of 108: c goes too
    assert plan.pressure == (b.cid, c.cid) and plan.fits and plan.usage_after == 40
    assert plan_gc([a, b, c], set(), 400, policy).evict == ()  # at the quota: nothing


def test_a_put_that_cannot_fit_evicts_nothing() -> None:
    a, b = blob(1, 40, 100), blob(2, 40, 200)
    plan = plan_gc([a, b], {a.cid}, 300, RetentionPolicy(quota_bytes=100, retention_ms=DAY_MS),
                   incoming=70)
    assert not plan.fits and plan.evict == ()


blobs_st = st.lists(st.tuples(st.integers(0, 500), st.integers(0, 10_000), st.booleans()),
                    max_size=30, unique_by=lambda t: t[0])


@given(blobs_st, st.integers(0, 3000), st.integers(0, 600), st.integers(0, 20_000),
       st.integers(1, 10_000))
def test_plan_keeps_the_quota_and_every_pin(
        rows: list[tuple[int, int, bool]], quota: int, incoming: int, now: int,
        retention: int) -> None:
    held = [blob(i, 1 + i % 97, used) for i, used, _ in rows]
    pinned = {b.cid for b, (_, _, p) in zip(held, rows, strict=True) if p}
    policy = RetentionPolicy(quota_bytes=quota, retention_ms=retention)
    plan = plan_gc(held, pinned, now, policy, incoming)
    evicted = set(plan.evict)
    assert not evicted & pinned
    assert len(evicted) == len(plan.evict)
    kept = [b for b in held if b.cid not in evicted]
    assert plan.usage_after == sum(b.size for b in kept)
    # Every unpinned blob past its retention goes; nothing newer goes without pressure.
    assert {b.cid for b in held if b.cid not in pinned and b.used_ms <= now - retention} \
        <= evicted
    pinned_bytes = sum(b.size for b in held if b.cid in pinned)
    if pinned_bytes + incoming <= quota:
        assert plan.fits and plan.usage_after + incoming <= quota
    else:
        assert not plan.fits and not plan.pressure
    if plan.pressure:  # down to the target, or nothing unpinned left
        target = quota * PRESSURE_TARGET_PERCENT // 100
        assert plan.usage_after + incoming <= target or all(
            b.cid in pinned or b.cid in evicted for b in held)
    if plan.pressure:  # least recently used first: no kept unpinned blob is older
        newest_evicted = max((b.used_ms, b.cid) for b in held if b.cid in plan.pressure)
        assert all((b.used_ms, b.cid) > newest_evicted for b in kept if b.cid not in pinned)


# -- the store --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def make(tmp: Path, clock: Clock, **kw: object) -> tuple[BlobStore, dict[str, int]]:
    counts: dict[str, int] = {}

    def evicted(why: str, n: int) -> None:
        counts[why] = counts.get(why, 0) + n

    def refused(size: int) -> None:
        counts["refused"] = counts.get("refused", 0) + 1

    store = BlobStore(tmp / "blobs", tmp / "blobs.db", clock=clock, on_evict=evicted,
                      on_refuse=refused, **kw)  # type: ignore[arg-type]
    return store, counts


def test_store_evicts_lru_under_pressure_and_refuses_what_cannot_fit(tmp_path: Path) -> None:
    clock = Clock()
    store, counts = make(tmp_path, clock, quota_bytes=300, retention_s=3600)
    a = store.put(b"a" * 100)
    clock.t += 1
    b = store.put(b"b" * 100)
    clock.t += 1
    store.pin("job", [a])
    c = store.put(b"c" * 100)
    assert store.usage == 300
    clock.t += 1
    d = store.put(b"d" * 100)  # b, then c: the least recently used unpinned blobs
    # down to PRESSURE_TARGET_PERCENT of the quota, so that the next puts find room
    assert not store.has(b) and not store.has(c) and store.has(a) and store.has(d)
    assert store.usage == 200 and counts == {"pressure": 2}
    clock.t += 1
    e = store.put(b"e" * 100)
    assert store.usage == 300 and counts == {"pressure": 2}
    clock.t += 1
    store.get(d)  # a read is a use: e is now the oldest unpinned
    clock.t += 1
    f = store.put(b"f" * 50)
    assert not store.has(e) and store.has(d) and store.has(f) and store.usage == 250
    store.pin("job", [d])
    with pytest.raises(StoreFull) as err:
        store.put(b"g" * 250)
    assert err.value.reason is Reason.LIMIT_EXCEEDED and counts["refused"] == 1
    assert store.usage == 250 and store.has(a) and store.has(d)
    assert list((store.root / "tmp").iterdir()) == []
    store.unpin("job")
    store.put(b"g" * 250)
    assert store.usage == 250 and store.count() == 1


def test_collect_drops_blobs_unused_for_the_retention_but_not_pinned_ones(
        tmp_path: Path) -> None:
    clock = Clock()
    store, counts = make(tmp_path, clock, retention_s=10)
    old, kept = store.put(b"old"), store.put(b"kept")
    store.pin(("req", b"job"), [kept])
    clock.t += 5
    assert store.collect().evict == ()
    clock.t += 6
    assert store.collect().expired == (old,)
    assert not store.has(old) and store.has(kept) and counts == {"expired": 1}
    store.unpin(("req", b"job"))
    clock.t += 11
    store.collect()
    assert store.count() == 0 and store.usage == 0


def test_usage_and_last_use_survive_a_reopen(tmp_path: Path) -> None:
    clock = Clock()
    store, _ = make(tmp_path, clock, retention_s=10)
    x = store.put(b"x" * 10)
    clock.t += 8
    store.get(x)
    store.close()
    clock.t += 8
    again, _ = make(tmp_path, clock, retention_s=10)
    assert again.usage == 10 and again.collect().evict == ()


def test_a_blob_larger_than_the_quota_is_refused_while_it_streams_in(tmp_path: Path) -> None:
    clock = Clock()
    store, counts = make(tmp_path, clock, quota_bytes=1000)
    kept = store.put(b"k" * 600)
    with store.writer() as w:
        w.write(b"x" * 900)
        with pytest.raises(StoreFull):
            w.write(b"x" * 200)  # 1100 > quota: stopped before it is all on disk
    assert counts == {"refused": 1} and store.has(kept) and store.usage == 600
    assert list((store.root / "tmp").iterdir()) == []
