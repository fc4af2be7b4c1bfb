"""Job market messages (spec/04-jobs.md §2; schemas in spec/schemas/jobs.cddl).

Every message is a signed envelope (spec 01 §3). The JobSpec is signed by the requester and
its id is the content id of its envelope; every other message names the job by that id.

    job.spec       requester   the job: kind, inputs, requirements, price, deadline, policy
    job.offer      requester   "here is a job for you" (direct path from the caps table)
    job.query      worker      "which open jobs of these kinds do you have?"
    job.list       requester   answer to job.query
    job.get        worker      "send me the JobSpec" (when the DHT lookup fails)
    job.claim      worker      "I will run this job at this price"
    job.lease      requester   the assignment, with an expiry; renewed by heartbeats
    job.heartbeat  worker      "still running", with progress
    job.result     worker      output content id (+ proof, filled in by the proofs chapter)
    job.verdict    requester   accepted or rejected, with a reason
    job.refuse     either      a refusal with a reason code
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from p2pnode.identity import Identity
from p2pnode.wire import envelope
from p2pnode.wire.cid import CID_PREFIX, CID_SIZE, cid_of
from p2pnode.wire.envelope import Envelope
from p2pnode.wire.fields import boolean, bstr, hashes, list_of, map_exact, text, uint
from p2pnode.wire.reasons import Reason, WireError

VERSION = 1
NONCE_SIZE = 16
MAX_KIND_LEN = 32
MAX_INPUTS = 8
MAX_PARAMS = 16
MAX_PARAM_BYTES = 256
MAX_QUERY_KINDS = 16
MAX_LIST_JOBS = 64
MIN_LEASE_S = 2
MAX_LEASE_S = 3600
MAX_REDUNDANCY = 8
MAX_DEADLINE_MS = 7 * 24 * 3600 * 1000
# How far ahead of the receiver's clock a job's `created` may be (JOB-11).
MAX_CREATED_SKEW_MS = 30_000
MAX_REASON_LEN = 64
MAX_META = 16
MAX_NET_LEN = 32
MAX_DETAIL_LEN = 200

T_SPEC = "job.spec"
T_OFFER = "job.offer"
T_QUERY = "job.query"
T_LIST = "job.list"
T_GET = "job.get"
T_CLAIM = "job.claim"
T_LEASE = "job.lease"
T_HEARTBEAT = "job.heartbeat"
T_RESULT = "job.result"
T_VERDICT = "job.verdict"
T_REFUSE = "job.refuse"
T_PROBE = "job.probe"  # a dispute's referee asks a worker for a checkpoint (spec 06 DSP)
T_ENTRY = "job.entry"  # and its answer
# The longest audit path a job.entry carries: a chain of MAX_CHECKPOINTS entries (WSM-3).
MAX_ENTRY_PATH = 24

SPEC_MAX_SIZE = 8192
SIZES = {
    T_SPEC: SPEC_MAX_SIZE,
    T_OFFER: SPEC_MAX_SIZE + 512,
    T_QUERY: 1024,
    T_LIST: 4096,
    T_GET: 512,
    T_CLAIM: 512,
    T_LEASE: 512,
    T_HEARTBEAT: 512,
    T_RESULT: 2048,
    T_VERDICT: 512,
    T_REFUSE: 512,
    T_PROBE: 512,
    T_ENTRY: 2048,
}
for _type, _size in SIZES.items():
    envelope.register_type(_type, {VERSION}, _size)
MAX_FRAME = max(SIZES.values())


def cid(v: Any, what: str) -> bytes:
    b = bstr(v, what, size=CID_SIZE)
    if not b.startswith(CID_PREFIX):
        raise WireError(Reason.BAD_FIELD, "%s must be a sha2-256 multihash" % what)
    return b


def _param_value(v: Any, what: str) -> int | str | bytes | bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, str) and len(v.encode()) <= MAX_PARAM_BYTES:
        return v
    if isinstance(v, bytes) and len(v) <= MAX_PARAM_BYTES:
        return v
    raise WireError(Reason.BAD_FIELD, "%s: params are ints, bools or short strings" % what)


@dataclass(frozen=True, slots=True)
class Requirements:
    """What a worker's advertised hardware must meet (spec 04 §2.1)."""

    cores: int = 1
    mem: int = 0  # bytes of RAM
    gpu_mem: int = 0  # bytes of memory on one GPU
    gpu: bool = False

    def to_body(self) -> dict[str, Any]:
        return {"cores": self.cores, "mem": self.mem, "gpu_mem": self.gpu_mem, "gpu": self.gpu}

    @classmethod
    def from_body(cls, v: Any) -> Requirements:
        m = map_exact(v, frozenset({"cores", "mem", "gpu_mem", "gpu"}), "req")
        return cls(cores=uint(m["cores"], "req.cores"), mem=uint(m["mem"], "req.mem"),
                   gpu_mem=uint(m["gpu_mem"], "req.gpu_mem"), gpu=boolean(m["gpu"], "req.gpu"))

    @property
    def resource_class(self) -> str:
        """Resource class (JOB-6): jobs that need a GPU are found apart from CPU jobs."""
        return "gpu" if self.gpu or self.gpu_mem > 0 else "cpu"


