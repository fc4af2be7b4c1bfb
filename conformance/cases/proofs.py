"""Cases for the proofs of matmul results and fraud proofs (spec/06-proofs.md).

``rows``: the row commitment of the int64 matrix blob ``matrix.cbor`` (PRF-1); yields
``root.txt`` and ``paths.json`` (each row's audit path, hex). Computed here from RFC 6962's
recursive definition, not by the reference.
``params``: ``bits``, ``rounds`` and ``soundness_bits`` for inner dimension ``k``, ``m``
columns and the job's ``verify`` map (PRF-2, PRF-4); ``random``: the entries of the random
matrix for ``seed``, ``rows``, ``cols`` and ``bits`` (PRF-2); ``seed``: the seed of PRF-3.
All three computed here from the rules' text.
``judge``: judge ``output.bin`` against the job of ``spec.cbor`` and ``input_<name>.bin``
with the committed ``root`` and the ``seed`` (PRF-5); ``wrong_row``: the row PRF-5 names
for a failing output (``row.txt``).
``fraud``: validate ``fraud.cbor`` with ``net`` and ``now_ms`` (FRD-1 to FRD-6); yields
``fraud.json`` (cheater key, job id, the bar's end).
``bar``: a requester holding the job of ``spec.cbor`` has barred ``bars`` (worker key hex,
until ms); does it lease the job to ``worker`` claiming at ``now_ms``? (FRD-7)
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from conformance.cases.common import ALICE, BOB, CAROL, NET, NOW_MS, edited
from conformance.cases.jobs import BASE_SPEC
from conformance.model import Case, Expected, Inputs, ignore, reject, valid
from p2pnode.identity import Identity
from p2pnode.jobs import tensors
from p2pnode.jobs.executors.matmul import matmul_exact_cpu
from p2pnode.jobs.messages import JobResult
from p2pnode.jobs.model import MAX_CREATED_SKEW_MS, JobSpec
from p2pnode.proofs.bars import BAR_MS
from p2pnode.proofs.fraud import KIND_MATMUL_ROW, T_FRAUD
from p2pnode.wire import cbor, envelope
from p2pnode.wire.cid import cid_of
from p2pnode.wire.reasons import Reason

# A 5 x 4 by 4 x 3 product: five rows, so the tree has an odd split (RFC 6962).
A = tensors.random_int8_matrix(5, 4, b"proofs a")
B = tensors.random_int8_matrix(4, 3, b"proofs b")
A_BLOB, B_BLOB = tensors.encode_matrix(A), tensors.encode_matrix(B)
SPEC = dataclasses.replace(BASE_SPEC, inputs=(("a", cid_of(A_BLOB)), ("b", cid_of(B_BLOB))))
SPEC_RAW = SPEC.seal(ALICE)
JOB_ID = cid_of(SPEC_RAW)
TRUE = matmul_exact_cpu(A, B)
SECRET = hashlib.sha256(b"p2pnode conformance verifier secret").digest()


# -- PRF-1, written from RFC 6962 ----------------------------------------------------------


def _row(c: np.ndarray[Any, Any], i: int) -> bytes:
    return b"".join(int(x).to_bytes(8, "little", signed=True) for x in c[i])


def _mth(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _path(leaves: list[bytes], i: int) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(m, D[n]), listed from the leaf's sibling up."""
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if i < k:
        return [*_path(leaves[:k], i), _mth(leaves[k:])]
    return [*_path(leaves[k:], i - k), _mth(leaves[:k])]


def _rows_of(c: np.ndarray[Any, Any]) -> list[bytes]:
    return [_row(c, i) for i in range(c.shape[0])]


def _root(c: np.ndarray[Any, Any]) -> bytes:
    return _mth(_rows_of(c))


def _blob(c: np.ndarray[Any, Any]) -> bytes:
    return tensors.encode_matrix(np.asarray(c, dtype=np.int64))


def rows() -> Iterator[Case]:
    for n in (1, 2, 3, 5, 7, 8):
        c = (np.arange(n * 2, dtype=np.int64) * (-1) ** np.arange(n * 2)).reshape(n, 2)
        data = _rows_of(c)
        yield Case(f"rows_{n}", Inputs({"matrix.cbor": _blob(c)}), valid({
            "root.txt": _mth(data).hex(),
            "paths.json": [[h.hex() for h in _path(data, i)] for i in range(n)]}),
            f"{n} rows of 2 int64: RFC 6962 root and audit paths", ("PRF-1",))


# -- PRF-2 to PRF-4, from the rules' text ----------------------------------------------------


def _bits_for(k: int, m: int) -> int:
    w = 0
    while w < 32 and k * m * 2**14 * (2 ** (w + 1) - 1) < 2**53:
        w += 1
    return w


def _policy(k: int, m: int, verify: dict[str, Any]) -> dict[str, int]:
    want = verify.get("bits", 40)
    want = 40 if isinstance(want, bool) or not isinstance(want, int) else max(40, min(128, want))
    bits = _bits_for(k, m)
    rounds = math.ceil(want / bits)
    return {"bits": bits, "rounds": rounds, "soundness_bits": bits * rounds}


