"""The anchoring service against a devchain (spec 08, draft): a node anchors its newest
closed root when the rotation lets it, checks anchored roots against its own (a mismatch
is loud and counted), and claims what it earned with one proof."""

from __future__ import annotations

import random
from pathlib import Path

import trio
from prometheus_client import CollectorRegistry

from p2pnode.chain.base import Schedule
from p2pnode.chain.devchain import DevChain
from p2pnode.identity import Identity
from p2pnode.ledger import samples
from p2pnode.ledger.elements import open_element
from p2pnode.ledger.state import Params
from p2pnode.ledger.store import LedgerStore
from p2pnode.services.anchoring import AnchorMetrics, AnchorService
from p2pnode.services.ledger import LedgerMetrics, LedgerService
from tests.adversarial.test_ledger_bounds import _Gossip, _Sync

NET = "anchoring"
L_S, G_S, F_S = 20, 5, 10


class _Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _ledger(tmp: Path, clock: _Clock, name: str) -> LedgerService:
    params = Params(epoch_len_ms=L_S * 1000, grace_ms=G_S * 1000)
    return LedgerService(net=NET, params=params,
                         store=LedgerStore(tmp / f"{name}.db", params), gossip=_Gossip(),
                         topic="t", sync=_Sync(),  # type: ignore[arg-type]
                         wall_ms=lambda: int(clock() * 1000), clock=clock,
                         rng=random.Random(1), metrics=LedgerMetrics(CollectorRegistry()),
                         reject=lambda r: None)


async def test_anchor_check_and_claim(tmp_path: Path) -> None:
    t0 = 1_700_000_000 // L_S * L_S  # the start of an epoch, s
    clock = _Clock(t0 + 1)
    worker = Identity(b"\x07" * 32)
    other = Identity(b"\x08" * 32)
    schedule = Schedule(L_S, G_S, F_S)
    path = tmp_path / "chain.db"
    e = t0 // L_S
    # The worker is the designated anchorer of epoch e: it is first in the rotation from e.
    order = [worker, other] if e % 2 == 0 else [other, worker]
    DevChain.create(path, worker, [i.public_key.hex() for i in order], schedule,
                    clock=clock).close()
    ledger = _ledger(tmp_path, clock, "w")
    req = samples.identity("anchoring requester")
    for i in range(3):  # three credits of 40 to the worker in epoch e
        data = samples.credit(req, NET, worker.public_key, 40, (t0 + 1) * 1000 + i, i)
        ledger._keep(open_element(data, net=NET, now_ms=(t0 + 2) * 1000), None, "own")
    svc = AnchorService(chain=DevChain(path, worker, clock=clock), ledger=ledger,
                        account=worker.public_key, payee="worker-payee",
                        metrics=AnchorMetrics(CollectorRegistry()), wall_s=clock)
    clock.t = schedule.closes_at(e)
    assert await ledger.close_due() and ledger.ledger.frozen == e
    await trio.to_thread.run_sync(svc.step, ledger.ledger.frozen, dict(ledger.roots))
    assert svc.anchored_by_me == [e] and svc.latest is not None
    root = ledger.root(e)
    assert root is not None and svc.chain.root_of(e) == root[0]
    assert svc.checked == e and svc.mismatches == {}
    c = await svc.claim()
    assert (c.paid, c.cumulative, c.payee) == (120, 120, "worker-payee")
    # Another node whose ledger lacks one credit sees the anchored root differ from its own.
    clock2 = _Clock(t0 + 1)
    theirs = _ledger(tmp_path, clock2, "o")
    data = samples.credit(req, NET, worker.public_key, 40, (t0 + 1) * 1000, 0)
    theirs._keep(open_element(data, net=NET, now_ms=(t0 + 2) * 1000), None, "own")
    clock2.t = clock.t
    await theirs.close_due()
    flagged: list[int] = []
    watcher = AnchorService(chain=DevChain(path, other, clock=clock), ledger=theirs,
                            account=other.public_key, payee="other",
                            metrics=AnchorMetrics(CollectorRegistry()), wall_s=clock2,
                            on_mismatch=flagged.append)
    await trio.to_thread.run_sync(watcher.step, theirs.ledger.frozen, dict(theirs.roots))
    assert flagged == [e] and str(e) in watcher.status()["mismatches"]
    assert watcher.anchored_by_me == []  # epoch e has its root: no second one