_SPEC_KEYS = frozenset({"net", "kind", "inputs", "params", "req", "max_price", "created",
                        "deadline", "lease_s", "redundancy", "verify", "nonce"})


@dataclass(frozen=True, slots=True)
class JobSpec:
    """Body of ``job.spec`` v1 (spec 04 §2.1)."""

    net: str
    kind: str
    inputs: tuple[tuple[str, bytes], ...]  # (name, content id), sorted by name
    params: tuple[tuple[str, Any], ...]
    req: Requirements
    max_price: int
    created: int  # ms
    deadline: int  # ms
    lease_s: int
    redundancy: int
    nonce: bytes
    verify: tuple[tuple[str, Any], ...] = ()  # verification policy: the proofs chapter

    def to_body(self) -> dict[str, Any]:
        return {
            "net": self.net, "kind": self.kind, "inputs": dict(self.inputs),
            "params": dict(self.params), "req": self.req.to_body(),
            "max_price": self.max_price, "created": self.created, "deadline": self.deadline,
            "lease_s": self.lease_s, "redundancy": self.redundancy,
            "verify": dict(self.verify), "nonce": self.nonce,
        }

    def seal(self, identity: Identity) -> bytes:
        return envelope.seal(identity, T_SPEC, VERSION, self.to_body())

    @classmethod
    def from_body(cls, body: Any) -> JobSpec:
        m = map_exact(body, _SPEC_KEYS, "job.spec")
        inputs_raw = m["inputs"]
        if not isinstance(inputs_raw, dict) or len(inputs_raw) > MAX_INPUTS:
            raise WireError(Reason.BAD_FIELD, "inputs must be a map of at most %d" % MAX_INPUTS)
        inputs = tuple(sorted((text(k, 32, "input name", nonempty=True), cid(v, "input cid"))
                              for k, v in inputs_raw.items()))
        params_raw = m["params"]
        if not isinstance(params_raw, dict) or len(params_raw) > MAX_PARAMS:
            raise WireError(Reason.BAD_FIELD, "params must be a map of at most %d" % MAX_PARAMS)
        params = tuple(sorted((text(k, 32, "param name", nonempty=True), _param_value(v, k))
                              for k, v in params_raw.items()))
        verify_raw = m["verify"]
        if not isinstance(verify_raw, dict) or len(verify_raw) > MAX_PARAMS:
            raise WireError(Reason.BAD_FIELD, "verify must be a map")
        verify = tuple(sorted((text(k, 32, "verify key", nonempty=True), _param_value(v, k))
                              for k, v in verify_raw.items()))
        spec = cls(
            net=text(m["net"], MAX_NET_LEN, "net", nonempty=True),
            kind=text(m["kind"], MAX_KIND_LEN, "kind", nonempty=True),
            inputs=inputs, params=params, req=Requirements.from_body(m["req"]),
            max_price=uint(m["max_price"], "max_price"),
            created=uint(m["created"], "created"), deadline=uint(m["deadline"], "deadline"),
            lease_s=uint(m["lease_s"], "lease_s"), redundancy=uint(m["redundancy"], "redundancy"),
            nonce=bstr(m["nonce"], "nonce", size=NONCE_SIZE), verify=verify,
        )
        if not MIN_LEASE_S <= spec.lease_s <= MAX_LEASE_S:
            raise WireError(Reason.BAD_FIELD, "lease_s out of [%d, %d]" % (MIN_LEASE_S,
                                                                           MAX_LEASE_S))
        if not 1 <= spec.redundancy <= MAX_REDUNDANCY:
            raise WireError(Reason.BAD_FIELD, "redundancy out of [1, %d]" % MAX_REDUNDANCY)
        if not spec.created < spec.deadline <= spec.created + MAX_DEADLINE_MS:
            raise WireError(Reason.BAD_FIELD, "deadline must follow created, within 7 days")
        return spec

    def param(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)


def challenge_target(spec: JobSpec) -> bytes | None:
    """Spec 06 CHL-1: the one worker a challenge job is for (its ``verify`` map's
    ``target``), or None for an ordinary job."""
    t = dict(spec.verify).get("target")
    return t if isinstance(t, bytes) and len(t) == 32 else None


def created_in_future(spec: JobSpec, now_ms: int) -> bool:
    """JOB-11: whether ``spec`` was created further ahead of ``now_ms`` than clocks drift.

    JOB-4 bounds a job's life from its ``created``; a ``created`` years ahead would make its
    DHT record (DHT-5) and every table entry for it live for years.
    """
    return spec.created > now_ms + MAX_CREATED_SKEW_MS


