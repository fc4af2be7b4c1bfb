"""The committed vectors are exactly what the cases generate, and the reference passes them."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import cbor2
import pytest

from conformance import generate, runner
from conformance.cases import all_cases
from conformance.jsonform import from_json
from conformance.model import Case, Inputs, reject, valid
from conformance.reference import handle
from p2pnode.identity import peer_id_str
from p2pnode.wire.reasons import Reason

VECTORS = runner.DEFAULT_VECTORS


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def vectors() -> list[runner.Vector]:
    return list(runner.load(VECTORS))


@pytest.fixture
def vector_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "vectors"
    shutil.copytree(VECTORS, dst)
    return dst


def test_committed_vectors_are_what_the_generator_writes(tmp_path: Path) -> None:
    out = tmp_path / "vectors"
    n = generate.write(out)
    fresh, committed = _tree(out), _tree(VECTORS)
    assert n == len(list(all_cases()))
    missing, extra = sorted(fresh.keys() - committed.keys()), sorted(committed.keys() - fresh)
    assert not missing and not extra, (
        f"run `python -m conformance.generate`: missing {missing[:5]}, stale {extra[:5]}")
    changed = [p for p in fresh if fresh[p] != committed[p]]
    assert not changed, f"run `python -m conformance.generate`: changed {changed[:5]}"


def test_generation_is_deterministic() -> None:
    assert generate.build() == generate.build()


def test_reference_passes_every_vector(vectors: list[runner.Vector]) -> None:
    report = runner.run(iter(vectors), handle)
    assert report.failures == []
    assert (report.passed, report.failed, report.skipped) == (len(vectors), 0, 0)
    assert len(vectors) > 300
    handlers = {v.handler for v in vectors}
    assert handlers == {
        "encoding/cbor", "encoding/cbor_encode", "encoding/frames", "identity/peer_id",
        "identity/peer_id_decode", "envelope/open", "envelope/seal", "caps/validate",
        "caps/table", "caps/rate_limit", "caps/sync",
        "jobs/spec", "jobs/message", "jobs/dht_record",
        "jobs/discovery_keys", "jobs/provider_lookup", "jobs/requester", "jobs/worker",
        "jobs/verify", "jobs/execute",
        "jobs/market", "jobs/work", "jobs/fetch", "jobs/dispatch",
        "tensors/matrix", "tensors/random_matrix", "blob/cid", "blob/request", "blob/receive",
        "proofs/rows", "proofs/params", "proofs/random", "proofs/seed", "proofs/judge",
        "proofs/wrong_row", "proofs/fraud", "proofs/segment", "proofs/bar", "proofs/wasm_subset",
        "proofs/wasm_fuel", "proofs/wasm_chain", "proofs/exe_fuel", "proofs/step_jobs",
        "proofs/bisect",
        "proofs/receipt",
        "proofs/job_output", "proofs/attestation", "proofs/attest_table",
        "proofs/challenge_size", "proofs/challenge_claim", "proofs/offer_order",
        "ledger/element", "ledger/settle", "ledger/balances", "ledger/root", "ledger/verify",
        "ledger/symbols", "ledger/session", "ledger/sync_message",
        "chain/anchor", "chain/claim", "chain/bind", "chain/announce"}


def test_every_reason_code_is_exercised(vectors: list[runner.Vector]) -> None:
    reasons = {v.meta["expected"].get("reason") for v in vectors} - {None}
    # The requester's refusals are outputs of its replays, not outcomes of the vector.
    for v in vectors:
        if v.handler == "jobs/requester":
            reasons |= {d["reason"] for d in v.outputs["decisions.json"]
                        if d.get("decision") == "refuse"}
    # RATE_LIMITED is decided by the token bucket, whose vectors give booleans; DUPLICATE by
    # the ledger topic's validator, about what a node already holds (LGR-15, LGR-16).
    assert reasons == {r.value for r in Reason} - {Reason.RATE_LIMITED.value,
                                                   Reason.DUPLICATE.value}


def test_runner_main_prints_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert runner.main(["--filter", "identity/"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    n = len(list(runner.load(VECTORS, "identity/")))
    assert out[-1] == f"{n} passed, 0 failed"


_NOISY_ADAPTER = """
import json, sys
sys.path.insert(0, %r)
from conformance.reference import handle
for line in sys.stdin:
    request = json.loads(line)
    print("adapter log: " + request["id"], file=sys.stderr, flush=True)
    if request["id"].endswith("/seed_zero"):
        response = {"id": request["id"], "unsupported": True}
    else:
        response = handle(request)
    print(json.dumps(response), flush=True)
