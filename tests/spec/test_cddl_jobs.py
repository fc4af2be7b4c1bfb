"""The job and blob schemas (spec/schemas/jobs.cddl, blob.cddl) against real messages of the
reference code and against the conformance vectors (spec 04 §2, §7.2; spec 05 §3).

The helpers and pycddl's gaps are those of test_cddl.py.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import runner
from conformance.cases import jobs as job_cases
from conformance.cases.common import ALICE, BOB
from p2pnode.blobs.protocol import BlobFound, BlobRefused, BlobRequest
from p2pnode.jobs import model, tensors
from p2pnode.jobs.model import SCHEMAS, JobSpec, Requirements, seal_message
from p2pnode.wire import cbor
from p2pnode.wire.framing import FrameDecoder
from p2pnode.wire.reasons import Reason
from tests.spec.test_cddl import SCHEMAS as SCHEMA_DIR
from tests.spec.test_cddl import U64, conforms

TEXT = "".join(f.read_text() for f in sorted(SCHEMA_DIR.glob("*.cddl")))


def rule_of(t: str) -> str:
    """The CDDL rule of a stream message type: job.heartbeat -> JobHeartbeat."""
    return "Job" + t.split(".", 1)[1].capitalize()


def map_keys(rule: str) -> set[str]:
    m = re.search(r"^%s = \{[^\n]*\n(.*?)^\}" % rule, TEXT, re.M | re.S)
    assert m, rule
    return set(re.findall(r"^\s+(\w+):", m.group(1), re.M))


def test_rule_names_and_keys_are_the_references() -> None:
    for t, fields in SCHEMAS.items():
        assert t.startswith("job.")
        assert map_keys(rule_of(t)) == set(fields), t
        assert re.search(r"^%sEnvelope = Envelope<%s, \"%s\", 1>$" % (rule_of(t), rule_of(t), t),
                         TEXT, re.M), t
    assert map_keys("JobSpec") == set(job_cases.BASE_SPEC.to_body())
    assert {f.name for f in dataclasses.fields(JobSpec)} == map_keys("JobSpec")
    assert map_keys("Requirements") == set(Requirements().to_body())
    assert map_keys("Matrix") == set(tensors.MATRIX_KEYS)
    assert map_keys("BlobRequest") == {"cid", "max"}
    assert map_keys("BlobFound") == {"ok", "size"} and map_keys("BlobRefused") == {"ok",
                                                                                   "reason"}
    for cls in (JobSpec, Requirements, BlobRequest, BlobFound, BlobRefused):
        assert re.search(r"^%s = " % cls.__name__, TEXT, re.M), cls.__name__


def test_size_limits_in_the_schema_are_the_references() -> None:
    assert "spec: Bytes<0..%d>" % model.SPEC_MAX_SIZE in TEXT
    assert "inputs: { 0*%d tstr => ContentId }" % model.MAX_INPUTS in TEXT
    assert "params: { 0*%d tstr => ParamValue }" % model.MAX_PARAMS in TEXT
    assert "lease_s: %d..%d" % (model.MIN_LEASE_S, model.MAX_LEASE_S) in TEXT
    assert "redundancy: 1..%d" % model.MAX_REDUNDANCY in TEXT
    assert "jobs: [0*%d JobId]" % model.MAX_LIST_JOBS in TEXT
    assert "kinds: [0*%d JobKindName]" % model.MAX_QUERY_KINDS in TEXT
    assert "Meta = { 0*%d tstr => ParamValue }" % model.MAX_META in TEXT


SPECS = {
    "sample": job_cases.BASE_SPEC,
    "gpu": job_cases.job(req=Requirements(gpu=True, gpu_mem=1 << 30)),
    "wasm": job_cases.job(kind="wasm", inputs=(("input", job_cases.CID_A),
                                               ("module", job_cases.CID_B)),
                          params=(("fuel", 10**9),)),
    "params": job_cases.job(params=(("b", b"\x00" * 256), ("f", True), ("n", -(1 << 64)),
                                    ("t", "x" * 256))),
    "max_sizes": job_cases._max_spec(),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_sealed_specs_match_the_schema(name: str) -> None:
    data = SPECS[name].seal(BOB)
    assert len(data) <= model.SPEC_MAX_SIZE
    assert conforms("JobSpecEnvelope", data) and conforms("SignedEnvelope", data)
    body = cbor.decode(data)["b"]
    assert conforms("JobSpec", cbor.encode(body))
    assert conforms("Requirements", cbor.encode(body["req"]))
    assert model.SignedJob.open(data).spec == SPECS[name]


@pytest.mark.parametrize("t", sorted(SCHEMAS))
def test_sealed_messages_match_their_rule_only(t: str) -> None:
    body = job_cases._message_bodies()[t]
    data = seal_message(ALICE, t, body)
    assert conforms(rule_of(t) + "Envelope", data)
    assert conforms(rule_of(t), cbor.encode(body))
    others = [o for o in SCHEMAS if o != t]
    assert not any(conforms(rule_of(o) + "Envelope", data) for o in others)
    assert not conforms("JobSpecEnvelope", data)


def test_reference_answers_match_the_schemas() -> None:
    for payload, rule in [
        (BlobRequest(bytes.fromhex("1220" + "ab" * 32), U64).encode(), "BlobRequest"),
        (BlobFound(0).encode(), "BlobFound"), (BlobFound(U64).encode(), "BlobResponse"),
        (BlobRefused(Reason.NOT_FOUND).encode(), "BlobRefused"),
        (BlobRefused(Reason.REQUIREMENTS_UNMET).encode(), "BlobResponse"),
        (tensors.encode_matrix(tensors.random_int8_matrix(3, 5, b"s")), "Matrix"),
        (tensors.encode_matrix(tensors.random_int8_matrix(1, 1, b"s").astype("int64")),
         "Matrix"),
    ]:
        assert conforms(rule, payload), rule
    assert not conforms("BlobFound", BlobRefused(Reason.BUSY).encode())
    assert max(len(r.value) for r in Reason) <= 32  # every code fits BlobRefused.reason


# Rejections the schemas cannot express (prose in JOB-3, JOB-4, BLOB-1, BLOB-8, MAT-2, MAT-3),
# and those pycddl does not check (test_cddl.test_pycddl_gaps_still_exist).
BEYOND_CDDL = {
    "jobs/spec/deadline_at_created", "jobs/spec/deadline_before_created",
    "jobs/spec/deadline_too_far", "jobs/spec/input_cid_not_sha256",
    "jobs/spec/input_name_empty", "jobs/spec/input_name_too_long",
    "jobs/spec/param_name_empty", "blob/request/cid_not_sha256", "blob/receive/reason_unknown",
    "tensors/matrix/data_short", "tensors/matrix/data_int64_short",
    "tensors/matrix/dtype_not_required",
}
PYCDDL_GAPS = {"jobs/spec/param_array", "blob/receive/header_not_map",
               "blob/receive/refused_with_size"}


def _first_frame(stream: bytes) -> bytes | None:
    decoder = FrameDecoder(1 << 20)
    decoder.feed(stream)
    return decoder.next_frame()


def _schema_view(v: runner.Vector) -> tuple[str, bytes] | None:
    """(rule, bytes) of the part of a vector's input a schema describes, or None."""
    if v.handler == "jobs/spec":
        return "JobSpec", cbor.encode(cbor.decode(v.inputs["input.cbor"])["b"])
    if v.handler == "jobs/message":
        env = cbor.decode(v.inputs["input.cbor"])
        return rule_of(env["t"]), cbor.encode(env["b"])
    if v.handler == "tensors/matrix":
        return "Matrix", v.inputs["input.cbor"]
    frame = _first_frame(v.inputs.get("stream.bin", b""))
    if v.handler == "blob/request" and frame is not None:
        return "BlobRequest", frame
    if v.handler == "blob/receive" and frame is not None and "BLOB-8" in v.meta["rules"]:
        return "BlobResponse", frame
    return None