def params() -> Iterator[Case]:
    for k, m, verify, desc in (
            (2048, 2048, {}, "matmul_max_n: 17 bits, 3 rounds"),
            (3, 2, {}, "a small product: 32-bit entries, 2 rounds"),
            (1024, 2048, {"bits": 64}, "64 bits asked for"),
            (2048, 2048, {"bits": 8}, "fewer than 40 bits asked for: 40"),
            (2048, 2048, {"bits": 1000}, "more than 128 bits asked for: 128"),
            (2048, 2048, {"bits": "many"}, "not an integer: 40")):
        yield Case(f"k{k}_m{m}_{'_'.join(f'{a}{b}' for a, b in verify.items()) or 'default'}",
                   Inputs({}, {"k": k, "m": m, "verify": verify}),
                   valid({"params.json": _policy(k, m, verify)}), desc, ("PRF-2", "PRF-4"))


def _entries(seed: bytes, n_rows: int, cols: int, bits: int) -> list[list[int]]:
    words: list[int] = []
    j = 0
    while len(words) < n_rows * cols:
        block = hashlib.sha256(b"p2pnode/freivalds/1\x00" + seed + j.to_bytes(8, "big")).digest()
        words += [int.from_bytes(block[4 * w:4 * w + 4], "big") >> (32 - bits)
                  for w in range(8)]
        j += 1
    return [words[r * cols:(r + 1) * cols] for r in range(n_rows)]


def random() -> Iterator[Case]:
    for seed, r, c, bits in ((b"\x00" * 32, 3, 3, 17), (b"seed", 5, 2, 32), (b"x", 1, 9, 1)):
        yield Case(f"r{r}x{c}_bits{bits}", Inputs({}, {"seed": seed.hex(), "rows": r,
                                                        "cols": c, "bits": bits}),
                   valid({"entries.json": _entries(seed, r, c, bits)}),
                   f"{r} x {c} entries of {bits} bits, across SHA-256 blocks", ("PRF-2",))


def _seed(secret: bytes, job: bytes, lease: int, output: bytes, root: bytes) -> bytes:
    return hashlib.sha256(b"p2pnode/verify-seed/1\x00" + secret + job + lease.to_bytes(8, "big")
                          + output + root).digest()


def seed() -> Iterator[Case]:
    out, root = cid_of(_blob(TRUE)), _root(TRUE)
    for lease in (1, 2**40):
        yield Case(f"lease_{lease}", Inputs({}, {
            "secret": SECRET.hex(), "job": JOB_ID.hex(), "lease": lease, "output": out.hex(),
            "root": root.hex()}),
            valid({"seed.txt": _seed(SECRET, JOB_ID, lease, out, root).hex()}),
            "the seed drawn after the commitment", ("PRF-3",))


# -- PRF-5 ------------------------------------------------------------------------------------


def _tampered(i: int, j: int, by: int) -> np.ndarray[Any, Any]:
    c = TRUE.copy()
    c[i, j] += by
    return c


def _judge(name: str, c: np.ndarray[Any, Any] | bytes, root: bytes, expected: Expected,
           desc: str, rules: tuple[str, ...] = ("PRF-5",), s: JobSpec = SPEC) -> Case:
    output = c if isinstance(c, bytes) else _blob(c)
    files = {"spec.cbor": s.seal(ALICE), "input_a.bin": A_BLOB, "input_b.bin": B_BLOB,
             "output.bin": output}
    sd = _seed(SECRET, JOB_ID, 1, cid_of(output), root)
    return Case(name, Inputs(files, {"root": root.hex(), "seed": sd.hex()}), expected, desc,
                rules)


def judge() -> Iterator[Case]:
    yield _judge("true_product", TRUE, _root(TRUE), valid(),
                 "the exact product, its rows committed", ("PRF-5", "PRF-2"))
    yield _judge("true_product_64_bits", TRUE, _root(TRUE), valid(),
                 "the exact product, 64 bits of soundness asked for", ("PRF-5", "PRF-4"),
                 s=dataclasses.replace(SPEC, verify=(("bits", 64),)))
    wrong = _tampered(3, 1, 1)
    yield _judge("one_entry_off", wrong, _root(wrong), reject(Reason.WRONG_RESULT),
                 "one entry off by one, committed honestly")
    zeros = np.zeros_like(TRUE)
    yield _judge("zeros", zeros, _root(zeros), reject(Reason.WRONG_RESULT),
                 "an all-zero product of the right shape")
    big = _tampered(0, 0, 2**40)
    yield _judge("beyond_the_entry_bound", big, _root(big), reject(Reason.WRONG_RESULT),
                 "an entry beyond k * 2^14: wrong before any arithmetic", ("PRF-5", "PRF-2"))
    yield _judge("rows_not_committed", wrong, _root(TRUE), reject(Reason.BAD_PROOF),
                 "a wrong product sent with the root of the true one")
    yield _judge("no_root", TRUE, b"", reject(Reason.BAD_PROOF),
                 "a result that commits to nothing", ("PRF-5", "PRF-1"))
    yield _judge("short_root", TRUE, _root(TRUE)[:31], reject(Reason.BAD_PROOF),
                 "a root of 31 bytes", ("PRF-5", "PRF-1"))
    from p2pnode.jobs.wasm_examples import example_module

    lcg, data = example_module("step_lcg"), (5).to_bytes(4, "little")
    step = dataclasses.replace(SPEC, kind="wasm", inputs=(("input", cid_of(data)),
                                                          ("module", cid_of(lcg))),
                               params=(("checkpoint_fuel", 1000), ("fuel", 10**6)))
    for name, root, expected, desc in (
            ("step_result_committed", bytes(range(32)), valid(),
             "a step job's result with a chain commitment (its output is checked by "
             "agreement and disputes, not here)"),
            ("step_result_uncommitted", b"", reject(Reason.BAD_PROOF),
             "a step job's result that commits to no chain")):
        files = {"spec.cbor": step.seal(ALICE), "input_module.bin": lcg,
                 "input_input.bin": data, "output.bin": b"\x00" * 8}
        yield Case(name, Inputs(files, {"root": root.hex(), "seed": bytes(32).hex()}),
                   expected, desc, ("WSM-5", "PRF-5"))
    yield _judge("wrong_shape_first", tensors.encode_matrix(np.zeros((5, 2), np.int64)),
                 _root(TRUE), reject(Reason.BAD_FIELD),
                 "the structural check (VER-2) comes first", ("PRF-5", "VER-2"))


