"""Both sides of a dispute on ``/job/1`` (spec 06 DSP-3 .. DSP-6).

The worker's side, :class:`ChainAnswers`, answers a referee's ``job.probe`` for a step
job it ran: the entry of its chain at an index with the audit path, and on request the
state at that entry as a blob. It keeps the chains it was asked about (bounded), re-runs
the module to rebuild one (and once more for a state), never for anyone but the job's
requester, and at most ``MAX_PROBES`` answers and ``MAX_STATES`` states per lease.

The referee's side, :func:`referee`, plays :class:`p2pnode.proofs.bisect.Bisection`
against two workers: it asks both parties each question at once, fetches the agreed state
for the final segment and replays it, and returns the outcome with what a fraud proof
against a loser needs.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from p2pnode.blobs.store import BlobStore
from p2pnode.identity import Identity, peer_id_str
from p2pnode.jobs.executors.base import Limits
from p2pnode.jobs.messages import JobEntry, JobProbe, JobRefuse, decode
from p2pnode.jobs.model import T_ENTRY, T_REFUSE, SignedJob
from p2pnode.log import event
from p2pnode.ports import Transport, TransportError
from p2pnode.proofs import bisect, rows
from p2pnode.proofs.segment import Opened
from p2pnode.wire.cid import cid_of
from p2pnode.wire.reasons import Reason, WireError

if TYPE_CHECKING:
    from p2pnode.proofs.wasm_step import State, Tamper

log = logging.getLogger("p2pnode.disputes")

# DSP-4: what one lease may ask of its worker: the questions of a dispute over the longest
# chain (bisect.max_rounds(MAX_CHECKPOINTS) = 17), twice over, and two states.
MAX_PROBES = 40
MAX_STATES = 2
MAX_CHAINS = 16  # chains kept for answering (41 bytes an entry, at most 2.7 MB each)
# DSP-5: how long the referee waits for one answer: a worker may first have to re-run its
# job to rebuild its chain.
PROBE_TIMEOUT_S = 60.0
STATE_TIMEOUT_S = 60.0


@dataclass
class _Held:
    entries: list[bytes] | None = None
    leaves: list[bytes] = field(default_factory=list)
    probes: int = 0
    states: int = 0


class ChainAnswers:
    """DSP-4: the worker's answers to a referee's probes, bounded per lease."""

    def __init__(self, *, identity: Identity, net: str, blobs: BlobStore, limits: Limits,
                 wall_ms: Callable[[], int], tamper: Callable[[SignedJob], Tamper | None]):
        self.identity = identity
        self.net = net
        self.blobs = blobs
        self.limits = limits
        self.wall_ms = wall_ms
        self.tamper = tamper
        self._held: OrderedDict[tuple[bytes, int], _Held] = OrderedDict()
        self._runs = trio.CapacityLimiter(1)  # one re-run at a time: a bounded thread
        self.answered = 0
        self.refused = 0

    def _refuse(self, job: bytes, reason: Reason, detail: str = "") -> bytes:
        self.refused += 1
        return JobRefuse.make(self.net, job, reason, detail, self.wall_ms()).seal(self.identity)

    def _inputs(self, sj: SignedJob) -> tuple[bytes, bytes]:
        got = {name: self.blobs.get(c) for name, c in sj.spec.inputs}
        module, data = got.get("module"), got.get("input")
        if module is None or data is None:
            raise WireError(Reason.NOT_FOUND, "the job's inputs are gone")
        return module, data

    def _run(self, sj: SignedJob, state_at: int | None) -> tuple[list[bytes], bytes]:
        from p2pnode.proofs import wasm_step

        module, data = self._inputs(sj)
        fuel = sj.spec.param("fuel", self.limits.wasm_fuel)
        chain = wasm_step.run(module, data, fuel, sj.spec.param("checkpoint_fuel"),
                              tamper=self.tamper(sj), memory_bytes=self.limits.wasm_memory_bytes,
                              state_at=state_at)
        return chain.raw, chain.states[0].encode() if state_at is not None else b""

    def remember(self, job: bytes, lease: int, entries: list[bytes]) -> None:
        """A chain this node computed anyway (a cheater's, say): no re-run to answer."""
        self._slot(job, lease).entries = entries

    def _slot(self, job: bytes, lease: int) -> _Held:
        key = (job, lease)
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = _Held()
            while len(self._held) > MAX_CHAINS:
                self._held.popitem(last=False)
        self._held.move_to_end(key)
        return held

    async def answer(self, probe: JobProbe, signer: bytes, sj: SignedJob | None, lease: int,
                     committed: bisect.Claim | None) -> bytes:
        """The reply to ``probe`` from ``signer``, for the work ``sj`` held under ``lease``
        whose result committed to ``committed``."""
        if sj is None:
            return self._refuse(probe.job, Reason.UNKNOWN_JOB)
        if signer != sj.requester:
            return self._refuse(probe.job, Reason.SIGNER_MISMATCH, "not the job's requester")
        if probe.lease != lease or committed is None:
            return self._refuse(probe.job, Reason.NOT_LEASEHOLDER, f"lease {probe.lease}")
        if probe.index >= committed.count:
            return self._refuse(probe.job, Reason.BAD_FIELD, f"no entry {probe.index}")
        held = self._slot(probe.job, lease)
        if held.probes >= MAX_PROBES or (probe.state and held.states >= MAX_STATES):
            return self._refuse(probe.job, Reason.LIMIT_EXCEEDED, "enough questions")
        held.probes += 1
        state_cid = b""
        try:
            if held.entries is None:
                entries, _ = await trio.to_thread.run_sync(self._run, sj, None,
                                                           limiter=self._runs)
                held.entries = entries
            if probe.state:
                held.states += 1
                _, state = await trio.to_thread.run_sync(self._run, sj, probe.index,
                                                         limiter=self._runs)
                self.blobs.pin(("dispute", probe.job), [cid_of(state)])
                state_cid = await trio.to_thread.run_sync(self.blobs.put, state)
        except WireError as e:
            return self._refuse(probe.job, e.reason, e.detail)
        if not held.leaves:
            held.leaves = [rows.leaf_hash(x) for x in held.entries]
        if len(held.entries) != committed.count:
            return self._refuse(probe.job, Reason.BAD_STATE, "the chain no longer re-runs")
        self.answered += 1
        return JobEntry(net=self.net, job=probe.job, lease=lease, index=probe.index,
                        entry=held.entries[probe.index],
                        path=tuple(rows.path(held.leaves, probe.index)), state=state_cid,
                        ts=self.wall_ms()).seal(self.identity)


# -- the referee ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Party:
    worker: bytes  # Ed25519 key
    lease: int
    claim: bisect.Claim


@dataclass
class Verdict:
    """How a dispute ended: the losing parties (0, 1), why, the questions asked, and for a
    replayed segment what a ``wasm.segment`` proof against a loser quotes."""

    losers: frozenset[int]
    why: str
    rounds: int
    index: int | None = None  # the segment's end, when one was replayed
    answers: dict[tuple[int, int], Opened] = field(default_factory=dict)  # (party, index)
    state: bytes = b""  # the agreed state's blob (empty for the run's start)


Replay = Callable[["State | None"], Awaitable[bisect.Entry | None]]


async def referee(*, transport: Transport, identity: Identity, net: str, sj: SignedJob,
                  parties: tuple[Party, Party], names: tuple[str, ...], blobs: BlobStore,
                  max_blob_bytes: int, wall_ms: Callable[[], int],
                  replay: Replay) -> Verdict:
    """DSP-1, DSP-2 over ``/job/1`` (DSP-3, DSP-5): the game between ``parties``, for a
    module whose exported mutable globals are ``names``. ``replay(start)`` re-executes the
    segment from the agreed state (None: the run's start) and gives its entry, None when
    no such entry exists."""
    game = bisect.Bisection(parties[0].claim, parties[1].claim)
    answers: dict[tuple[int, int], Opened] = {}

    async def ask(p: int, index: int, state: bool) -> JobEntry | None:
        party = parties[p]
        probe = JobProbe(net=net, job=sj.id, lease=party.lease, index=index, state=state,
                         ts=wall_ms()).seal(identity)
        try:
            ex = await transport.open_job(peer_id_str(party.worker))
            try:
                await ex.send(probe)
                data = await ex.receive(STATE_TIMEOUT_S if state else PROBE_TIMEOUT_S)
            finally:
                await ex.close()
            reply = decode(data, net=net, expected={T_ENTRY, T_REFUSE})
        except (WireError, trio.TooSlowError, TransportError) as e:
            event(log, "dispute.no_answer", logging.INFO, job=sj.id.hex(), lease=party.lease,
                  index=index, error=str(e))
            return None
        msg = reply.msg
        if reply.signer != party.worker or not isinstance(msg, JobEntry) or \
                msg.job != sj.id or msg.lease != party.lease or msg.index != index:
            return None
        return msg

    async def both(index: int) -> tuple[bisect.Answer | None, bisect.Answer | None]:
        got: list[JobEntry | None] = [None, None]

        async def one(p: int) -> None:
            got[p] = await ask(p, index, False)

        async with trio.open_nursery() as n:
            n.start_soon(one, 0)
            n.start_soon(one, 1)
        out: list[bisect.Answer | None] = []
        for p, e in enumerate(got):
            if e is None:
                out.append(None)
                continue
            answers[(p, index)] = Opened(e.entry, e.path)
            out.append(bisect.Answer(e.entry, e.path))
        return out[0], out[1]

    step = game.start()
    while isinstance(step, bisect.Ask):
        step = game.answer(*await both(step.index))
    if isinstance(step, bisect.Lost):
        return Verdict(step.losers, step.why, game.rounds)
    seg = step
    blob, start = b"", None
    if seg.agreed is not None:  # DSP-2: the agreed state, from either party
        got = await _agreed_state(ask, seg, blobs, transport, parties, max_blob_bytes,
                                  names)
        if got is None:
            return Verdict(frozenset({0, 1}), "neither party gave the agreed state",
                           game.rounds)
        blob, start = got
    replayed = await replay(start)
    outcome = bisect.settle(seg, replayed) if replayed is not None else \
        bisect.Lost(frozenset({0, 1}), "no such entry")
    return Verdict(outcome.losers, outcome.why, game.rounds, seg.start + 1, answers, blob)


async def _agreed_state(ask: Callable[[int, int, bool], Awaitable[JobEntry | None]],
                        seg: bisect.Segment, blobs: BlobStore, transport: Transport,
                        parties: tuple[Party, Party], max_blob_bytes: int,
                        names: tuple[str, ...]) -> tuple[bytes, State] | None:
    """The state at the segment's start whose digest is the agreed one (WSM-3), as its blob
    and decoded with the agreed fuel, from the first party that gives it; None when
    neither does."""
    from p2pnode.proofs.wasm_step import State

    assert seg.agreed is not None
    for p in (0, 1):
        e = await ask(p, seg.start, True)
        if e is None or not e.state:
            continue
        try:
            await transport.fetch_blob(peer_id_str(parties[p].worker), e.state, blobs,
                                       max_size=max_blob_bytes, timeout=STATE_TIMEOUT_S)
        except (WireError, trio.TooSlowError, TransportError):
            continue
        data = blobs.get(e.state)
        if data is None:
            continue
        try:
            s = State.decode(data, names)
        except WireError:
            continue
        s = State(seg.agreed.fuel, False, s.globals, s.memory)
        if s.digest() == seg.agreed.digest:
            return data, s
    return None

