"""The reference's answers for the proofs vectors (spec/06-proofs.md); see cases/proofs.py."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

from conformance.model import Outcome
from p2pnode.jobs.market import RequesterJob
from p2pnode.jobs.matching import Capacity
from p2pnode.jobs.model import SignedJob
from p2pnode.jobs.requester import Requester
from p2pnode.jobs.tensors import decode_matrix
from p2pnode.jobs.verify import MAX_CHECK_ELEMENTS, judge_output
from p2pnode.proofs import fraud, freivalds, matmul, rows
from p2pnode.wire.reasons import Reason, WireError

Files = Mapping[str, Any]
Params = Mapping[str, Any]


def _rows(f: Files, p: Params) -> Outcome:
    c = decode_matrix(f["matrix.cbor"], MAX_CHECK_ELEMENTS, dtype="int64")
    leaves = matmul.leaves(c)
    return Outcome("valid", outputs={
        "root.txt": rows.root_of_leaves(leaves).hex(),
        "paths.json": [[h.hex() for h in rows.path(leaves, i)] for i in range(len(leaves))]})


def _params(f: Files, p: Params) -> Outcome:
    bits = freivalds.bits_for(p["k"], p["m"])
    rounds = freivalds.rounds_for(bits, matmul.soundness_bits(dict(p["verify"])))
    return Outcome("valid", outputs={"params.json": {
        "bits": bits, "rounds": rounds, "soundness_bits": bits * rounds}})


def _random(f: Files, p: Params) -> Outcome:
    r = freivalds.random_matrix(bytes.fromhex(p["seed"]), p["rows"], p["cols"], p["bits"])
    return Outcome("valid", outputs={"entries.json": [[int(x) for x in row] for row in r]})


def _seed(f: Files, p: Params) -> Outcome:
    s = matmul.draw_seed(bytes.fromhex(p["secret"]), bytes.fromhex(p["job"]), p["lease"],
                         bytes.fromhex(p["output"]), bytes.fromhex(p["root"]))
    return Outcome("valid", outputs={"seed.txt": s.hex()})


def _judged(f: Files, p: Params) -> tuple[Reason | None, int | None]:
    sj = SignedJob.open(f["spec.cbor"])
    given = {name[len("input_"):-len(".bin")]: data for name, data in f.items()
             if name.startswith("input_") and name.endswith(".bin")}
    inputs: dict[str, bytes | None] = {name: given.get(name) for name, _ in sj.spec.inputs}
    out = judge_output(sj.spec, inputs, f["output.bin"], bytes.fromhex(p["root"]),
                       bytes.fromhex(p["seed"]))
    return out.reason, out.row


def _judge(f: Files, p: Params) -> Outcome:
    reason, _ = _judged(f, p)
    return Outcome("valid") if reason is None else Outcome("reject", reason.value)


def _wrong_row(f: Files, p: Params) -> Outcome:
    reason, row = _judged(f, p)
    if reason is not Reason.WRONG_RESULT or row is None:
        return Outcome("reject", (reason or Reason.BAD_FIELD).value)
    return Outcome("valid", outputs={"row.txt": str(row)})


def _fraud(f: Files, p: Params) -> Outcome:
    try:
        fr = fraud.check(f["fraud.cbor"], net=p["net"], now_ms=p["now_ms"])
    except WireError as e:
        return Outcome("reject", e.reason.value)
    return Outcome("valid", outputs={"fraud.json": {
        "cheater": fr.cheater.hex(), "job": fr.job.hex(), "until": fr.until}})


def _requester_holding(f: Files) -> tuple[SignedJob, Requester, Capacity]:
    """A requester holding the job of ``spec.cbor`` since its creation, and a capacity that
    qualifies for it."""
    sj = SignedJob.open(f["spec.cbor"])
    req = Requester(sj.spec.net, rng=random.Random(0))
    req.add(RequesterJob.new(sj.id, sj.spec, sj.raw, sj.spec.created), sj.spec.created)
    able = Capacity(kinds=frozenset({sj.spec.kind}), cores=64, mem=1 << 40, gpus=0, gpu_mem=0,
                    prices={sj.spec.kind: 0})
    return sj, req, able


def _bar(f: Files, p: Params) -> Outcome:
    sj, req, able = _requester_holding(f)
    for worker, until in p["bars"]:
        req.bar(bytes.fromhex(worker), sj.id, until, sj.spec.created)
    d, _ = req.on_claim(sj.id, bytes.fromhex(p["worker"]), 0, p["now_ms"], able)
    reason = getattr(d, "reason", None)
    if reason is None:
        return Outcome("valid")
    ignored = (Reason.BARRED, Reason.REQUIREMENTS_UNMET)
    return Outcome("ignore" if reason in ignored else "reject", reason.value)


def _wasm_subset(f: Files, p: Params) -> Outcome:
    from p2pnode.proofs import wasm_subset

    try:
        sub = wasm_subset.check(f["module.bin"])
    except WireError as e:
        return Outcome("reject", e.reason.value)
    return Outcome("valid", outputs={"globals.json": list(sub.mutable_globals)})


def _wasm_fuel(f: Files, p: Params) -> Outcome:
    """The fuel used by alloc and init together, then by each step (at most 1000)."""
    from p2pnode.proofs import wasm_step

    r = wasm_step.StepRun(f["module.bin"], 1 << 40)
    init = last = r.start(b"").fuel
    steps = []
    while not r.done and len(steps) < 1000:
        r.step()
        steps.append(r.fuel - last)
        last = r.fuel
    return Outcome("valid", outputs={"fuel.json": {"init": init, "steps": steps}})


def _exe_fuel(f: Files, p: Params) -> Outcome:
    from p2pnode.jobs.executors import get_executor
    from p2pnode.jobs.executors.base import Limits

    res = get_executor("wasm", device="cpu").run(
        {"module": f["module.bin"], "input": f["input.bin"]}, {}, Limits())
    return Outcome("valid", outputs={"fuel.json": {"fuel": res.meta["fuel_used"]}})


def _step_job(f: Files, p: Params) -> Outcome:
    """As jobs/execute, and the chain's commitment in ``chain.json``."""
    from conformance.jsonform import from_json
    from conformance.reference_jobs import execute
    from p2pnode.jobs.executors import get_executor
    from p2pnode.jobs.executors.base import ExecError, Limits

    out = execute(f, p)
    if out.result != "valid":
        return out
    try:
        res = get_executor("wasm", device="cpu").run(
            {"module": f["input_module.bin"], "input": f["input_input.bin"]},
            from_json(p["params"]), Limits())
    except ExecError as e:
        return Outcome("reject", e.reason.value)
    return Outcome("valid", outputs={**out.outputs, "chain.json": {
        "root": res.meta["chain_root"], "checkpoints": res.meta["checkpoints"]}})