def step_jobs() -> Iterator[Case]:
    """Run a step job as the wasm executor does (WSM-5): the output, and its chain."""
    from conformance.cases.jobs import _exec
    from p2pnode.jobs.wasm_examples import example_module

    lcg = example_module("step_lcg")
    data = (50).to_bytes(4, "little")
    yield _exec("step_lcg_50", "wasm", {"module": lcg, "input": data}, valid(),
                "50 steps of the example with a checkpoint every 10,000 fuel", ("WSM-5",),
                params={"fuel": 10**9, "checkpoint_fuel": 10_000})
    yield _exec("not_a_step_module", "wasm",
                {"module": _step_module("(i32.const 0)").replace(b"step", b"stap"),
                 "input": b""}, reject(Reason.BAD_FIELD),
                "a checkpointed job whose module exports no step", ("WSM-5", "WSM-2"),
                params={"checkpoint_fuel": 10})
    yield _exec("step_out_of_fuel", "wasm", {"module": lcg, "input": data},
                ignore(Reason.LIMIT_EXCEEDED), "fuel for 20 of its 50 steps",
                ("WSM-5", "EXE-8"), params={"fuel": 80_000, "checkpoint_fuel": 10_000})


def _wrong_row(name: str, c: np.ndarray[Any, Any], row: int, desc: str) -> Case:
    case = _judge(name, c, _root(c), valid({"row.txt": str(row)}), desc)
    return dataclasses.replace(case, rules=("PRF-5",))


def wrong_row() -> Iterator[Case]:
    two = _tampered(4, 2, -3)
    two[1, 0] += 5
    yield _wrong_row("lowest_of_two", two, 1, "rows 1 and 4 are wrong: row 1 is named")
    big = _tampered(2, 0, 1)
    big[3, 1] = 2**40
    yield _wrong_row("bound_first", big, 3,
                     "row 2 is off by one and row 3 beyond the bound: the bound decides")


# -- fraud proofs (FRD-1 .. FRD-6) -------------------------------------------------------------

WRONG = _tampered(3, 1, 1)
WRONG_BLOB = _blob(WRONG)
RESULT_TS = NOW_MS - 60_000


def _result(c: np.ndarray[Any, Any] | None = None, *, job: bytes = JOB_ID, ts: int = RESULT_TS,
            proof: dict[str, Any] | None = None, net: str = NET,
            signer: Identity = BOB) -> bytes:
    c = WRONG if c is None else c
    blob = _blob(c)
    return JobResult(net=net, job=job, lease=1, output=cid_of(blob), size=len(blob), ts=ts,
                     proof={"rows": _root(c)} if proof is None else proof).seal(signer)


def _fraud_body(**changes: Any) -> dict[str, Any]:
    data = _rows_of(WRONG)
    body = {"net": NET, "kind": KIND_MATMUL_ROW, "spec": SPEC_RAW, "result": _result(),
            "a": A_BLOB, "b": B_BLOB, "row": 3, "claimed": data[3],
            "path": _path(data, 3), "ts": NOW_MS}
    return edited(body, changes)


def _fraud(name: str, body: dict[str, Any], expected: Expected, desc: str,
           rules: tuple[str, ...], now_ms: int = NOW_MS) -> Case:
    data = envelope.seal(CAROL, T_FRAUD, 1, body)
    return Case(name, Inputs({"fraud.cbor": data}, {"net": NET, "now_ms": now_ms}), expected,
                desc, rules)


