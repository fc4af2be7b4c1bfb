"""Jobs flow between real nodes on loopback: offer and DHT paths, restart, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trio

from p2pnode.api.jobs import job_handlers
from p2pnode.api.views import job_detail, job_summary
from p2pnode.jobs import tensors
from p2pnode.jobs.market import JobState, LeaseState
from p2pnode.jobs.model import Requirements
from p2pnode.proofs.receipts import open_receipt
from tests.integration.helpers import LOOP_WAT, run_in_own_scope, running_nodes, wait_for


def _matmul_inputs(n: int, seed: bytes) -> dict[str, bytes]:
    return {"a": tensors.encode_matrix(tensors.random_int8_matrix(n, n, seed + b"a")),
            "b": tensors.encode_matrix(tensors.random_int8_matrix(n, n, seed + b"b"))}


async def test_matmul_job_offered_from_caps_table_completes_exactly(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, 3) as nodes:
        await wait_for(lambda: all(n.caps_known() == 2 for n in nodes))
        req = nodes[0]
        inputs = _matmul_inputs(24, b"s1")
        job = await req.market.requester.submit("matmul", inputs, {}, Requirements(), lease_s=10)
        await wait_for(lambda: job.terminal, timeout=30)
        assert job.state is JobState.COMPLETED
        detail = job_detail(job, req.blobs, req.peer_id)
        assert detail["worker"] in {nodes[1].peer_id, nodes[2].peer_id}
        events = [h["event"] for h in detail["history"]]
        assert events[:3] == ["published", "claimed", "leased"] and events[-1] == "verified"
        out = tensors.decode_matrix(Path(detail["output_path"]).read_bytes(), 1 << 20)
        a = tensors.decode_matrix(inputs["a"], 1 << 20).astype(np.int64)
        b = tensors.decode_matrix(inputs["b"], 1 << 20).astype(np.int64)
        assert np.array_equal(out, a @ b)
        # RCP-1: one receipt, signed by the requester, for the accepted lease.
        (raw,) = req.store.receipts(job.id)
        r = open_receipt(raw, net=req.config.network)
        accepted = next(le for le in job.leases.values() if le.state is LeaseState.ACCEPTED)
        assert r.requester == req.identity.public_key and r.receipt.worker == accepted.worker
        assert r.receipt.output == accepted.output and r.receipt.verified == "freivalds"


async def test_workers_find_jobs_through_the_dht(tmp_path: Path) -> None:
    # No direct offers: the only way to the job is provider records + the DHT value.
    async with running_nodes(tmp_path, 3, jobs_offer=False,
                             jobs_discovery_interval_s=1.0) as nodes:
        await wait_for(lambda: all(n.caps_known() == 2 for n in nodes))
        handlers = job_handlers(nodes[0])
        jobs = await handlers["job.submit"]({"kind": "wasm", "module": "example:sum",
                                             "count": 2, "lease_s": 10})
        ids = [bytes.fromhex(j["id"]) for j in jobs]
        market = nodes[0].market
        await wait_for(lambda: all(market.jobs[i].terminal for i in ids), timeout=60)
        assert all(market.jobs[i].state is JobState.COMPLETED for i in ids)
        workers = {w.job.id for n in nodes[1:] for w in n.market.worker.machine.work.values()}
        assert set(ids) <= workers


async def test_requester_restart_resumes_open_jobs(tmp_path: Path) -> None:
    # A lone requester: nobody can take the job, so it is still open when the node stops.
    async with running_nodes(tmp_path, 1) as nodes:
        job = await nodes[0].market.requester.submit("matmul", _matmul_inputs(8, b"r"), {},
                                                     Requirements())
        job_id = job.id
        home, identity = nodes[0].home, nodes[0].identity
    async with running_nodes(tmp_path / "again", 1) as other:
        assert job_id not in other[0].market.jobs
    from p2pnode.node import Node
    from tests.integration.helpers import HW, node_config

    node = Node(home, node_config(), identity, hardware=HW)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        resumed = node.market.jobs[job_id]
        assert resumed.state is JobState.PUBLISHED
        assert [h[1] for h in resumed.history] == ["published"]
        nursery.cancel_scope.cancel()


async def test_a_restarted_worker_resumes_its_live_lease(tmp_path: Path) -> None:
    from p2pnode.identity import Identity
    from p2pnode.jobs.executors import compile_wat
    from p2pnode.node import Node
    from tests.integration.helpers import HW, node_config

    (tmp_path / "r").mkdir()
    (tmp_path / "w").mkdir()
    worker_id = Identity.generate()
    async with trio.open_nursery() as outer:
        req = Node(tmp_path / "r", node_config(caps_kinds=()), Identity.generate(),
                   hardware=HW)
        await outer.start(req.run)
        boot = (req.stack.listen_addrs()[0],)
        wcfg = node_config(bootstrap=boot, jobs_wasm_fuel=10**12)
        worker = Node(tmp_path / "w", wcfg, worker_id, hardware=HW)
        w_scope = await outer.start(run_in_own_scope, worker)
        await wait_for(lambda: req.caps_known() == 1)
        job = await req.market.requester.submit(
            "wasm", {"module": compile_wat(LOOP_WAT), "input": (3_000_000).to_bytes(4, "little")},
            {}, Requirements(), lease_s=20)
        work = worker.market.worker.machine.work
        await wait_for(lambda: job.id in work and work[job.id].state.value == "running",
                       timeout=30)
        # Stop the worker mid-job (its state is in SQLite, as after kill -9) and restart it.
        w_scope.cancel()
        await wait_for(lambda: worker.stack is None)
        again = Node(tmp_path / "w", wcfg, worker_id, hardware=HW)
        await outer.start(again.run)
        item = again.market.worker.machine.work[job.id]
        assert "restarted" in [h[1] for h in item.history]
        await wait_for(lambda: job.terminal, timeout=60)
        assert job.state is JobState.COMPLETED
        assert job.reassigned == 0  # the same worker finished its own lease
        assert job_summary(job, req.blobs)["worker"] == worker_id.peer_id
        outer.cancel_scope.cancel()


async def test_a_step_job_commits_to_its_chain_and_agreeing_outputs_are_handed_out(
        tmp_path: Path) -> None:
    # Spec 06 WSM-5 and PRF-6: two workers run a checkpointed wasm job; each result commits
    # to the same chain, and the job's output is the one they agree on.
    from p2pnode.jobs.wasm_examples import example_module

    async with running_nodes(tmp_path, 3) as nodes:
        await wait_for(lambda: all(n.caps_known() == 2 for n in nodes))
        req = nodes[0]
        job = await req.market.requester.submit(
            "wasm", {"module": example_module("step_lcg"), "input": (200).to_bytes(4, "little")},
            {"checkpoint_fuel": 50_000}, Requirements(), lease_s=10, redundancy=2)
        await wait_for(lambda: job.terminal, timeout=60)
        assert job.state is JobState.COMPLETED
        accepted = [le for le in job.leases.values() if le.state is LeaseState.ACCEPTED]
        assert len(accepted) == 2 and len({le.worker for le in accepted}) == 2
        assert accepted[0].commit == accepted[1].commit and len(accepted[0].commit) == 32
        d = job_summary(job, req.blobs)
        assert d["output_checked"] == "agreement" and d["output"] == accepted[0].output.hex()
