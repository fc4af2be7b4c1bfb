"""Two workers whose step results disagree, among real nodes: the requester referees a
bisection game over ``/job/1``, rejects the cheater, publishes the segment's fraud proof,
and the job completes only once two workers agree (spec 06 DSP-6)."""

from __future__ import annotations

from pathlib import Path

import trio

from p2pnode.jobs.market import JobState, LeaseState
from p2pnode.jobs.model import Requirements
from p2pnode.jobs.wasm_examples import example_module
from p2pnode.node import Node
from p2pnode.proofs.receipts import job_output
from p2pnode.proofs.wasm_step import run
from p2pnode.wire.reasons import Reason
from tests.integration.helpers import start_node, wait_for

STEPS = 300
PARAMS = {"fuel": 10**9, "checkpoint_fuel": 20_000}


async def test_a_diverging_segment_loses_its_dispute(tmp_path: Path) -> None:
    # Node 0 requests (and runs no wasm); node 1 is honest; node 2 alters its memory after
    # the second step of every step job and commits to the chain that follows.
    configs = [{"caps_kinds": ("matmul",)}, {"jobs_discovery_interval_s": 0.5},
               {"jobs_cheat": ("segment",), "jobs_discovery_interval_s": 0.5},
               {"jobs_discovery_interval_s": 0.5}]
    module, data = example_module("step_lcg"), STEPS.to_bytes(4, "little")
    truth = run(module, data, PARAMS["fuel"], PARAMS["checkpoint_fuel"]).output
    async with trio.open_nursery() as nursery:
        nodes: list[Node] = []
        for kw in configs[:3]:
            await start_node(nursery, tmp_path, nodes, **kw)
        req, honest, cheater = nodes
        await wait_for(lambda: all(n.caps_known() == 2 for n in nodes))
        requester = req.market.requester
        job = await requester.submit("wasm", {"module": module, "input": data}, PARAMS,
                                     Requirements(), lease_s=10, redundancy=2)

        def settled() -> bool:
            return any(le.worker == cheater.identity.public_key
                       and le.state is LeaseState.REJECTED for le in job.leases.values())

        await wait_for(settled, timeout=60)
        lost = next(le for le in job.leases.values()
                    if le.worker == cheater.identity.public_key)
        assert lost.reason == Reason.WRONG_RESULT.value
        kept = next(le for le in job.leases.values() if le.worker == honest.identity.public_key)
        # The winner's acceptance follows its receipt's fsync (RCP-1): a moment later.
        await wait_for(lambda: kept.state is LeaseState.ACCEPTED, timeout=20)
        assert requester.steps.disputes == 1
        # The segment's fraud proof: published by the requester, checked and taken by the
        # honest worker, which bars the cheater too.
        await wait_for(lambda: honest.fraud is not None and honest.fraud.taken == 1)
        assert req.fraud is not None and req.fraud.published == 1
        assert honest.market.requester.machine.bars.barred(
            cheater.identity.public_key, honest.market.requester.clock.now_ms())
        # Until a second worker agrees, the job hands out nothing (PRF-6).
        assert job.state is not JobState.COMPLETED
        await start_node(nursery, tmp_path, nodes, **configs[3])
        await wait_for(lambda: job.state is JobState.COMPLETED, timeout=60)
        accepted = [le.output for le in job.accepted_leases()]
        out, how = job_output("wasm", 2, [o for o in accepted if o is not None])
        assert how == "agreement" and out is not None
        assert requester.blobs.get(out) == truth
        nursery.cancel_scope.cancel()
