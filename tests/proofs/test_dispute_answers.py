"""A worker's answers to a dispute's referee (spec 06 DSP-4): from its chain, with paths
that verify, a state that hashes to its entry, and only for the job's requester, within
bounds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import trio

from conformance.cases.common import ALICE, BOB, CAROL, NET, NOW_MS
from conformance.cases.proofs import step_case
from p2pnode.blobs.store import BlobStore
from p2pnode.jobs.executors.base import Limits
from p2pnode.jobs.messages import JobEntry, JobProbe, JobRefuse, decode
from p2pnode.jobs.model import SignedJob
from p2pnode.proofs import rows
from p2pnode.proofs.bisect import Claim, Entry
from p2pnode.proofs.wasm_step import State
from p2pnode.services.disputes import MAX_PROBES, MAX_STATES, ChainAnswers
from p2pnode.wire.reasons import Reason

CASE = step_case()
SJ = SignedJob.open(CASE.spec_raw)
CLAIM = Claim(CASE.honest.root(), len(CASE.honest.entries))


def _answers(tmp_path: Path) -> ChainAnswers:
    blobs = BlobStore(tmp_path / "blobs", tmp_path / "blobs.db")
    blobs.put(CASE.module)
    blobs.put(CASE.data)
    return ChainAnswers(identity=BOB, net=NET, blobs=blobs, limits=Limits(),
                        wall_ms=lambda: NOW_MS, tamper=lambda sj: None)


def _probe(index: int, state: bool = False, lease: int = 1) -> JobProbe:
    return JobProbe(net=NET, job=SJ.id, lease=lease, index=index, state=state, ts=NOW_MS)


async def _ask(a: ChainAnswers, probe: JobProbe, signer: bytes = ALICE.public_key,
               sj: SignedJob | None = SJ) -> JobEntry | JobRefuse:
    reply = decode(await a.answer(probe, signer, sj, 1, CLAIM), net=NET)
    assert reply.signer == BOB.public_key
    assert isinstance(reply.msg, JobEntry | JobRefuse)
    return reply.msg


def test_the_requester_gets_entries_and_a_state(tmp_path: Path) -> None:
    async def main() -> None:
        a = _answers(tmp_path)
        for i in (0, 3, CLAIM.count - 1):
            got = await _ask(a, _probe(i))
            assert isinstance(got, JobEntry) and got.entry == CASE.honest.raw[i]
            assert rows.verify_path(rows.leaf_hash(got.entry), i, CLAIM.count, got.path,
                                    CLAIM.root)
        got = await _ask(a, _probe(4, state=True))
        assert isinstance(got, JobEntry)
        blob = a.blobs.get(got.state)
        assert blob is not None
        s = State.decode(blob, tuple(n for n, _ in CASE.honest.states[4].globals))
        entry = Entry.decode(got.entry)
        assert entry is not None
        assert dataclasses.replace(s, fuel=entry.fuel).digest() == entry.digest
    trio.run(main)


def test_refusals_and_bounds(tmp_path: Path) -> None:
    async def main() -> None:
        a = _answers(tmp_path)

        async def reason(probe: JobProbe, **kw: object) -> str:
            got = await _ask(a, probe, **kw)  # type: ignore[arg-type]
            assert isinstance(got, JobRefuse)
            return got.reason

        assert await reason(_probe(0), signer=CAROL.public_key) == \
            Reason.SIGNER_MISMATCH.value
        assert await reason(_probe(0), sj=None) == Reason.UNKNOWN_JOB.value
        assert await reason(_probe(0, lease=2)) == Reason.NOT_LEASEHOLDER.value
        assert await reason(_probe(CLAIM.count)) == Reason.BAD_FIELD.value
        for _ in range(MAX_STATES):
            assert isinstance(await _ask(a, _probe(1, state=True)), JobEntry)
        assert await reason(_probe(1, state=True)) == Reason.LIMIT_EXCEEDED.value
        for _ in range(MAX_PROBES - MAX_STATES):
            assert isinstance(await _ask(a, _probe(2)), JobEntry)
        assert await reason(_probe(2)) == Reason.LIMIT_EXCEEDED.value
        assert a.answered == MAX_PROBES
    trio.run(main)