def test_vectors_against_the_schemas() -> None:
    accepted = refused = 0
    for prefix in ("jobs/spec/", "jobs/message/", "tensors/matrix/", "blob/request/",
                   "blob/receive/"):
        for v in runner.load(runner.DEFAULT_VECTORS, prefix):
            exp = v.meta["expected"]
            body_level = exp.get("reason") in ("bad_field", "unknown_field")
            view = _schema_view(v) if exp["result"] != "reject" or body_level else None
            if view is None:
                continue
            rule, data = view
            if body_level:
                assert conforms(rule, data) == (v.id in BEYOND_CDDL | PYCDDL_GAPS), v.id
                refused += 1
            else:
                assert conforms(rule, data), v.id
                accepted += 1
    assert accepted >= 40 and refused >= 90, (accepted, refused)


_name = st.text(min_size=1, max_size=8)
_param = st.one_of(st.integers(-(1 << 64), U64), st.booleans(), st.text(max_size=20),
                   st.binary(max_size=20))


@settings(max_examples=40, deadline=None)
@given(kind=_name, inputs=st.dictionaries(_name, st.binary(min_size=32, max_size=32),
                                          max_size=8),
       params=st.dictionaries(_name, _param, max_size=16),
       req=st.builds(Requirements, st.integers(0, U64), st.integers(0, U64),
                     st.integers(0, U64), st.booleans()),
       created=st.integers(0, U64 - model.MAX_DEADLINE_MS),
       span=st.integers(1, model.MAX_DEADLINE_MS), lease_s=st.integers(2, 3600),
       redundancy=st.integers(1, 8), nonce=st.binary(min_size=16, max_size=16))
def test_any_spec_within_the_limits_matches_the_schema(
        kind: str, inputs: dict[str, bytes], params: dict[str, Any], req: Requirements,
        created: int, span: int, lease_s: int, redundancy: int, nonce: bytes) -> None:
    spec = JobSpec(net="devnet", kind=kind,
                   inputs=tuple(sorted((k, b"\x12\x20" + v) for k, v in inputs.items())),
                   params=tuple(sorted(params.items())), req=req, max_price=created,
                   created=created, deadline=created + span, lease_s=lease_s,
                   redundancy=redundancy, nonce=nonce)
    data = spec.seal(ALICE)
    assert conforms("JobSpecEnvelope", data)
    assert model.SignedJob.open(data).spec == spec