def fraud() -> Iterator[Case]:
    yield _fraud("valid", _fraud_body(), valid({"fraud.json": {
        "cheater": BOB.public_key.hex(), "job": JOB_ID.hex(), "until": RESULT_TS + BAR_MS}}),
        "row 3 is off by one; its path proves it was committed: the signer is barred until "
        "its result's ts + BAR_MS", ("FRD-1", "FRD-2", "FRD-3", "FRD-4", "FRD-5", "FRD-6"))
    data = _rows_of(WRONG)
    yield _fraud("honest_row", _fraud_body(row=2, claimed=data[2], path=_path(data, 2)),
                 reject(Reason.BAD_PROOF), "row 2 of the same output is right: nothing proven",
                 ("FRD-6",))
    honest = _result(TRUE)
    t = _rows_of(TRUE)
    yield _fraud("against_an_honest_worker",
                 _fraud_body(result=honest, claimed=t[3], path=_path(t, 3)),
                 reject(Reason.BAD_PROOF), "the row of an honest worker's committed product",
                 ("FRD-6",))
    yield _fraud("row_at_another_index", _fraud_body(row=2), reject(Reason.BAD_PROOF),
                 "row 3's bytes and path named as row 2", ("FRD-5",))
    bad_path = list(_path(data, 3))
    bad_path[0] = bytes(32)
    yield _fraud("path_altered", _fraud_body(path=bad_path), reject(Reason.BAD_PROOF),
                 "one hash of the path replaced", ("FRD-5",))
    yield _fraud("path_too_long", _fraud_body(path=[*_path(data, 3), bytes(32)]),
                 reject(Reason.BAD_PROOF), "one hash more than the tree has", ("FRD-5",))
    yield _fraud("row_out_of_range", _fraud_body(row=5), reject(Reason.BAD_PROOF),
                 "row 5 of a 5-row product", ("FRD-5",))
    yield _fraud("claimed_short", _fraud_body(claimed=data[3][:-8]), reject(Reason.BAD_PROOF),
                 "a row of two entries for three columns", ("FRD-5",))
    yield _fraud("inputs_swapped", _fraud_body(a=B_BLOB, b=A_BLOB),
                 reject(Reason.HASH_MISMATCH), "a and b swapped", ("FRD-4",))
    other = dataclasses.replace(SPEC, nonce=bytes(16))
    yield _fraud("result_for_another_job", _fraud_body(spec=other.seal(ALICE)),
                 reject(Reason.ID_MISMATCH), "the result names another job", ("FRD-2",))
    yield _fraud("result_without_root", _fraud_body(result=_result(proof={})),
                 reject(Reason.BAD_PROOF), "the result commits to no root", ("FRD-2",))
    wasm = dataclasses.replace(SPEC, kind="wasm")
    wasm_raw = wasm.seal(ALICE)
    yield _fraud("not_matmul", _fraud_body(spec=wasm_raw,
                                           result=_result(job=cid_of(wasm_raw))),
                 reject(Reason.BAD_PROOF), "a wasm job", ("FRD-2",))
    env = cbor.decode(_result())
    env["s"] = bytes([env["s"][0] ^ 1]) + env["s"][1:]
    yield _fraud("result_signature_broken", _fraud_body(result=cbor.encode(env)),
                 reject(Reason.BAD_SIGNATURE), "the cheater's signature does not verify",
                 ("FRD-2",))
    yield _fraud("result_from_the_future",
                 _fraud_body(result=_result(ts=NOW_MS + MAX_CREATED_SKEW_MS + 1)),
                 reject(Reason.CLOCK_SKEW), "a result ts beyond the clock skew", ("FRD-3",))
    yield _fraud("bar_over", _fraud_body(), reject(Reason.EXPIRED),
                 "received BAR_MS after the result: the bar is over, the proof sets nothing",
                 ("FRD-3",), now_ms=RESULT_TS + BAR_MS)
    yield _fraud("other_network", _fraud_body(net="testnet"), reject(Reason.WRONG_NETWORK),
                 "a proof for another network", ("FRD-1",))
    yield _fraud("unknown_kind", _fraud_body(kind="wasm.memory"), reject(Reason.UNKNOWN_TYPE),
                 "a kind v1 does not define", ("FRD-1",))
    yield _fraud("extra_key", _fraud_body(note="x"), reject(Reason.UNKNOWN_FIELD),
                 "a key FraudProof does not define", ("FRD-1",))
    yield _fraud("missing_key", _fraud_body(path=None), reject(Reason.BAD_FIELD),
                 "no path", ("FRD-1",))


# -- FRD-10 .. FRD-12: a wrong checkpoint of a step job -------------------------------------------


@dataclasses.dataclass(frozen=True)
class StepCase:
    """A step job, an honest run of it, and a cheater's (diverging after its second step)
    with its signed result: the material of ``wasm.segment`` proofs."""

    spec_raw: bytes
    module: bytes
    data: bytes
    honest: Any  # wasm_step.Chain, with states
    cheat: Any  # wasm_step.Chain
    result: bytes  # the cheater's job.result, signed by BOB
    first_wrong: int


def step_case(steps: int = 12, interval: int = 5000, fuel: int = 10**7,
              chain: Any = None, module_name: str = "step_lcg") -> StepCase:
    from p2pnode.jobs.wasm_examples import example_module
    from p2pnode.proofs import cheat, wasm_step

    module, data = example_module(module_name), steps.to_bytes(4, "little")
    spec = dataclasses.replace(
        BASE_SPEC, kind="wasm", inputs=(("input", cid_of(data)), ("module", cid_of(module))),
        params=(("checkpoint_fuel", interval), ("fuel", fuel)), redundancy=2)
    raw = spec.seal(ALICE)
    honest = wasm_step.run(module, data, fuel, interval, keep_states=True)
    bad = chain or wasm_step.run(module, data, fuel, interval, tamper=cheat.diverge)
    wrong = next((i for i, (a, b) in enumerate(zip(honest.entries, bad.entries, strict=False))
                 if a != b), 0)
    blob = bad.output
    result = JobResult(net=NET, job=cid_of(raw), lease=1, output=cid_of(blob), size=len(blob),
                       ts=RESULT_TS, proof={"chain": bad.root(),
                                            "checkpoints": len(bad.entries)}).seal(BOB)
    return StepCase(raw, module, data, honest, bad, result, wrong)