async def test_a_mismatch_asks_the_ledger_to_reconcile_with_every_peer(
        tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    ledger = _ledger(tmp_path, _Clock(1_700_000_000.0), "r")
    peers = {"p1": 1, "p2": 1, "p3": 1}
    ledger.gossip.topic_peers = lambda topic: peers  # type: ignore[attr-defined]
    ledger.clock = trio.current_time  # no periodic session is due in this test
    ledger.sync_interval_s = 10**9
    called: list[str] = []

    async def record(peer: str) -> str:
        called.append(peer)
        return "same"

    ledger.sync_with = record  # type: ignore[method-assign]
    async def until(n: int) -> None:
        with trio.fail_after(30):
            while len(called) < n:
                await trio.sleep(0.1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ledger._sync_loop)
        await until(3)
        assert sorted(called) == ["p1", "p2", "p3"]  # each once, as it appeared (RCN-1)
        await trio.sleep(60)  # a minute of virtual time: nothing more without a reason
        assert len(called) == 3 and ledger.resyncs == 0
        ledger.request_resync()
        await until(6)
        assert sorted(called) == ["p1", "p1", "p2", "p2", "p3", "p3"] and ledger.resyncs == 1
        nursery.cancel_scope.cancel()


async def test_an_anchorer_does_not_anchor_a_root_another_node_announced_otherwise(
        tmp_path: Path) -> None:
    from p2pnode.chain.announce import AnchorAnnounce, Announced, Announcements

    t0 = 1_700_000_000 // L_S * L_S
    clock = _Clock(t0 + 1)
    worker, other = Identity(b"\x07" * 32), Identity(b"\x08" * 32)
    schedule = Schedule(L_S, G_S, F_S)
    e = t0 // L_S
    order = [worker, other] if e % 2 == 0 else [other, worker]
    path = tmp_path / "chain.db"
    DevChain.create(path, worker, [i.public_key.hex() for i in order], schedule,
                    clock=clock).close()
    ledger = _ledger(tmp_path, clock, "d")
    req = samples.identity("anchoring requester")
    data = samples.credit(req, NET, worker.public_key, 40, (t0 + 1) * 1000, 0)
    ledger._keep(open_element(data, net=NET, now_ms=(t0 + 2) * 1000), None, "own")
    clock.t = schedule.closes_at(e)
    await ledger.close_due()
    ours = ledger.roots[e][0]
    table = Announcements()
    body = AnchorAnnounce(net=NET, epoch=e, root=b"\x09" * 32, count=1, ts=1)
    assert table.add(Announced(other.public_key, body))
    assert not table.add(Announced(other.public_key, body))  # one root per signer
    table.add(Announced(worker.public_key, AnchorAnnounce(net=NET, epoch=e, root=ours,
                                                          count=1, ts=1)))
    assert table.disagree(e, ours, worker.public_key) == [other.public_key]
    flagged: list[int] = []
    svc = AnchorService(chain=DevChain(path, worker, clock=clock), ledger=ledger,
                        account=worker.public_key, payee="w",
                        metrics=AnchorMetrics(CollectorRegistry()), wall_s=clock,
                        on_mismatch=flagged.append)
    await trio.to_thread.run_sync(svc.step, ledger.ledger.frozen, dict(ledger.roots),
                                  table.snapshot())
    assert svc.anchored_by_me == [] and svc.deferred == [e] and flagged == [e]
    assert svc.chain.root_of(e) is None
    # With agreeing announcements only (ours and the same root from the other), it anchors;
    # a node outside the rotation announcing another root does not count (ANC-5).
    svc.deferred.clear()
    agree = Announcements()
    agree.add(Announced(other.public_key, AnchorAnnounce(net=NET, epoch=e, root=ours,
                                                         count=1, ts=1)))
    agree.add(Announced(b"\x0c" * 32, AnchorAnnounce(net=NET, epoch=e, root=b"\x0d" * 32,
                                                      count=1, ts=1)))
    await trio.to_thread.run_sync(svc.step, ledger.ledger.frozen, dict(ledger.roots),
                                  agree.snapshot())
    assert svc.anchored_by_me == [e]


def test_the_announcements_table_is_bounded() -> None:
    from p2pnode.chain import announce

    table = announce.Announcements()
    for e in range(announce.KEEP_EPOCHS + 5):
        body = announce.AnchorAnnounce(net=NET, epoch=e, root=b"\x01" * 32, count=0, ts=0)
        table.add(announce.Announced(b"\x02" * 32, body))
    assert len(table.by_epoch) == announce.KEEP_EPOCHS and min(table.by_epoch) == 5
    old = announce.AnchorAnnounce(net=NET, epoch=0, root=b"\x01" * 32, count=0, ts=0)
    assert not table.add(announce.Announced(b"\x03" * 32, old))  # older than all kept
    for i in range(announce.MAX_SIGNERS + 3):
        body = announce.AnchorAnnounce(net=NET, epoch=30, root=b"\x01" * 32, count=0, ts=0)
        table.add(announce.Announced(i.to_bytes(32, "big"), body))
    assert len(table.by_epoch[30]) == announce.MAX_SIGNERS


def test_whose_announcements_count_on_each_backend(tmp_path: Path) -> None:
    from tests.chain.dev_world import DevWorld
    from tests.chain.evm_world import EvmWorld

    dev = DevWorld(tmp_path)
    assert dev.chain(3).is_anchorer_key(dev.ids[0].public_key)
    assert not dev.chain(0).is_anchorer_key(dev.ids[3].public_key)  # outside the rotation
    dev.close()
    evm = EvmWorld()
    node, stranger = b"\x21" * 32, b"\x22" * 32
    evm.chain(0).bind(node, evm.sender_name(1))  # its payee is an anchorer's address
    evm.chain(0).bind(stranger, evm.payee(0))
    assert evm.chain(3).is_anchorer_key(node)
    assert not evm.chain(3).is_anchorer_key(stranger)
    assert not evm.chain(3).is_anchorer_key(b"\x23" * 32)  # unbound