@dataclass(frozen=True, slots=True)
class SignedJob:
    """A JobSpec with its envelope: the id and the requester come from the envelope."""

    spec: JobSpec
    raw: bytes
    requester: bytes  # Ed25519 public key

    @property
    def id(self) -> bytes:
        return cid_of(self.raw)

    @classmethod
    def open(cls, data: bytes, *,
             verified: envelope.SignatureCache | None = None) -> SignedJob:
        env = envelope.open_envelope(data, expected_type=T_SPEC, verified=verified)
        return cls(spec=JobSpec.from_body(env.body), raw=env.raw, requester=env.signer)


def job_id_hex(job_id: bytes) -> str:
    return job_id.hex()


# -- the small messages: one generic body checker, one dataclass each --------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded stream message: its type, body and signer (the envelope's key)."""

    t: str
    body: dict[str, Any]
    signer: bytes
    raw: bytes = field(repr=False, default=b"")

    @property
    def job(self) -> bytes:
        return bytes(self.body["job"])


# Schema of each small message: field -> checker(value, name) -> value
def _u(v: Any, n: str) -> int:
    return uint(v, n)


def _t(v: Any, n: str) -> str:
    return text(v, MAX_REASON_LEN, n)


def _net(v: Any, n: str) -> str:
    return text(v, MAX_NET_LEN, n, nonempty=True)


def _job_or_empty(v: Any, n: str) -> bytes:
    # A refusal names the job it refuses, or nothing when the request was unreadable.
    return v if v == b"" else cid(v, n)


def _pk(v: Any, n: str) -> bytes:
    return bstr(v, n, size=32)


def _kinds(v: Any, n: str) -> list[str]:
    return [text(k, MAX_KIND_LEN, n, nonempty=True) for k in list_of(v, MAX_QUERY_KINDS, n)]


def _cids(v: Any, n: str) -> list[bytes]:
    return [cid(x, n) for x in list_of(v, MAX_LIST_JOBS, n)]


def _spec_bytes(v: Any, n: str) -> bytes:
    return bstr(v, n, max_len=SPEC_MAX_SIZE)


def _meta(v: Any, n: str) -> dict[str, Any]:
    if not isinstance(v, dict) or len(v) > MAX_META:
        raise WireError(Reason.BAD_FIELD, "%s must be a map of at most %d" % (n, MAX_META))
    return {text(k, 32, n, nonempty=True): _param_value(x, n) for k, x in v.items()}


def _bool(v: Any, n: str) -> bool:
    return boolean(v, n)


SCHEMAS: dict[str, dict[str, Any]] = {
    T_OFFER: {"net": _net, "spec": _spec_bytes, "ts": _u},
    T_QUERY: {"net": _net, "kinds": _kinds, "class": _t, "ts": _u},
    T_LIST: {"net": _net, "jobs": _cids, "ts": _u},
    T_GET: {"net": _net, "job": cid},
    T_CLAIM: {"net": _net, "job": cid, "price": _u, "ts": _u},
    T_LEASE: {"net": _net, "job": cid, "worker": _pk, "lease": _u, "expires": _u, "price": _u},
    T_HEARTBEAT: {"net": _net, "job": cid, "lease": _u, "progress": _u, "ts": _u},
    T_RESULT: {"net": _net, "job": cid, "lease": _u, "output": cid, "size": _u, "proof": _meta,
               "meta": _meta, "ts": _u},
    T_VERDICT: {"net": _net, "job": cid, "lease": _u, "worker": _pk, "output": cid,
                "accepted": _bool, "reason": _t, "ts": _u},
    T_REFUSE: {"net": _net, "job": _job_or_empty, "reason": _t,
               "detail": lambda v, n: text(v, MAX_DETAIL_LEN, n),
               "ts": _u},
    T_PROBE: {"net": _net, "job": cid, "lease": _u, "index": _u, "state": _bool, "ts": _u},
    T_ENTRY: {"net": _net, "job": cid, "lease": _u, "index": _u,
              "entry": lambda v, n: bstr(v, n, size=41),
              "path": lambda v, n: hashes(v, MAX_ENTRY_PATH, n),
              "state": _job_or_empty, "ts": _u},
}


def seal_message(identity: Identity, t: str, body: dict[str, Any]) -> bytes:
    check_body(t, body)
    return envelope.seal(identity, t, VERSION, body)


def check_body(t: str, body: Any) -> dict[str, Any]:
    schema = SCHEMAS[t]
    m = map_exact(body, frozenset(schema), t)
    return {k: schema[k](m[k], f"{t}.{k}") for k in schema}


def open_message(data: bytes, *, net: str, expected: set[str] | None = None,
                 verified: envelope.SignatureCache | None = None) -> Message:
    """Decode and check one stream message (envelope, type, schema, network)."""
    env: Envelope = envelope.open_envelope(data, verified=verified)
    if env.t not in SCHEMAS or (expected is not None and env.t not in expected):
        raise WireError(Reason.UNKNOWN_TYPE, "unexpected %s" % env.t)
    body = check_body(env.t, env.body)
    if body["net"] != net:
        raise WireError(Reason.WRONG_NETWORK, str(body["net"]))
    return Message(t=env.t, body=body, signer=env.signer, raw=env.raw)