def segment_body(c: StepCase, index: int | None = None, **changes: Any) -> dict[str, Any]:
    """The ``wasm.segment`` body against ``c``'s cheater at ``index`` (its first wrong
    entry by default), with fields replaced (``None`` deletes one)."""
    from p2pnode.proofs.segment import KIND_WASM_SEGMENT

    i = c.first_wrong if index is None else index
    raw = c.cheat.raw
    body = {"net": NET, "kind": KIND_WASM_SEGMENT, "spec": c.spec_raw, "result": c.result,
            "module": c.module, "input": c.data, "index": i, "claimed": raw[i],
            "path": _path(raw, i), "prior": raw[i - 1] if i else b"",
            "prior_path": _path(raw, i - 1) if i else [],
            "state": c.honest.states[i - 1].encode() if i else b"", "ts": NOW_MS}
    return edited(body, changes)


def segment() -> Iterator[Case]:
    from p2pnode.proofs import wasm_step
    from p2pnode.proofs.bisect import Entry

    c = step_case()
    rules = ("FRD-10", "FRD-11", "FRD-12")
    yield _fraud("segment_valid", segment_body(c), valid({"fraud.json": {
        "cheater": BOB.public_key.hex(), "job": cid_of(c.spec_raw).hex(),
        "until": RESULT_TS + BAR_MS}}),
        "the cheater's entry 2 is not what the replay of one step from its entry 1 gives",
        ("FRD-1", "FRD-2", "FRD-3", *rules))
    forged = wasm_step.Chain(entries=[Entry(c.honest.entries[0].fuel, False, bytes(32)),
                                      *c.honest.entries[1:]], output=c.honest.output)
    s0 = step_case(chain=forged)
    yield _fraud("segment_at_the_start", segment_body(s0), valid({"fraud.json": {
        "cheater": BOB.public_key.hex(), "job": cid_of(s0.spec_raw).hex(),
        "until": RESULT_TS + BAR_MS}}),
        "a chain whose entry 0 is not the state after init: the replay is the start alone",
        rules)
    honest = step_case(chain=c.honest)
    i = c.first_wrong
    yield _fraud("segment_honest_entry", segment_body(c, result=honest.result,
                                                      claimed=c.honest.raw[i],
                                                      path=_path(c.honest.raw, i),
                                                      prior_path=_path(c.honest.raw, i - 1)),
                 reject(Reason.BAD_PROOF), "an honest worker's entry: the replay agrees",
                 ("FRD-12",))
    yield _fraud("segment_state_not_the_prior", segment_body(
        c, state=c.honest.states[i].encode()), reject(Reason.BAD_PROOF),
        "the state of entry 2 named as entry 1's", ("FRD-11",))
    yield _fraud("segment_state_garbled", segment_body(c, state=b"\xa0"),
                 reject(Reason.BAD_PROOF), "a state blob that is not a state", ("FRD-11",))
    bad_path = list(_path(c.cheat.raw, i))
    bad_path[0] = bytes(32)
    yield _fraud("segment_path_altered", segment_body(c, path=bad_path),
                 reject(Reason.BAD_PROOF), "one hash of the claimed entry's path replaced",
                 ("FRD-11",))
    yield _fraud("segment_no_prior", segment_body(c, prior=b"", prior_path=[]),
                 reject(Reason.BAD_PROOF), "entry 2 without entry 1", ("FRD-11",))
    yield _fraud("segment_index_out_of_range", {**segment_body(c), "index": len(c.cheat.raw)},
                 reject(Reason.BAD_PROOF), "an index past the chain's end", ("FRD-11",))
    from p2pnode.jobs.wasm_examples import example_module

    yield _fraud("segment_module_not_the_jobs", segment_body(c, module=example_module("sum")),
                 reject(Reason.HASH_MISMATCH), "another module than the job names", ("FRD-10",))
    plain = dataclasses.replace(SPEC, kind="wasm")
    plain_raw = plain.seal(ALICE)
    yield _fraud("segment_not_a_step_job", segment_body(
        c, spec=plain_raw, result=_result(job=cid_of(plain_raw), proof={
            "chain": c.cheat.root(), "checkpoints": len(c.cheat.raw)})),
        reject(Reason.BAD_PROOF), "a wasm job without checkpoint_fuel", ("FRD-10",))
    yield _fraud("segment_result_without_chain", segment_body(
        c, result=_result(job=cid_of(c.spec_raw), proof={})), reject(Reason.BAD_PROOF),
        "the result commits to no chain", ("FRD-2",))
    # One segment of 3,000 steps (about 20 M fuel): more than a node replays for a proof.
    long = step_case(steps=3000, interval=1 << 40, fuel=10**9)
    yield _fraud("segment_too_long", segment_body(long), reject(Reason.LIMIT_EXCEEDED),
                 "a segment beyond MAX_SEGMENT_FUEL is not checked", ("FRD-12",))


# -- FRD-7 --------------------------------------------------------------------------------------


def bar() -> Iterator[Case]:
    w = BOB.public_key.hex()
    for name, bars, at, expected, desc in (
            ("barred_worker", [[w, NOW_MS + 1]], NOW_MS, ignore(Reason.BARRED),
             "a claim before the bar ends"),
            ("bar_over", [[w, NOW_MS]], NOW_MS, valid(), "a claim when the bar ends"),
            ("another_worker_barred", [[CAROL.public_key.hex(), NOW_MS + BAR_MS]], NOW_MS,
             valid(), "only the cheater is barred")):
        yield Case(name, Inputs({"spec.cbor": SPEC_RAW},
                                {"bars": bars, "worker": w, "now_ms": at}), expected, desc,
                   ("FRD-7",))