"""


def test_runner_reports_per_handler_and_keeps_adapter_stderr_apart(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "adapter.py"
    script.write_text(_NOISY_ADAPTER % str(VECTORS.parents[1]))
    log = tmp_path / "adapter.log"
    assert runner.main(["--filter", "identity/", "--adapter", f"{sys.executable} {script}",
                        "--adapter-log", str(log)]) == 0
    out, err = capfd.readouterr()
    assert "adapter log" not in out and "adapter log" not in err
    n = {h: len(list(runner.load(VECTORS, f"identity/{h}/")))
         for h in ("peer_id", "peer_id_decode")}
    lines = out.strip().splitlines()
    assert lines[-5] == "handler                  passed  failed  skipped"
    assert lines[-4].split() == ["identity/peer_id", str(n["peer_id"] - 1), "0", "1"]
    assert lines[-3].split() == ["identity/peer_id_decode", str(n["peer_id_decode"]), "0", "0"]
    assert lines[-2] == f"adapter's standard error: {log}"
    assert lines[-1] == f"{sum(n.values()) - 1} passed, 0 failed, 1 skipped"
    logged = log.read_text().splitlines()
    assert logged[0].startswith("adapter log: identity/") and len(logged) == sum(n.values())


# -- the runner notices a wrong answer ---------------------------------------------------


def _edit_json(path: Path, change: Any) -> None:
    data = json.loads(path.read_text("utf-8"))
    change(data)
    path.write_text(json.dumps(data), "utf-8")


def test_tampered_reason_is_reported(vector_copy: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    meta = vector_copy / "caps/validate/expired/meta.json"
    _edit_json(meta, lambda m: m["expected"].update(reason="clock_skew"))
    assert runner.main(["--vectors", str(vector_copy)]) == 1
    out = capsys.readouterr().out
    assert "FAIL caps/validate/expired\n     expected reject clock_skew, got reject expired" in out
    total = len(list(runner.load(vector_copy)))
    assert out.strip().splitlines()[-1] == f"{total - 1} passed, 1 failed"


def test_tampered_result_and_output_are_reported(vector_copy: Path) -> None:
    _edit_json(vector_copy / "encoding/cbor/uint_24/meta.json",
               lambda m: m["expected"].update(result="reject", reason="non_canonical"))
    (vector_copy / "identity/peer_id/seed_zero/peer_id.txt").write_text(
        peer_id_str(bytes(32)) + "\n")
    report = runner.run(runner.load(vector_copy), handle)
    assert report.failed == 2
    failures = dict(report.failures)
    assert failures["encoding/cbor/uint_24"] == ["expected reject non_canonical, got valid"]
    [problem] = failures["identity/peer_id/seed_zero"]
    assert problem.startswith("output peer_id.txt differs")


def test_answers_that_break_the_protocol_fail(vectors: list[runner.Vector]) -> None:
    some = [v for v in vectors if v.handler == "envelope/open"][:6]

    def backend(req: dict[str, Any]) -> dict[str, Any]:
        i = [v.id for v in some].index(req["id"])
        if i == 0:
            raise RuntimeError("adapter died")
        if i == 1:
            return {"id": req["id"], "error": "boom"}
        if i == 2:
            return {"id": req["id"], "unsupported": True}
        r = handle(req)
        if i == 3 and r["result"] == "valid":
            r["outputs"] = {}
        if i == 3 and r["result"] != "valid":
            r["reason"] = "malformed"
        return r

    report = runner.run(iter(some), backend)
    assert (report.passed, report.failed, report.skipped) == (2, 3, 1)


def test_reference_adapter_over_stdio() -> None:
    # run from the repository root, so that "-m conformance.adapter" finds this checkout
    adapter = runner.Adapter([sys.executable, "-m", "conformance.adapter"],
                             cwd=VECTORS.parents[1])
    try:
        report = runner.run(runner.load(VECTORS, "envelope/"), adapter)
        answer = adapter({"id": "x", "handler": "jobs/offer", "params": {}, "inputs": {}})
    finally:
        adapter.close()
    assert report.failures == []
    assert report.passed == len(list(runner.load(VECTORS, "envelope/")))
    assert answer == {"id": "x", "unsupported": True}


def test_generator_refuses_a_case_the_reference_does_not_meet() -> None:
    wrong = Case("uint_0", Inputs({"input.cbor": b"\x00"}), reject(Reason.NON_CANONICAL),
                 "claims 0x00 is not canonical", ("ENC-3",))
    with pytest.raises(generate.GenerationError, match="expects reject non_canonical"):
        generate.check("encoding/cbor", wrong)
    wrong_output = Case("uint_0", Inputs({"input.cbor": b"\x00"}),
                        valid({"decoded.json": {"int": "1"}}), "claims 0x00 is 1", ("ENC-3",))
    with pytest.raises(generate.GenerationError, match=r"decoded\.json differs"):
        generate.check("encoding/cbor", wrong_output)


def test_generator_does_not_delete_foreign_directories(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(generate.GenerationError, match="refusing"):
        generate.write(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# -- cross-checks with code that is not the reference ------------------------------------


def test_valid_cbor_vectors_decode_alike_with_cbor2(vectors: list[runner.Vector]) -> None:
    checked = 0
    for v in vectors:
        if v.handler == "encoding/cbor" and v.meta["expected"]["result"] == "valid":
            ours = from_json(v.outputs["decoded.json"])
            assert cbor2.loads(v.inputs["input.cbor"]) == ours, v.id
            checked += 1
        if v.handler == "encoding/cbor_encode" and v.meta["expected"]["result"] == "valid":
            assert cbor2.loads(v.outputs["encoded.cbor"]) == from_json(v.inputs["value.json"])
    assert checked > 40


def test_peer_ids_agree_with_py_libp2p(vectors: list[runner.Vector]) -> None:
    from libp2p.crypto.ed25519 import Ed25519PublicKey
    from libp2p.peer.id import ID

    checked = 0
    for v in vectors:
        if v.handler == "identity/peer_id":
            pk = bytes.fromhex(v.outputs["public_key.txt"])
            pid = ID.from_pubkey(Ed25519PublicKey.from_bytes(pk))
            assert pid.to_base58() == v.outputs["peer_id.txt"], v.id
            assert pid.to_bytes() == v.outputs["peer_id.bin"], v.id
            assert v.outputs["peer_id.txt"].startswith("12D3KooW")
            checked += 1
    assert checked >= 7


def test_content_ids_and_signing_inputs(vectors: list[runner.Vector]) -> None:
    for v in vectors:
        if v.handler == "envelope/open" and v.meta["expected"]["result"] == "valid":
            env = v.outputs["envelope.json"]
            data = v.inputs["input.cbor"]
            assert env["content_id"] == "1220" + hashlib.sha256(data).hexdigest()
            decoded = cbor2.loads(data)
            assert env["k"] == decoded["k"].hex() and env["s"] == decoded["s"].hex()
        if v.handler == "envelope/seal":
            p = v.meta["params"]
            header = f"p2pnode/v1/{p['t']}/{p['v']}".encode() + b"\x00"
            body = cbor2.loads(v.outputs["envelope.cbor"])["b"]
            assert v.outputs["signing_input.bin"].startswith(header)
            assert cbor2.loads(v.outputs["signing_input.bin"][len(header):]) == body


def _signature_facts(k: bytes, s: bytes, message: bytes) -> dict[str, bool]:
    """What RFC 8032 arithmetic says about one signature, check by check (ENV-8)."""
    from conformance.cases import ed25519 as ed

    r_bytes, big_s = s[:32], int.from_bytes(s[32:], "little")
    try:
        big_a, big_r = ed.decode(k), ed.decode(r_bytes)
    except ValueError:
        return {"decodes": False}
    h = ed.challenge(r_bytes, k, message) % ed.L
    r_check = ed.add(ed.mul(big_s, ed.B), ed.neg(ed.mul(h, big_a)))
    return {
        "decodes": ed.encode(big_a) == k and ed.encode(big_r) == r_bytes,
        "s_reduced": big_s < ed.L,
        "k_small": ed.same(ed.mul(8, big_a), ed.IDENTITY),
        "r_small": ed.same(ed.mul(8, big_r), ed.IDENTITY),
        "cofactorless": ed.encode(r_check) == r_bytes,
        "cofactored": ed.same(ed.mul(8, ed.add(r_check, ed.neg(big_r))), ed.IDENTITY),
    }


def _accepts(facts: dict[str, bool], skip: str) -> bool:
    """A model verifier: ENV-8 exactly, except for the one check named by ``skip``."""
    if not facts["decodes"]:
        return False
    return ((facts["s_reduced"] or skip == "s_reduced")
            and (not facts["k_small"] or skip == "k_small")
            and (not facts["r_small"] or skip == "r_small")
            and facts["cofactored" if skip == "cofactorless" else "cofactorless"])


def test_each_ed25519_check_is_isolated_by_one_vector(vectors: list[runner.Vector]) -> None:
    from p2pnode.wire import cbor, envelope
    from p2pnode.wire.reasons import WireError

    judged: dict[str, tuple[bool, dict[str, bool]]] = {}
    for v in vectors:
        exp = v.meta["expected"]
        if v.handler != "envelope/open" or exp.get("reason") not in (None, "bad_signature"):
            continue
        try:
            env = cbor.decode(v.inputs["input.cbor"], max_size=1 << 20)
        except WireError:
            continue
        assert isinstance(env, dict)
        k, s = env.get("k"), env.get("s")
        if not (isinstance(k, bytes) and len(k) == 32 and isinstance(s, bytes)
                and len(s) == 64):
            continue
        message = envelope.signing_input(env["t"], env["v"], cbor.encode(env["b"]))
        judged[v.id] = (exp["result"] == "valid", _signature_facts(k, s, message))
    assert len(judged) >= 15
    for vid, (want, facts) in judged.items():
        assert _accepts(facts, skip="") == want, vid
    isolating = {"cofactorless": "envelope/open/cofactored_equation_only",
                 "k_small": "envelope/open/k_small_order_alone",
                 "r_small": "envelope/open/r_small_order_alone",
                 "s_reduced": "envelope/open/s_scalar_not_reduced"}
    for skip, only in isolating.items():
        wrong = [vid for vid, (want, facts) in judged.items() if _accepts(facts, skip) != want]
        assert wrong == [only], skip