def _wasm_chain(f: Files, p: Params) -> Outcome:
    from p2pnode.proofs import wasm_step

    chain = wasm_step.run(f["module.bin"], f["input.bin"], 1 << 40, p["interval"])
    return Outcome("valid", outputs={"chain.json": {
        "entries": [e.hex() for e in chain.raw], "root": chain.root().hex(),
        "output": chain.output.hex()}})


def _bisect(f: Files, p: Params) -> Outcome:
    from p2pnode.proofs import bisect

    chains = [[bytes.fromhex(x) for x in f[n]] for n in ("chain_a.json", "chain_b.json")]
    leaves = [[rows.leaf_hash(x) for x in c] for c in chains]
    claims = [bisect.Claim(rows.root_of_leaves(lv), len(lv)) for lv in leaves]
    game = bisect.Bisection(claims[0], claims[1])
    asked: list[int] = []
    step = game.start()
    while isinstance(step, bisect.Ask):
        i = step.index
        asked.append(i)
        answers = [bisect.Answer(c[i], tuple(rows.path(lv, i)))
                   for c, lv in zip(chains, leaves, strict=True)]
        if p.get("lie_at") == len(asked) - 1:
            answers[1] = bisect.Answer(bytes(41), ())
        step = game.answer(answers[0], answers[1])
    segment = None
    if isinstance(step, bisect.Segment):
        segment = {"start": step.start}
        truth = bisect.Entry.decode(bytes.fromhex(p["truth"][step.start + 1]))
        assert truth is not None
        step = bisect.settle(step, truth)
    return Outcome("valid", outputs={"steps.json": {
        "asked": asked, "segment": segment, "losers": sorted(step.losers)}})


