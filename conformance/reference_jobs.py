"""The reference handlers of the job market, content and framing vectors (spec 01 §4.1,
spec 04, spec 05), on the public core API of ``p2pnode`` like those of ``reference.py``.

The market's rules live in the machines ``p2pnode.jobs.requester.Requester`` and
``p2pnode.jobs.worker.Worker``; the handlers drive them with the vectors' events.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from conformance.jsonform import from_json, to_json
from conformance.model import Outcome
from p2pnode.blobs.protocol import (
    BlobRequestReader,
    BlobResponseReader,
    ChunkReceived,
    Refused,
    TransferComplete,
    answer,
)
from p2pnode.dhtpolicy import ProviderLookup
from p2pnode.identity import peer_id_str
from p2pnode.jobs import discovery, tensors
from p2pnode.jobs.executors import get_executor
from p2pnode.jobs.executors.base import ExecError, Limits
from p2pnode.jobs.market import (
    Decided,
    Grant,
    Lease,
    LeaseState,
    Refuse,
    RequesterJob,
    Verify,
)
from p2pnode.jobs.matching import Capacity
from p2pnode.jobs.model import SignedJob, created_in_future, open_message
from p2pnode.jobs.verify import check_output
from p2pnode.jobs.worker import Work, Worker, WorkState
from p2pnode.wire.cid import cid_of
from p2pnode.wire.framing import FrameDecoder, encode_frame
from p2pnode.wire.reasons import Reason, WireError

Files = Mapping[str, Any]
Params = Mapping[str, Any]


def _rejected(e: WireError) -> Outcome:
    return Outcome("reject", e.reason.value)


# -- framing (spec 01 §4.1) -------------------------------------------------------------------


def frames(f: Files, p: Params) -> Outcome:
    """Split ``stream.bin``, followed by the end of the stream, into frames."""
    decoder = FrameDecoder(p["max_frame"])
    decoder.feed(f["stream.bin"])
    out: list[str] = []
    try:
        while (frame := decoder.next_frame()) is not None:
            out.append(frame.hex())
    except WireError as e:
        return _rejected(e)
    if decoder.buffered:
        return Outcome("reject", Reason.TRUNCATED.value)
    return Outcome("valid", outputs={"frames.json": out})


# -- job specs, stream messages, DHT records (spec 04 §2, §3) ---------------------------------


def _job_json(job: SignedJob) -> dict[str, Any]:
    return {"id": job.id.hex(), "requester": peer_id_str(job.requester),
            "resource_class": job.spec.req.resource_class, "body": to_json(job.spec.to_body())}


def job_spec(f: Files, p: Params) -> Outcome:
    try:
        job = SignedJob.open(f["input.cbor"])
    except WireError as e:
        return _rejected(e)
    return Outcome("valid", outputs={"job.json": _job_json(job)})


def job_message(f: Files, p: Params) -> Outcome:
    expected = p.get("expected")
    try:
        msg = open_message(f["input.cbor"], net=p["net"],
                           expected=set(expected) if expected is not None else None)
    except WireError as e:
        return _rejected(e)
    return Outcome("valid", outputs={"message.json": {
        "t": msg.t, "peer_id": peer_id_str(msg.signer), "body": to_json(msg.body)}})


def dht_record(f: Files, p: Params) -> Outcome:
    verdict, job = discovery.validate_job_record(p["key"], f["value.cbor"], net=p["net"],
                                                 now_ms=p["now_ms"])
    if job is None:
        return Outcome("reject", verdict.reason.value)  # type: ignore[union-attr]
    return Outcome("valid", outputs={"job.json": _job_json(job)})


def discovery_keys(f: Files, p: Params) -> Outcome:
    return Outcome("valid", outputs={"keys.json": discovery.lookup_keys(
        p["net"], list(p["kinds"]), tuple(p["classes"]), p["now_ms"])})


def provider_lookup(f: Files, p: Params) -> Outcome:
    t = int(p["target"], 16)
    answers = p["answers"]
    kw = {k: p[k] for k in ("count", "alpha", "beta", "max_queries") if k in p}
    lookup: ProviderLookup[str] = ProviderLookup(p["start"], lambda peer: int(peer, 16) ^ t,
                                                 **kw)
    batches = []
    while not lookup.done:
        batch = lookup.next_batch()
        if not batch:
            break
        batches.append(batch)
        for peer in batch:  # answers are applied in the batch's order
            a = answers.get(peer)
            if a is not None and (a["providers"] or a["closer"]):
                lookup.on_answer(peer, a["providers"], a["closer"])
            else:
                lookup.on_failure(peer)
    return Outcome("valid", outputs={"batches.json": batches,
                                     "providers.json": list(lookup.providers)})


# -- the requester's machine (spec 04 §4) ------------------------------------------------------


def _lease_json(le: Lease) -> dict[str, Any]:
    return {"number": le.number, "worker": le.worker.hex(), "price": le.price,
            "granted": le.granted, "expires": le.expires, "state": le.state.value,
            "heartbeats": le.heartbeats, "progress": le.progress,
            "output": le.output.hex() if le.output is not None else None, "reason": le.reason}


def _verdict_json(le: Lease) -> dict[str, Any]:
    return {"decision": "verdict", "lease": le.number,
            "accepted": le.state is LeaseState.ACCEPTED, "reason": le.reason}


def _decision(d: Grant | Refuse | Verify | Decided) -> dict[str, Any]:
    if isinstance(d, Refuse):
        return {"decision": "refuse", "reason": d.reason.value}
    if isinstance(d, Grant):
        return {"decision": "lease", "lease": d.lease.number, "expires": d.lease.expires,
                "price": d.lease.price}
    if isinstance(d, Verify):
        return {"decision": "verify", "lease": d.lease.number}
    return _verdict_json(d.lease)


def requester(f: Files, p: Params) -> Outcome:
    """Replay ``events.json`` against the job of ``spec.cbor``, created at its ``created``."""
    sj = SignedJob.open(f["spec.cbor"])
    job = RequesterJob.new(sj.id, sj.spec, sj.raw, sj.spec.created)
    log: list[dict[str, Any]] = []
    for ev in f["events.json"]:
        op, now = ev["op"], ev["at_ms"]
        entry: dict[str, Any] = {"op": op}
        # XCH-5: the shell refuses a message naming a job it does not hold.
        named = bytes.fromhex(ev.get("job", sj.id.hex()))
        if op in ("claim", "heartbeat", "result") and named != sj.id:
            entry.update(decision="refuse", reason=Reason.UNKNOWN_JOB.value)
        elif op == "claim":
            entry.update(_decision(job.on_claim(bytes.fromhex(ev["worker"]), ev["price"], now)))
        elif op == "heartbeat":
            entry.update(_decision(job.on_heartbeat(bytes.fromhex(ev["worker"]), ev["lease"],
                                                    ev["progress"], now)))
        elif op == "result":
            entry.update(_decision(job.on_result(bytes.fromhex(ev["worker"]), ev["lease"],
                                                 bytes.fromhex(ev["output"]), now)))
        elif op == "verified":
            if ev["lease"] not in job.leases:
                raise ValueError("a verified event names a lease the job does not have")
            entry.update(_verdict_json(job.on_verified(ev["lease"], ev["ok"], ev["reason"],
                                                       now)))
        elif op == "tick":
            entry["happened"] = job.on_tick(now)
        else:
            raise ValueError(f"unknown event {op!r}")
        entry["state"] = job.state.value
        log.append(entry)
    return Outcome("valid", outputs={
        "decisions.json": log,
        "job.json": {"state": job.state.value, "reassigned": job.reassigned,
                     "rejected": job.rejected, "completed_at": job.completed_at,
                     "needs_workers": job.needs_workers(),
                     "leases": [_lease_json(le) for le in sorted(job.leases.values(),
                                                                 key=lambda le: le.number)]},
    })


# -- the worker (spec 04 §5.2) ----------------------------------------------------------------

# WRK-1: a job for another network or created in the future (JOB-11) breaks a rule; every
# other reason to decline is the worker's own business (its kinds, hardware, price, time,
# load).
_WORKER_REJECTS = frozenset({Reason.WRONG_NETWORK, Reason.CLOCK_SKEW})


def worker(f: Files, p: Params) -> Outcome:
    try:
        sj = SignedJob.open(f["spec.cbor"])
    except WireError as e:
        return _rejected(e)
    prof = p["profile"]
    cap = Capacity(kinds=frozenset(prof["kinds"]), prices=dict(prof["prices"]),
                   cores=prof["cores"], mem=prof["mem"], gpu_mem=prof["gpu_mem"],
                   gpus=prof["gpus"])
    w = Worker(p["net"], b"\x00" * 32, cap, prof["concurrency"])
    for held in p.get("active", []):
        w.work[bytes.fromhex(held)] = Work(job=sj, state=WorkState.RUNNING)
    price, why = w.take(sj, p["now_ms"], sj.spec.deadline,
                        created_in_future(sj.spec, p["now_ms"]))
    if why is not None:
        return Outcome("reject" if why in _WORKER_REJECTS else "ignore", why.value)
    return Outcome("valid", outputs={"claim.json": {"job": sj.id.hex(), "price": price}})


# -- verification and execution (spec 04 §6, §7) ---------------------------------------------


def _named_inputs(f: Files) -> dict[str, bytes]:
    return {name[len("input_"):-len(".bin")]: data for name, data in f.items()
            if name.startswith("input_") and name.endswith(".bin")}


def verify(f: Files, p: Params) -> Outcome:
    """Check ``output.bin`` against the job of ``spec.cbor`` and its inputs ``input_<name>.bin``
    (an input without a file is one the requester does not hold)."""
    sj = SignedJob.open(f["spec.cbor"])
    given = _named_inputs(f)
    inputs: dict[str, bytes | None] = {name: given.get(name) for name, _ in sj.spec.inputs}
    why = check_output(sj.spec, inputs, f["output.bin"])
    return Outcome("valid") if why is None else Outcome("reject", why.value)


def execute(f: Files, p: Params) -> Outcome:
    params = from_json(p.get("params", {"map": []}))
    limits = Limits(**p.get("limits", {}))
    try:
        result = get_executor(p["kind"], device="cpu").run(_named_inputs(f), params, limits)
    except ExecError as e:
        # EXE-1: a job beyond the worker's limits is no one's fault; a malformed job or a
        # failing program is the job's.
        return Outcome("ignore" if e.reason is Reason.LIMIT_EXCEEDED else "reject",
                       e.reason.value)
    return Outcome("valid", outputs={"output.bin": result.output})


# -- matrices (spec 04 §7.2) ------------------------------------------------------------------


def matrix(f: Files, p: Params) -> Outcome:
    try:
        m = tensors.decode_matrix(f["input.cbor"], p["max_elements"], dtype=p.get("dtype"))
    except WireError as e:
        return _rejected(e)
    return Outcome("valid", outputs={"matrix.json": {
        "dtype": str(m.dtype),
        "shape": [int(m.shape[0]), int(m.shape[1])],
        "elements": [[str(int(x)) for x in row] for row in m.tolist()],
    }})


def random_matrix(f: Files, p: Params) -> Outcome:
    m = tensors.random_int8_matrix(p["rows"], p["cols"], bytes.fromhex(p["seed"]))
    data = m.tobytes()
    return Outcome("valid", outputs={
        "cid.txt": cid_of(tensors.encode_matrix(m)).hex(),
        "data_sha256.txt": hashlib.sha256(data).hexdigest(),
        "head.txt": data[:32].hex(),
    })


# -- blobs (spec 05) --------------------------------------------------------------------------


def blob_cid(f: Files, p: Params) -> Outcome:
    return Outcome("valid", outputs={"cid.txt": cid_of(f["content.bin"]).hex()})


def blob_request(f: Files, p: Params) -> Outcome:
    """The server reads ``stream.bin``, then the end of the stream, and answers from
    ``held`` (content id hex -> size)."""
    reader = BlobRequestReader()
    reader.receive_data(f["stream.bin"])
    reader.receive_eof()
    try:
        req = reader.next_request()
    except WireError as e:
        return _rejected(e)
    assert req is not None  # at the end of the stream there is a request or an error
    held: Mapping[str, int] = p.get("held", {})
    response = answer(req, held.get(req.cid.hex()))
    return Outcome("valid", outputs={
        "request.json": {"cid": req.cid.hex(), "max": str(req.max_size)},
        "response.bin": encode_frame(response.encode()),
    })


def blob_receive(f: Files, p: Params) -> Outcome:
    """The client asked for ``cid`` with ``max`` and reads ``stream.bin``, then the end of
    the stream. A server's refusal is ``ignore`` with its reason."""
    reader = BlobResponseReader(bytes.fromhex(p["cid"]), int(p["max"]))
    reader.receive_data(f["stream.bin"])
    reader.receive_eof()
    content = bytearray()
    try:
        while (ev := reader.next_event()) is not None:
            if isinstance(ev, Refused):
                return Outcome("ignore", ev.reason.value)
            if isinstance(ev, ChunkReceived):
                content += ev.data
            if isinstance(ev, TransferComplete):
                break
    except WireError as e:
        return _rejected(e)
    if not reader.done:
        raise AssertionError("the reader stopped before the end of the transfer")
    return Outcome("valid", outputs={"content.bin": bytes(content)})


HANDLERS: dict[str, Callable[[Files, Params], Outcome]] = {
    "encoding/frames": frames,
    "jobs/spec": job_spec,
    "jobs/message": job_message,
    "jobs/dht_record": dht_record,
    "jobs/discovery_keys": discovery_keys,
    "jobs/provider_lookup": provider_lookup,
    "jobs/requester": requester,
    "jobs/worker": worker,
    "jobs/verify": verify,
    "jobs/execute": execute,
    "tensors/matrix": matrix,
    "tensors/random_matrix": random_matrix,
    "blob/cid": blob_cid,
    "blob/request": blob_request,
    "blob/receive": blob_receive,
}
