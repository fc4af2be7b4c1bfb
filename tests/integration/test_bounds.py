"""What a run of jobs leaves behind stays bounded: the blob store of the requester and of
the worker stays under its quota throughout, and the jobs still complete."""

from __future__ import annotations

from pathlib import Path

import trio

from p2pnode.jobs import tensors
from p2pnode.jobs.market import JobState
from p2pnode.jobs.model import Requirements
from p2pnode.node import Node
from tests.integration.helpers import running_nodes, wait_for

N = 24
JOBS = 6


def _inputs(i: int) -> dict[str, bytes]:
    seed = b"bounds%d" % i
    return {"a": tensors.encode_matrix(tensors.random_int8_matrix(N, N, seed + b"a")),
            "b": tensors.encode_matrix(tensors.random_int8_matrix(N, N, seed + b"b"))}


def _disk_bytes(node: Node) -> int:
    assert node.blobs is not None
    return sum(f.stat().st_size for d in node.blobs.root.iterdir() if d.name != "tmp"
               for f in d.iterdir())


async def test_blob_store_stays_under_its_quota_across_a_run_of_jobs(tmp_path: Path) -> None:
    inputs = [_inputs(i) for i in range(JOBS)]
    per_job = sum(len(v) for v in inputs[0].values()) + tensors.encoded_matrix_size(
        "int64", N, N)
    quota = 3 * per_job  # two open jobs (a worker's concurrency) and a little more
    async with running_nodes(tmp_path, 2, blobs_quota_bytes=quota) as nodes:
        await wait_for(lambda: all(n.caps_known() == 1 for n in nodes))
        req, worker = nodes
        assert req.blobs is not None and worker.blobs is not None and req.market is not None
        peak = {0: 0, 1: 0}

        async def watch() -> None:
            while True:
                for i, n in enumerate(nodes):
                    assert n.blobs is not None
                    peak[i] = max(peak[i], n.blobs.usage, _disk_bytes(n))
                await trio.sleep(0.01)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            jobs = []
            for pair in range(0, JOBS, 2):
                batch = [await req.market.requester.submit("matmul", inputs[i], {},
                                                           Requirements(), lease_s=10)
                         for i in (pair, pair + 1)]
                await wait_for(lambda b=batch: all(j.terminal for j in b), timeout=30)
                jobs += batch
            nursery.cancel_scope.cancel()
        assert [j.state for j in jobs] == [JobState.COMPLETED] * JOBS
        assert max(peak.values()) <= quota, (peak, quota)
        for n in nodes:  # the store did have to let blobs go, least recently used first
            assert n.blobs is not None
            assert n.blobs.usage <= quota and n.blobs.count() < 3 * JOBS
        metrics = req.metrics.render().decode()
        assert 'p2pnode_blobs_evicted_total{why="pressure"} 0.0' not in metrics
        # the latest job's output is still there for its user
        out = next(le.output for le in jobs[-1].leases.values() if le.output)
        assert req.blobs.has(out)