def _receipt(f: Files, p: Params) -> Outcome:
    from p2pnode.proofs.receipts import open_receipt

    try:
        sr = open_receipt(f["receipt.cbor"], net=p["net"])
    except WireError as e:
        return Outcome("reject", e.reason.value)
    r = sr.receipt
    return Outcome("valid", outputs={"receipt.json": {
        "requester": sr.requester.hex(), "job": r.job.hex(), "worker": r.worker.hex(),
        "lease": r.lease, "price": r.price, "verified": r.verified}})


def _job_output(f: Files, p: Params) -> Outcome:
    from p2pnode.proofs.receipts import job_output

    out, how = job_output(p["kind"], p["redundancy"], [bytes.fromhex(x) for x in p["accepted"]])
    return Outcome("valid", outputs={"output.json": {"output": out.hex() if out else None,
                                                     "checked": how}})


def _attestation(f: Files, p: Params) -> Outcome:
    from p2pnode.proofs.challenge import open_attestation

    try:
        s = open_attestation(f["attest.cbor"], net=p["net"], now_ms=p["now_ms"])
    except WireError as e:
        return Outcome("reject", e.reason.value)
    a = s.attestation
    return Outcome("valid", outputs={"attest.json": {
        "challenger": s.challenger.hex(), "subject": a.subject.hex(), "ok": a.ok, "seq": a.seq}})


def _key(label: str) -> bytes:
    from conformance.cases.common import key

    return key(label).public_key


def _attest_table(f: Files, p: Params) -> Outcome:
    from p2pnode.proofs.challenge import Attestation, AttestTable, Signed

    t = AttestTable()
    for challenger, subject, ok, ts in f["feed.json"]:
        a = Attestation(net="devnet", subject=_key(subject), seq=1, ok=ok, n=256, ms=1, ts=ts)
        t.add(Signed(a, _key(challenger), b""))
    subjects = sorted({row[1] for row in f["feed.json"]})
    me = _key(p["me"])
    return Outcome("valid", outputs={"status.json": {
        s: {"status": t.status(_key(s), p["now_ms"], me),
            "counts": list(t.counts(_key(s), p["now_ms"]))} for s in subjects}})


def _challenge_size(f: Files, p: Params) -> Outcome:
    from p2pnode.proofs.challenge import challenge_n

    return Outcome("valid", outputs={"size.json": {"n": challenge_n(p["cores"], p["gpus"])}})


def _offer_order(f: Files, p: Params) -> Outcome:
    from p2pnode.jobs.requester import Candidate
    from p2pnode.proofs.challenge import offer_rank

    sj, req, able = _requester_holding(f)
    table = [Candidate(label, _key(label), able, offer_rank(status))
             for status, label in p["candidates"]]
    return Outcome("valid", outputs={"order.json": req.candidates(req.jobs[sj.id], table,
                                                                  p["now_ms"])})


HANDLERS: dict[str, Callable[[Files, Params], Outcome]] = {
    "proofs/rows": _rows,
    "proofs/params": _params,
    "proofs/random": _random,
    "proofs/seed": _seed,
    "proofs/judge": _judge,
    "proofs/wrong_row": _wrong_row,
    "proofs/fraud": _fraud,
    "proofs/segment": _fraud,
    "proofs/bar": _bar,
    "proofs/wasm_subset": _wasm_subset,
    "proofs/wasm_fuel": _wasm_fuel,
    "proofs/wasm_chain": _wasm_chain,
    "proofs/step_jobs": _step_job,
    "proofs/exe_fuel": _exe_fuel,
    "proofs/bisect": _bisect,
    "proofs/receipt": _receipt,
    "proofs/job_output": _job_output,
    "proofs/attestation": _attestation,
    "proofs/attest_table": _attest_table,
    "proofs/challenge_size": _challenge_size,
    "proofs/challenge_claim": _bar,
    "proofs/offer_order": _offer_order,
}
