"""The requester's side of spec 06 DSP-6: step results of a job run by two or more workers
are held for another worker's, compared, and settled by a dispute when they disagree.

:class:`StepDisputes` keeps each such result (its signed bytes, chain commitment and time),
waits for a peer's result, runs the referee of :mod:`p2pnode.services.disputes` once per
pair of leases (both leases' checks wait on the same game), and publishes a
``wasm.segment`` fraud proof against each loser of a replay.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from p2pnode.blobs.store import BlobStore
from p2pnode.identity import Identity
from p2pnode.jobs.market import Lease, LeaseState, RequesterJob
from p2pnode.jobs.model import JobSpec, SignedJob
from p2pnode.jobs.requester import CheckOutput
from p2pnode.log import event
from p2pnode.ports import Transport
from p2pnode.proofs.bisect import Claim, Entry, committed_chain
from p2pnode.services.clock import LocalClock
from p2pnode.services.disputes import Party, Verdict, referee
from p2pnode.wire.envelope import open_envelope
from p2pnode.wire.reasons import Reason

if TYPE_CHECKING:
    from p2pnode.proofs.wasm_step import State

log = logging.getLogger("p2pnode.requester")

# DSP-6: how long a step result waits for another worker's before it is judged alone.
HOLD_MS = 60_000
MAX_HELD = 4096  # signed step results kept (at most 2 KiB each, JOB-1)

ReportFraud = Callable[[bytes, bytes, bytes, int], Awaitable[None]]  # proof, cheater, job, ts


def disputed(spec: JobSpec) -> bool:
    """DSP-6: a step job (WSM-5) run by two or more workers, whose chains are compared."""
    return spec.kind == "wasm" and spec.param("checkpoint_fuel") is not None and \
        spec.redundancy >= 2


@dataclass(frozen=True, slots=True)
class Held:
    """A step result kept until its job ends: a loser's fraud proof quotes it."""

    raw: bytes
    claim: Claim | None
    ts: int


@dataclass(frozen=True, slots=True)
class Settled:
    lost: frozenset[int]  # lease numbers
    replayed: bool  # lost on a replay (wrong_result), not by its answers (bad_proof)