# -- step modules (WSM-1 .. WSM-4) and the bisection game (DSP-1, DSP-2) ------------------------

STEP_SHELL = """(module (memory (export "memory") 1)
  (global $g (export "g") (mut i32) (i32.const 0))
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "init") (param i32 i32))
  (func (export "step") (result i32) %s)
  (func (export "output") (result i64) (i64.const 8)))"""


def _step_module(body: str) -> bytes:
    from p2pnode.jobs.executors.wasm import compile_wat

    return compile_wat(STEP_SHELL % body)


def wasm_subset() -> Iterator[Case]:
    from p2pnode.jobs.executors.wasm import compile_wat
    from p2pnode.jobs.wasm_examples import example_module

    yield Case("step_lcg", Inputs({"module.bin": example_module("step_lcg")}),
               valid({"globals.json": ["left", "steps", "x"]}),
               "the shipped example: three exported mutable globals", ("WSM-1",))
    for name, src, desc in (
            ("imports", '(module (import "env" "f" (func)) (memory (export "memory") 1))',
             "an import"),
            ("hidden_global", '(module (memory (export "memory") 1) '
             '(global (mut i32) (i32.const 0)))', "a mutable global not exported"),
            ("float_global", '(module (memory (export "memory") 1) '
             '(global (export "f") (mut f64) (f64.const 0)))', "a mutable f64 global"),
            ("table_set", '(module (memory (export "memory") 1) (table 1 funcref) '
             '(func (table.set 0 (i32.const 0) (ref.null func))))', "table.set"),
            ("simd", '(module (memory (export "memory") 1) '
             '(func (drop (v128.const i64x2 0 0))))', "a SIMD instruction")):
        yield Case(name, Inputs({"module.bin": compile_wat(src)}), reject(Reason.BAD_FIELD),
                   desc, ("WSM-1",))
    yield Case("not_wasm", Inputs({"module.bin": b"\x00asm\x02\x00\x00\x00"}),
               reject(Reason.BAD_FIELD), "not a version 1 binary module", ("WSM-1",))


# (name, step body, fuel of init, fuel of each step until it returns 0, description)
FUEL_CASES: tuple[tuple[str, str, list[int], str], ...] = (
    ("constant", "(i32.const 0)", [2], "one step: entry 1, i32.const 1"),
    ("markers", "nop (block (nop)) (loop (nop)) (i32.const 0)", [2],
     "nop, block, loop and end cost nothing"),
    ("drop", "(drop (i32.const 7)) (i32.const 0)", [3], "drop costs nothing"),
    ("grow", "(drop (memory.grow (i32.const 2))) (i32.const 0)", [6],
     "memory.grow costs 1 and the 2 pages it adds"),
    ("grow_fails", "(drop (memory.grow (i32.const 100000))) (i32.const 0)", [4],
     "a memory.grow that fails costs 1"),
    ("three_steps", "(global.set $g (i32.add (global.get $g) (i32.const 1))) "
     "(i32.lt_u (global.get $g) (i32.const 3))", [8, 8, 8],
     "a global counted to 3: global.get, i32.const, i32.add, global.set, global.get, "
     "i32.const, i32.lt_u and the entry, 8 a step"),
    ("call", "(call $inc) (i32.const 0)) (func $inc (global.set $g (i32.const 1))", [6],
     "a call costs 1 and the callee's invocation 1"),
)


def wasm_fuel() -> Iterator[Case]:
    for name, body, fuel, desc in FUEL_CASES:
        yield Case(name, Inputs({"module.bin": _step_module(body)}),
                   valid({"fuel.json": {"init": 3, "steps": fuel}}),
                   desc + "; before the steps, alloc costs 2 (its invocation and a "
                   "constant) and init 1 (its invocation)", ("WSM-4", "WSM-2"))


# The executor's ABI (EXE-6) around a body that runs in run(); alloc costs 2, run's own
# invocation 1 and its result (i64.const) 1: 4 besides the body.
EXE_SHELL = """(module (memory (export "memory") 1) (table 4 funcref) (data $d "abcdefghij")
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "run") (param i32 i32) (result i64) %s (i64.const 0)))"""


def exe_fuel() -> Iterator[Case]:
    from p2pnode.jobs.executors.wasm import compile_wat

    for name, body, fuel, desc in (
            ("fill_1000", "(memory.fill (i32.const 0) (i32.const 7) (i32.const 1000))",
             4 + 3 + 1 + 1000, "memory.fill of 1000 bytes: 1 + 1000"),
            ("copy_0", "(memory.copy (i32.const 0) (i32.const 8) (i32.const 0))", 4 + 3 + 1,
             "memory.copy of nothing: 1"),
            ("init_10", "(memory.init $d (i32.const 0) (i32.const 0) (i32.const 10))",
             4 + 3 + 11, "memory.init of 10 bytes: 1 + 10"),
            ("table_grow_3", "(drop (table.grow (ref.null func) (i32.const 3)))", 4 + 2 + 4,
             "table.grow by 3 elements: 1 + 3; ref.null 1"),
            ("simd", "(drop (i32x4.add (v128.const i32x4 1 2 3 4) (v128.const i32x4 5 6 7 8)))",
             4 + 3, "SIMD instructions cost 1 each")):
        yield Case(name, Inputs({"module.bin": compile_wat(EXE_SHELL % body), "input.bin": b""}),
                   valid({"fuel.json": {"fuel": fuel}}), desc, ("EXE-7",))


