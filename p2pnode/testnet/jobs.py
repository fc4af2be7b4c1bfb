"""The jobs of a testnet run: submitted over the run through the requesters' admin APIs
and followed to a final state."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from p2pnode.api.client import ApiError, call
from p2pnode.testnet.model import NodeProc, TestnetOptions

# With cheaters, every STEP_EVERY-th job, from the first on, is a step job (spec 06
# WSM-5) of the step_lcg example run by two workers, so that a diverging segment meets an
# honest chain (when two honest workers can agree on one).
STEP_EVERY = 4
STEP_STEPS = 400
STEP_PARAMS = {"checkpoint_fuel": 20_000}
STEP_FUEL = 10**9


class JobDriver:
    """Submits the testnet's jobs over the run and follows them to a final state."""

    def __init__(self, opts: TestnetOptions, nodes: list[NodeProc]) -> None:
        self.opts = opts
        self.step_input: Path | None = None
        # Two honest workers besides the (first) requester can agree on a step job.
        if opts.cheaters and nodes and opts.n - opts.cheaters - 1 >= 2:
            self.step_input = nodes[0].home.parent / "step_input.bin"
            self.step_input.write_bytes(STEP_STEPS.to_bytes(4, "little"))
        self.requesters = nodes[: max(1, min(opts.requesters, len(nodes)))]
        span = (opts.duration or 60.0) * 0.3
        self.gap = span / opts.jobs if opts.jobs else 0.0
        self.submitted: dict[str, int] = {}  # job id -> requester index
        self.submit_errors = 0
        self.next_at: float | None = None
        self.final: dict[str, dict[str, Any]] = {}
        self.state_counts: dict[str, int] = {}
        self.reassigned = 0
        self.audited: dict[str, Any] = {}

    def start(self) -> None:
        if self.next_at is None:
            self.next_at = time.monotonic()

    def step(self) -> None:
        if self.next_at is None:
            return
        while (len(self.submitted) + self.submit_errors < self.opts.jobs
               and time.monotonic() >= self.next_at):
            i = (len(self.submitted) + self.submit_errors) % len(self.requesters)
            node = self.requesters[i]
            args = {"kind": self.opts.job_kind, "n": self.opts.job_n, "lease_s": 8,
                    "deadline_s": max(60, int(self.opts.duration or 600))}
            if self.opts.job_kind == "wasm":
                args = {"kind": "wasm", "module": "example:sum", "lease_s": 8,
                        "deadline_s": max(60, int(self.opts.duration or 600))}
            k = len(self.submitted) + self.submit_errors
            if self.step_input is not None and k % STEP_EVERY == 0:
                args = {"kind": "wasm", "module": "example:step_lcg", "lease_s": 8,
                        "input": str(self.step_input), "params": STEP_PARAMS,
                        "fuel": STEP_FUEL, "redundancy": 2,
                        "deadline_s": max(60, int(self.opts.duration or 600))}
            try:
                for j in call(node.home, "job.submit", args, timeout=30.0):
                    self.submitted[j["id"]] = node.index
            except (ApiError, OSError, ValueError):
                self.submit_errors += 1
            self.next_at += self.gap
        self.poll()

    def poll(self) -> None:
        counts: dict[str, int] = {}
        reassigned = 0
        for node in self.requesters:
            try:
                res = call(node.home, "job.list", timeout=10.0)
            except (ApiError, OSError, ValueError):
                continue
            for j in res["jobs"]:
                if j["id"] not in self.submitted:
                    continue
                counts[j["state"]] = counts.get(j["state"], 0) + 1
                reassigned += j["reassigned"]
                if j["state"] in ("completed", "failed"):
                    self.final[j["id"]] = j
        self.state_counts = counts
        self.reassigned = reassigned

    @property
    def done(self) -> bool:
        completed = sum(1 for j in self.final.values() if j["state"] == "completed")
        return completed == len(self.submitted) == self.opts.jobs

    def audit(self) -> None:
        """Judge every accepted output independently of the nodes: recompute each matmul
        product from the requester's input blobs and compare (``wrong_accepted`` must be 0),
        and count verdicts by reason. Runs while the nodes still serve their API."""
        verified = wrong = checked = 0
        rejected: dict[str, int] = {}
        truth = self._step_truth()
        for job_id, j in self.final.items():
            node = next(n for n in self.requesters if n.index == self.submitted[job_id])
            try:
                d = call(node.home, "job.show", {"id": job_id}, timeout=10.0)
            except (ApiError, OSError, ValueError):
                continue
            for le in d["leases"]:
                if le["state"] == "rejected":
                    rejected[le["reason"]] = rejected.get(le["reason"], 0) + 1
                if le["state"] != "accepted" or le["output"] is None:
                    continue
                verified += 1
                if j["kind"] == "matmul":
                    checked += 1
                    wrong += not _is_product(node.home, d["spec"]["inputs"], le["output"])
                elif truth is not None and "checkpoint_fuel" in d["spec"].get("params", {}):
                    checked += 1
                    wrong += _blob(node.home, le["output"]) != truth
        self.audited = {"verified": verified, "wrong_accepted": wrong,
                        "outputs_rechecked": checked, "rejected_by_reason": rejected}

    def _step_truth(self) -> bytes | None:
        """The output of the testnet's step job, computed here (None without step jobs)."""
        if self.step_input is None:
            return None
        from p2pnode.jobs.wasm_examples import example_module
        from p2pnode.proofs.wasm_step import run

        return run(example_module("step_lcg"), self.step_input.read_bytes(), STEP_FUEL,
                   STEP_PARAMS["checkpoint_fuel"]).output

    def report(self) -> dict[str, Any]:
        lat = sorted(j["latency_ms"] for j in self.final.values()
                     if j["state"] == "completed" and j["latency_ms"] is not None)

        def pct(p: float) -> int | None:
            if not lat:
                return None
            return int(lat[min(len(lat) - 1, round(p * (len(lat) - 1)))])

        return {
            "submitted": len(self.submitted),
            "completed": sum(1 for j in self.final.values() if j["state"] == "completed"),
            "failed": sum(1 for j in self.final.values() if j["state"] == "failed")
            + self.submit_errors,
            "reassigned": self.reassigned,
            "p50_ms": pct(0.5),
            "p99_ms": pct(0.99),
            "states": self.state_counts,
            **self.audited,
        }


def _blob(home: Path, cid_hex: str) -> bytes | None:
    try:
        return (home / "blobs" / cid_hex[4:6] / cid_hex).read_bytes()
    except OSError:
        return None


def _is_product(home: Path, inputs: dict[str, str], output_hex: str) -> bool:
    """Whether the blob ``output_hex`` in ``home``'s store is exactly a @ b."""
    import numpy as np

    from p2pnode.jobs.tensors import decode_matrix

    def blob(cid_hex: str) -> bytes:
        return (home / "blobs" / cid_hex[4:6] / cid_hex).read_bytes()

    try:
        a = decode_matrix(blob(inputs["a"]), 1 << 26).astype(np.int64)
        b = decode_matrix(blob(inputs["b"]), 1 << 26).astype(np.int64)
        c = decode_matrix(blob(output_hex), 1 << 26)
    except (OSError, KeyError, ValueError):
        return False  # an accepted output we cannot even read back counts as wrong
    return bool(c.shape == (a.shape[0], b.shape[1]) and np.array_equal(c, a @ b))
