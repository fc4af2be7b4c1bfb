"""kill -9 a node while it takes a stream of ledger elements over /sync/1: every element
it acknowledged (a session that ended with its sync.ack) is in its store after the kill,
the store is consistent, and the restarted node holds them all (spec 07 LGR-15)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import trio

from p2pnode.api.client import call
from p2pnode.identity import Identity
from p2pnode.ledger import samples
from p2pnode.ledger.elements import open_element
from p2pnode.ledger.state import Params
from p2pnode.ledger.store import LedgerStore
from p2pnode.node import Node
from p2pnode.testnet import launcher
from tests.integration.helpers import HW, node_config, wait_for

NET = "testnet"  # the network of every in-process node of the suite (one per process)
BATCH = 25
PARAMS = Params(epoch_len_ms=60_000, grace_ms=15_000)  # the testnet launcher's default


def _held_ids(home: Path) -> set[bytes]:
    store = LedgerStore(home / "ledger.db", PARAMS)
    try:
        assert store.check() == "ok"
        ids = {el.id for el, _ in store.load()}
        # Every row is the element its id names: nothing half-written.
        for el, _ in store.load():
            assert open_element(el.raw, net=NET, now_ms=int(time.time() * 1000)).id == el.id
        return ids
    finally:
        store.close()


@pytest.mark.slow
async def test_kill_9_while_receiving_loses_no_acknowledged_element(tmp_path: Path) -> None:
    # A session every 2 s after a burst of 4 (RCN-9): the feeder keeps to it.
    opts = launcher.TestnetOptions(n=1, directory=tmp_path / "victim", network=NET,
                                   caps_interval=5.0)
    (victim,) = launcher.prepare_nodes(opts, tmp_path / "victim")
    await trio.to_thread.run_sync(launcher.start_network, [victim])
    try:
        addr = launcher._addr_of(victim, victim.status)
        req = samples.identity("crash requester")
        worker = samples.identity("crash worker").public_key
        acked: set[bytes] = set()
        async with trio.open_nursery() as nursery:
            home = tmp_path / "feeder"
            home.mkdir()
            feeder = Node(home, node_config(network=NET, bootstrap=(addr,),
                                            ledger_sync_interval_s=3600.0,
                                            ledger_epoch_len_s=60, ledger_grace_s=15),
                          Identity.generate(), hardware=HW)
            await nursery.start(feeder.run)
            assert feeder.ledger is not None and feeder.stack is not None
            svc = feeder.ledger
            await wait_for(lambda: victim.peer_id in feeder.stack.connected_peers(), 20)
            now = int(time.time() * 1000)
            nonce = 0
            for batch in range(8):
                for _ in range(BATCH):
                    nonce += 1
                    el = open_element(samples.credit(req, NET, worker, 10, now + nonce, nonce),
                                      net=NET, now_ms=now + nonce + 1)
                    svc._keep(el, None, "own")
                if batch < 6:  # acknowledged sessions
                    # The victim admits a session every 2 s after a burst (RCN-9): one over
                    # its rate is reset unread, so the feeder tries again until it is in.
                    with trio.fail_after(60):
                        while (result := await svc.sync_with(victim.peer_id)) not in (
                                "merged", "same"):
                            assert result in ("truncated", "unreachable"), result
                            await trio.sleep(0.5)
                    acked |= set(svc.ledger.held)  # the victim's sync.ack came
                else:  # the kill, in the middle of a session
                    async def session() -> None:
                        await svc.sync_with(victim.peer_id)

                    nursery.start_soon(session)
                    # Kill it once the session is under way (its stream is open).
                    await wait_for(lambda: victim.peer_id in svc._sessions_to, 10, 0.005)
                    assert victim.proc is not None
                    os.kill(victim.proc.pid, signal.SIGKILL)
                    await trio.to_thread.run_sync(victim.proc.wait)
                    break
            nursery.cancel_scope.cancel()
        # Every session before the kill was acknowledged (the victim may add its own credits).
        assert len(acked) >= 6 * BATCH
        held = _held_ids(victim.home)
        assert acked <= held, f"{len(acked - held)} acknowledged elements lost"
        # The restarted node comes back with every one of them.
        await trio.to_thread.run_sync(launcher.start_network, [victim])
        summary = call(victim.home, "ledger.summary", timeout=10)
        assert summary["elements"] >= len(acked)
        assert summary["receipts"] == summary["elements"]
    finally:
        launcher.stop_nodes([victim])