def wasm_chain() -> Iterator[Case]:
    from p2pnode.jobs.wasm_examples import example_module

    for steps, interval in ((5, 1), (40, 20_000), (40, 1 << 40)):
        yield Case(f"lcg_{steps}_steps_every_{interval}", Inputs(
            {"module.bin": example_module("step_lcg"), "input.bin":
             steps.to_bytes(4, "little")}, {"interval": interval}), valid(),
            f"{steps} steps of the example, a checkpoint every {interval} fuel",
            ("WSM-3", "WSM-2"))


def _chain_entries(n: int, salt: bytes = b"") -> list[str]:
    from p2pnode.proofs.bisect import Entry

    return [Entry(100 * (i + 1), i == n - 1,
                  hashlib.sha256(b"state %d" % i + salt).digest()).encode().hex()
            for i in range(n)]


def bisect() -> Iterator[Case]:
    honest = _chain_entries(100)
    cheat = honest[:37] + _chain_entries(100, b"x")[37:]
    for name, a, b, lie, desc in (
            ("diverges_at_37", honest, cheat, None,
             "the cheater's chain differs from entry 37 on: 7 questions, segment 36-37"),
            ("diverges_at_start", honest, _chain_entries(100, b"x"), None,
             "every entry differs: the segment is the run's start to entry 0"),
            ("cheater_first", cheat, honest, None, "the same, the cheater as party 0"),
            ("bad_path", honest, cheat, 3, "party 1 answers the fourth question with "
             "bytes that do not verify: it loses at once"),
            ("same_final_state", honest, list(honest), None,
             "equal final entries: nothing to settle"),
            ("shorter_chain", honest, [*honest[:49], honest[49][:16] + "01" + honest[49][18:]],
             None,
             "party 1 claims the run ended at entry 49")):
        yield Case(name, Inputs({"chain_a.json": a, "chain_b.json": b},
                                {"lie_at": lie, "truth": honest}), valid(), desc,
                   ("DSP-1", "DSP-2"))


# -- receipts (RCP-2) --------------------------------------------------------------------------


def receipt() -> Iterator[Case]:
    from p2pnode.proofs.receipts import T_RECEIPT, Receipt

    base = Receipt(net=NET, job=JOB_ID, lease=1, worker=BOB.public_key,
                   output=cid_of(_blob(TRUE)), price=900, verified="freivalds", ts=NOW_MS)
    yield Case("valid", Inputs({"receipt.cbor": base.seal(ALICE)}, {"net": NET}), valid({
        "receipt.json": {"requester": ALICE.public_key.hex(), "job": JOB_ID.hex(),
                         "worker": BOB.public_key.hex(), "lease": 1, "price": 900,
                         "verified": "freivalds"}}),
        "the requester's receipt for lease 1", ("RCP-2",))
    for name, r, signer, expected, desc in (
            ("other_network", dataclasses.replace(base, net="testnet"), ALICE,
             reject(Reason.WRONG_NETWORK), "a receipt for another network"),
            ("unknown_check", dataclasses.replace(base, verified="trust"), ALICE,
             reject(Reason.BAD_FIELD), "verified by nothing this chapter defines"),
            ("self_paid", dataclasses.replace(base, worker=ALICE.public_key), ALICE,
             reject(Reason.SIGNER_MISMATCH), "a requester paying itself")):
        yield Case(name, Inputs({"receipt.cbor": r.seal(signer)}, {"net": NET}), expected,
                   desc, ("RCP-2",))
    body = {**base.to_body(), "bonus": 1}
    yield Case("extra_key", Inputs({"receipt.cbor": envelope.seal(ALICE, T_RECEIPT, 1, body)},
                                   {"net": NET}), reject(Reason.UNKNOWN_FIELD),
               "a key the receipt does not define", ("RCP-2",))
    env = cbor.decode(base.seal(ALICE))
    env["s"] = bytes([env["s"][0] ^ 1]) + env["s"][1:]
    yield Case("forged", Inputs({"receipt.cbor": cbor.encode(env)}, {"net": NET}),
               reject(Reason.BAD_SIGNATURE), "a signature that does not verify", ("RCP-2",))


def job_output() -> Iterator[Case]:
    x, y = cid_of(b"x").hex(), cid_of(b"y").hex()
    for name, kind, r, outs, out, how, desc in (
            ("matmul", "matmul", 2, [x, y], x, "freivalds", "every matmul output was proven"),
            ("wasm_single", "wasm", 1, [x], x, "structural", "one wasm result"),
            ("wasm_agree", "wasm", 2, [x, x], x, "agreement", "two equal wasm results"),
            ("wasm_disagree", "wasm", 2, [y, x], None, "disagreement",
             "two different wasm results: no output, not the first one"),
            ("wasm_pending", "wasm", 3, [x, x], None, "pending", "two of three results"),
            ("nothing", "wasm", 1, [], None, "none", "no accepted result")):
        yield Case(name, Inputs({}, {"kind": kind, "redundancy": r, "accepted": outs}),
                   valid({"output.json": {"output": out, "checked": how}}), desc, ("PRF-6",))


# -- capability challenges (CHL-1, CHL-2, CHL-4 .. CHL-6) ----------------------------------------


