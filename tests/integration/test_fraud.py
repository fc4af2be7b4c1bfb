"""A cheating worker among real nodes: rejected, proven wrong on the fraud topic, barred by
every node that checks the proof (spec 06)."""

from __future__ import annotations

from pathlib import Path

import trio

from p2pnode.jobs import tensors
from p2pnode.jobs.market import JobState, LeaseState
from p2pnode.jobs.matching import Capacity
from p2pnode.jobs.model import Requirements
from p2pnode.jobs.requester import Candidate
from p2pnode.node import Node
from p2pnode.wire.reasons import Reason
from tests.integration.helpers import start_node, wait_for


def _inputs(n: int, seed: bytes) -> dict[str, bytes]:
    return {"a": tensors.encode_matrix(tensors.random_int8_matrix(n, n, seed + b"a")),
            "b": tensors.encode_matrix(tensors.random_int8_matrix(n, n, seed + b"b"))}


async def test_a_cheater_is_proven_wrong_and_barred_everywhere(tmp_path: Path) -> None:
    # Node 0 requests; node 1 cheats on every matmul job (one entry off, committed
    # honestly); node 2 runs no matmul and only watches the fraud topic.
    configs = [{}, {"jobs_cheat": ("entry",), "jobs_discovery_interval_s": 0.5},
               {"caps_kinds": ("wasm",)}]
    async with trio.open_nursery() as nursery:
        nodes: list[Node] = []
        for kw in configs:
            await start_node(nursery, tmp_path, nodes, **kw)
        req, cheater, watcher = nodes
        await wait_for(lambda: all(n.caps_known() == 2 for n in nodes))
        job = await req.market.requester.submit("matmul", _inputs(16, b"f1"), {},
                                                Requirements(), lease_s=10)
        lease = None

        def rejected() -> bool:
            nonlocal lease
            lease = next(iter(job.leases.values()), None)
            return lease is not None and lease.state is LeaseState.REJECTED

        await wait_for(rejected, timeout=30)
        assert lease is not None and lease.reason == Reason.WRONG_RESULT.value
        assert lease.worker == cheater.identity.public_key
        # The proof reaches the watcher, which checks it and bars the cheater too.
        await wait_for(lambda: watcher.fraud is not None and watcher.fraud.taken == 1)
        assert req.fraud is not None and req.fraud.published == 1
        now = req.market.requester.clock.now_ms()
        for n in (req, watcher):
            assert n.market.requester.machine.bars.barred(cheater.identity.public_key,
                                                          n.market.requester.clock.now_ms())
        # The cheater gets no lease on another job: it is offered nothing, and when it finds
        # the job in the DHT its claim is refused (barred). The first job stays open.
        job2 = await req.market.requester.submit("matmul", _inputs(8, b"f2"), {},
                                                 Requirements(), lease_s=10)
        machine = req.market.requester.machine
        table = [Candidate(cheater.peer_id, cheater.identity.public_key,
                           Capacity.of_ad(req.table.get(cheater.peer_id).ad))]
        assert machine.candidates(job2, table, now) == []

        def refused_barred() -> int:
            return int(req.metrics.messages_rejected.labels(
                topic="job", reason=Reason.BARRED.value)._value.get())

        await wait_for(lambda: refused_barred() >= 1, timeout=30)
        assert not job2.leases and job.state is JobState.PUBLISHED
        assert machine.bars.barred(cheater.identity.public_key, now)
        nursery.cancel_scope.cancel()
