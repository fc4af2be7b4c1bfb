"""A requester that makes a worker fetch more than its blob store may hold fills the quota
at worst: the fetch fails with ``limit_exceeded``, the store never goes over, the refusal
is counted, and the worker goes on to run the next job (spec 05 §4.4)."""

from __future__ import annotations

from pathlib import Path

import trio

from p2pnode.jobs import tensors
from p2pnode.jobs.market import JobState
from p2pnode.jobs.model import Requirements
from p2pnode.jobs.worker import WorkState
from p2pnode.wire.reasons import Reason
from tests.adversarial.test_market_attacks import TEST_TIMEOUT_S, requester_node, start
from tests.integration.helpers import wait_for

QUOTA = 100_000


def matmul_inputs(n: int, seed: bytes) -> dict[str, bytes]:
    return {"a": tensors.encode_matrix(tensors.random_int8_matrix(n, n, seed + b"a")),
            "b": tensors.encode_matrix(tensors.random_int8_matrix(n, n, seed + b"b"))}


async def test_inputs_over_the_workers_quota_fail_the_fetch_not_the_worker(
        tmp_path: Path) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            req, _ = await requester_node(nursery, tmp_path / "req")
            victim, _ = await start(nursery, tmp_path / "victim", boot=req,
                                    blobs_quota_bytes=QUOTA)
            await wait_for(lambda: victim.peer_id in req.table)
            assert req.market is not None and victim.market is not None
            assert victim.blobs is not None
            peak = [0]

            async def watch() -> None:
                while True:
                    assert victim.blobs is not None
                    peak[0] = max(peak[0], victim.blobs.usage)
                    await trio.sleep(0.005)

            nursery.start_soon(watch)
            big = matmul_inputs(256, b"big")  # two inputs of 64 KiB: 128 KiB > QUOTA
            assert sum(map(len, big.values())) > QUOTA
            hog = await req.market.requester.submit("matmul", big, {}, Requirements(),
                                                    lease_s=4, deadline_s=30)
            works = victim.market.worker.machine.work
            await wait_for(lambda: hog.id in works and works[hog.id].state is WorkState.FAILED)
            assert works[hog.id].history[-1][2] == Reason.LIMIT_EXCEEDED.value
            metrics = victim.metrics.render().decode()
            assert "p2pnode_blobs_refused_total 0.0" not in metrics
            # the next job fits and runs on the same worker
            small = await req.market.requester.submit(
                "matmul", matmul_inputs(24, b"small"), {}, Requirements(), lease_s=4)
            await wait_for(lambda: small.terminal, timeout=30)
            assert small.state is JobState.COMPLETED
            assert peak[0] <= QUOTA and victim.blobs.usage <= QUOTA
            assert hog.state is not JobState.COMPLETED
            nursery.cancel_scope.cancel()
