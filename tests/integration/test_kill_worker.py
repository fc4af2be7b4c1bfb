"""kill -9 a worker process mid-job in a real multi-process testnet: the lease expires,
the job is reassigned to another worker and completes (spec 04 §4, JOB-T1)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from p2pnode.api.client import call
from p2pnode.testnet import launcher
from p2pnode.testnet.launcher import NodeProc
from tests.integration.helpers import LOOP_WAT
from tests.polling import poll


def _show(node: NodeProc, job: str) -> dict[str, Any]:
    return dict(call(node.home, "job.show", {"id": job}, timeout=10))


def prepare(tmp_path: Path, n: int, network: str) -> list[NodeProc]:
    """Node homes for a loop job: workers get plenty of fuel; node 0 only requests."""
    opts = launcher.TestnetOptions(n=n, directory=tmp_path, network=network,
                                   caps_interval=5.0)
    nodes = launcher.prepare_nodes(opts, tmp_path)
    for i, node in enumerate(nodes):
        cfg = (node.home / "config.toml").read_text()
        cfg = cfg.replace("wasm_fuel = 10000000000", "wasm_fuel = 1000000000000")
        if i == 0:
            cfg = cfg.replace('kinds = ["matmul", "wasm"]', "kinds = []")
        (node.home / "config.toml").write_text(cfg)
    return nodes


@pytest.mark.slow
def test_kill_9_worker_mid_job_is_reassigned_and_completes(tmp_path: Path) -> None:
    nodes = prepare(tmp_path, 3, "killtest")
    wat = tmp_path / "loop.wat"
    wat.write_text(LOOP_WAT)
    (tmp_path / "input.bin").write_bytes((3_000_000).to_bytes(4, "little"))
    try:
        launcher.start_network(nodes)
        launcher.wait_caps_converged(nodes, 30)
        job = call(nodes[0].home, "job.submit", {
            "kind": "wasm", "module": str(wat), "input": str(tmp_path / "input.bin"),
            "lease_s": 3, "deadline_s": 120})[0]["id"]

        def running_worker() -> str | None:
            d = _show(nodes[0], job)
            live = [le for le in d["leases"] if le["state"] == "active" and le["heartbeats"]]
            return live[0]["worker"] if live else None

        victim_id = poll(running_worker, 30, "a worker to report progress")
        victim = next(n for n in nodes if n.peer_id == victim_id)
        assert victim.proc is not None
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait()
        final = poll(lambda: (lambda d: d if d["state"] in ("completed", "failed")
                               else None)(_show(nodes[0], job)), 90, "the job to finish")
        assert final["state"] == "completed", json.dumps(final["history"])
        events = [h["event"] for h in final["history"]]
        assert "lease_expired" in events and "reassigned" in events
        assert final["reassigned"] >= 1
        assert final["worker"] != victim_id
        survivor = next(n for n in nodes[1:] if n is not victim)
        assert final["worker"] == survivor.peer_id
    finally:
        launcher.stop_nodes(nodes)


@pytest.mark.slow
def test_kill_9_requester_restarts_with_its_jobs_and_completes_them(tmp_path: Path) -> None:
    nodes = prepare(tmp_path, 2, "killreq")
    req, worker = nodes
    (tmp_path / "loop.wat").write_text(LOOP_WAT)
    (tmp_path / "input.bin").write_bytes((2_000_000).to_bytes(4, "little"))
    try:
        launcher.start_network(nodes)
        launcher.wait_caps_converged(nodes, 30)
        jobs = call(req.home, "job.submit", {
            "kind": "wasm", "module": str(tmp_path / "loop.wat"), "count": 2,
            "input": str(tmp_path / "input.bin"), "lease_s": 10, "deadline_s": 120})
        ids = [j["id"] for j in jobs]
        # The submit was acknowledged: kill the requester at once, before anything finished.
        assert req.proc is not None
        os.kill(req.proc.pid, signal.SIGKILL)
        req.proc.wait()
        (req.home / "api.json").unlink(missing_ok=True)
        launcher._start(req, None)
        launcher._wait_started(req)
        listed = {j["id"]: j for j in call(req.home, "job.list")["jobs"]}
        assert set(ids) <= set(listed)
        for jid in ids:
            final = poll(lambda j=jid: (lambda d: d if d["state"] in ("completed", "failed")
                                         else None)(_show(req, j)), 90, "the job to finish")
            assert final["state"] == "completed", json.dumps(final["history"])
            assert final["worker"] == worker.peer_id
    finally:
        launcher.stop_nodes(nodes)


def test_kill_9_requester_keeps_a_receipt_for_every_accepted_result(tmp_path: Path) -> None:
    # RCP-1: whatever moment the requester dies at, every result its worker was told was
    # accepted has a receipt in the requester's store when it comes back.
    nodes = prepare(tmp_path, 2, "killrcpt")
    req, worker = nodes
    try:
        launcher.start_network(nodes)
        launcher.wait_caps_converged(nodes, 30)
        jobs = call(req.home, "job.submit", {"kind": "matmul", "n": 48, "count": 12,
                                             "lease_s": 10, "deadline_s": 120})
        ids = {j["id"] for j in jobs}

        def accepted_by_worker() -> set[str]:
            work = call(worker.home, "job.list", timeout=10)["work"]
            return {w["id"] for w in work if w["state"] == "accepted"} & ids

        poll(lambda: len(accepted_by_worker()) >= 3 or None, 60, "three accepted results")
        assert req.proc is not None
        os.kill(req.proc.pid, signal.SIGKILL)
        req.proc.wait()
        told = accepted_by_worker()  # the verdicts that had left before the kill
        (req.home / "api.json").unlink(missing_ok=True)
        launcher._start(req, None)
        launcher._wait_started(req)
        for jid in told:
            receipts = _show(req, jid)["receipts"]
            assert len(receipts) == 1, jid
        assert call(req.home, "status")["receipts"] >= len(told)
    finally:
        launcher.stop_nodes(nodes)