class StepDisputes:
    def __init__(self, *, identity: Identity, net: str, transport: Transport,
                 clock: LocalClock, blobs: BlobStore, max_blob_bytes: int,
                 jobs: Callable[[], dict[bytes, RequesterJob]],
                 changed: Callable[[bytes], trio.Event],
                 report: Callable[[], ReportFraud | None],
                 count: Callable[[str, str], None]) -> None:
        self.identity = identity
        self.net = net
        self.transport = transport
        self.clock = clock
        self.blobs = blobs
        self.max_blob_bytes = max_blob_bytes
        self.jobs = jobs
        self.changed = changed
        self.report = report
        self.count = count
        self._held: dict[tuple[bytes, int], Held] = {}
        self._running: dict[tuple[bytes, frozenset[int]], trio.Event] = {}
        self._settled: dict[tuple[bytes, frozenset[int]], Settled | None] = {}
        self.disputes = 0
        self.too_large = 0  # fraud proofs that would not fit MAX_FRAUD_SIZE

    def keep(self, job_id: bytes, number: int, raw: bytes) -> None:
        if (job_id, number) in self._held or len(self._held) >= MAX_HELD:
            return
        body = open_envelope(raw).body
        self._held[(job_id, number)] = Held(raw, committed_chain(body.get("proof", {})),
                                            int(body["ts"]))

    def forget(self, job_id: bytes) -> None:
        for key in [k for k in self._held if k[0] == job_id]:
            del self._held[key]
        for pair in [k for k in self._settled if k[0] == job_id]:
            del self._settled[pair]

    def _claim(self, job_id: bytes, number: int) -> Claim | None:
        held = self._held.get((job_id, number))
        return held.claim if held is not None else None

    def _peer_of(self, c: CheckOutput) -> Lease | None:
        """Another worker's result for the job to hold ours against."""
        job = self.jobs().get(c.job)
        if job is None:
            return None
        for le in sorted(job.leases.values(), key=lambda x: x.number):
            if le.number != c.lease and le.worker != c.worker and le.output is not None \
                    and le.state in (LeaseState.VERIFYING, LeaseState.ACCEPTED) \
                    and self._claim(c.job, le.number) is not None:
                return le
        return None

    async def judge(self, c: CheckOutput) -> tuple[bool, str]:
        """DSP-6 for a step result that passed VER-2 and WSM-5: held until another
        worker's result is in (at most HOLD_MS); the same output and chain are accepted, a
        disagreement is settled by a dispute whose losers are rejected (DSP-5)."""
        hold_until = min(c.by, self.clock.now_ms() + HOLD_MS)
        peer = self._peer_of(c)
        while peer is None and self.clock.now_ms() < hold_until:
            with trio.move_on_at(self.clock.trio_deadline(hold_until)):
                await self.changed(c.job).wait()
            peer = self._peer_of(c)
        mine = self._claim(c.job, c.lease)
        if peer is None or mine is None:
            return True, ""  # alone in time: accepted for its structure (PRF-6 says so)
        if peer.output == c.output and self._claim(c.job, peer.number) == mine:
            return True, ""
        key = (c.job, frozenset({c.lease, peer.number}))
        if key not in self._settled:
            running = self._running.get(key)
            if running is None:
                self._running[key] = trio.Event()
                try:
                    self._settled[key] = await self._dispute(c, peer)
                finally:
                    self._running.pop(key).set()
            else:
                await running.wait()
        settled = self._settled.get(key)
        if settled is None or c.lease not in settled.lost:
            return True, ""
        return False, (Reason.WRONG_RESULT if settled.replayed else Reason.BAD_PROOF).value

    async def _dispute(self, c: CheckOutput, peer: Lease) -> Settled | None:
        from p2pnode.proofs import wasm_subset

        job = self.jobs()[c.job]
        inputs = dict(job.spec.inputs)
        module, data = self.blobs.get(inputs["module"]), self.blobs.get(inputs["input"])
        mine, theirs = self._claim(c.job, c.lease), self._claim(c.job, peer.number)
        if module is None or data is None or mine is None or theirs is None:
            return None
        names = tuple(wasm_subset.check(module).mutable_globals)
        parties = (Party(c.worker, c.lease, mine), Party(peer.worker, peer.number, theirs))
        self.disputes += 1
        self.count("requester", "dispute")
        event(log, "dispute.started", job=c.job.hex(), leases=[c.lease, peer.number])

        async def replay(start: State | None) -> Entry | None:
            return await trio.to_thread.run_sync(_replay, job.spec, module, data, start)

        verdict = await referee(transport=self.transport, identity=self.identity,
                                net=self.net, sj=SignedJob.open(job.raw), parties=parties,
                                names=names, blobs=self.blobs,
                                max_blob_bytes=self.max_blob_bytes,
                                wall_ms=self.clock.wall_ms, replay=replay)
        event(log, "dispute.settled", job=c.job.hex(), losers=sorted(verdict.losers),
              why=verdict.why, rounds=verdict.rounds)
        report = self.report()
        if verdict.index is not None and report is not None:
            for p in sorted(verdict.losers):
                proof = self._segment_proof(job, parties[p], p, verdict, module, data)
                if proof is not None:
                    held = self._held[(c.job, parties[p].lease)]
                    await report(proof, parties[p].worker, c.job, held.ts)
        return Settled(frozenset(parties[p].lease for p in verdict.losers),
                       verdict.index is not None)

    def _segment_proof(self, job: RequesterJob, party: Party, p: int, verdict: Verdict,
                       module: bytes, data: bytes) -> bytes | None:
        """DSP-5: the ``wasm.segment`` proof against party ``p``, from its own answers."""
        from p2pnode.proofs import fraud, segment

        i = verdict.index
        assert i is not None
        claimed = verdict.answers.get((p, i))
        prior = verdict.answers.get((p, i - 1)) if i > 0 else None
        held = self._held.get((job.id, party.lease))
        if claimed is None or held is None or (i > 0 and prior is None):
            return None
        proof = segment.build(self.identity, self.net, job.raw, held.raw, module, data, i,
                              claimed, prior, verdict.state, self.clock.wall_ms(),
                              fraud.MAX_FRAUD_SIZE)
        if proof is None:
            self.too_large += 1
        return proof


def _replay(spec: JobSpec, module: bytes, data: bytes, start: State | None) -> Entry | None:
    """The referee's replay of a segment (DSP-2), in a worker thread, with no cap but the
    job's fuel: its entry, or None when the run cannot reach one."""
    from p2pnode.proofs import segment

    return segment.replay(module, spec.param("fuel", 1 << 62), data,
                          spec.param("checkpoint_fuel"), start, budget=1 << 62)