def attestation() -> Iterator[Case]:
    from p2pnode.proofs.challenge import ATTEST_TTL_MS, T_ATTEST, Attestation

    base = Attestation(net=NET, subject=BOB.public_key, seq=7, ok=True, n=256, ms=850,
                       ts=NOW_MS - 1000)
    yield Case("valid", Inputs({"attest.cbor": base.seal(CAROL)}, {"net": NET,
                                                                   "now_ms": NOW_MS}),
               valid({"attest.json": {"challenger": CAROL.public_key.hex(),
                                      "subject": BOB.public_key.hex(), "ok": True, "seq": 7}}),
               "Carol saw Bob's ad 7 compute a 256 product in 850 ms", ("CHL-4",))
    for name, a, signer, now, expected, desc in (
            ("self", dataclasses.replace(base, subject=CAROL.public_key), CAROL, NOW_MS,
             reject(Reason.SIGNER_MISMATCH), "a node attesting itself"),
            ("other_network", dataclasses.replace(base, net="testnet"), CAROL, NOW_MS,
             reject(Reason.WRONG_NETWORK), "another network"),
            ("future", dataclasses.replace(base, ts=NOW_MS + MAX_CREATED_SKEW_MS + 1), CAROL,
             NOW_MS, reject(Reason.CLOCK_SKEW), "a ts beyond the clock skew"),
            ("expired", base, CAROL, base.ts + ATTEST_TTL_MS, reject(Reason.EXPIRED),
             "received ATTEST_TTL_MS after its ts")):
        yield Case(name, Inputs({"attest.cbor": a.seal(signer)}, {"net": NET, "now_ms": now}),
                   expected, desc, ("CHL-4",))
    body = {**base.to_body(), "score": 1}
    yield Case("extra_key", Inputs({"attest.cbor": envelope.seal(CAROL, T_ATTEST, 1, body)},
                                   {"net": NET, "now_ms": NOW_MS}),
               reject(Reason.UNKNOWN_FIELD), "a key Attestation does not define", ("CHL-4",))


def attest_table() -> Iterator[Case]:
    """Attestations fed in order (challenger label, subject label, ok, ts); then the status
    each subject has for ``me`` and the counts of all."""
    t0 = NOW_MS - 10_000
    for name, feed, desc in (
            ("own_word_decides", [["carol", "bob", True, t0], ["alice", "bob", False, t0 + 1]],
             "Carol (me) attested Bob; Alice says he failed: Bob stays attested for Carol"),
            ("stranger_failure_ignored", [["alice", "bob", False, t0]],
             "only a stranger's failure: Bob is never (not failed) for Carol"),
            ("newest_of_a_challenger", [["carol", "bob", False, t0 + 5],
                                        ["carol", "bob", True, t0]],
             "an older attestation from Carol does not replace her newer failure"),
            ("own_failure", [["carol", "bob", True, t0], ["carol", "bob", False, t0 + 1]],
             "Carol's newer failure replaces her success")):
        yield Case(name, Inputs({"feed.json": feed}, {"me": "carol", "now_ms": NOW_MS}),
                   valid(), desc, ("CHL-5", "CHL-4"))


def challenge_size() -> Iterator[Case]:
    for cores, gpus, n in ((2, 0, 256), (8, 0, 512), (31, 0, 512), (32, 0, 1024), (4, 1, 2048)):
        yield Case(f"cores{cores}_gpus{gpus}", Inputs({}, {"cores": cores, "gpus": gpus}),
                   valid({"size.json": {"n": n}}),
                   f"an ad claiming {cores} cores and {gpus} GPUs", ("CHL-2",))


def challenge_claim() -> Iterator[Case]:
    w = BOB.public_key.hex()
    target = dataclasses.replace(SPEC, verify=(("target", BOB.public_key),))
    for name, s, worker, expected, desc in (
            ("target_claims", target, w, valid(), "the challenged worker claims"),
            ("other_claims", target, CAROL.public_key.hex(),
             ignore(Reason.REQUIREMENTS_UNMET), "another worker claims Bob's challenge"),
            ("ordinary_job", SPEC, CAROL.public_key.hex(), valid(),
             "a job without a target is anyone's")):
        yield Case(name, Inputs({"spec.cbor": s.seal(ALICE)},
                                {"bars": [], "worker": worker, "now_ms": NOW_MS}),
                   expected, desc, ("CHL-1",))


def offer_order() -> Iterator[Case]:
    yield Case("attested_first", Inputs({"spec.cbor": SPEC_RAW}, {
        "candidates": [["failed", "f"], ["never", "n"], ["attested", "a"]], "now_ms": NOW_MS}),
        valid({"order.json": ["a", "n", "f"]}),
        "three qualified workers holding no lease: attested, never, failed", ("CHL-6",))


HANDLERS: dict[str, Callable[[], Iterator[Case]]] = {
    "rows": rows,
    "params": params,
    "random": random,
    "seed": seed,
    "judge": judge,
    "wrong_row": wrong_row,
    "fraud": fraud,
    "segment": segment,
    "bar": bar,
    "wasm_subset": wasm_subset,
    "wasm_fuel": wasm_fuel,
    "wasm_chain": wasm_chain,
    "step_jobs": step_jobs,
    "exe_fuel": exe_fuel,
    "bisect": bisect,
    "receipt": receipt,
    "job_output": job_output,
    "attestation": attestation,
    "attest_table": attest_table,
    "challenge_size": challenge_size,
    "challenge_claim": challenge_claim,
    "offer_order": offer_order,
}
