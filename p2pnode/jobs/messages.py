"""The stream messages of ``/job/1`` as values (spec 04 §2.3).

Each message is a frozen dataclass named like its CDDL rule; ``seal`` signs it and
:func:`decode` opens one (JOB-9: envelope, type, body, network) into the dataclass. The
field checks themselves are the table ``p2pnode.jobs.model.SCHEMAS``, so there is one
definition of every body.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from p2pnode.identity import Identity
from p2pnode.jobs.model import (
    MAX_DETAIL_LEN,
    T_CLAIM,
    T_ENTRY,
    T_GET,
    T_HEARTBEAT,
    T_LEASE,
    T_LIST,
    T_OFFER,
    T_PROBE,
    T_QUERY,
    T_REFUSE,
    T_RESULT,
    T_VERDICT,
    open_message,
    seal_message,
)
from p2pnode.wire.cid import CID_SIZE
from p2pnode.wire.envelope import SignatureCache
from p2pnode.wire.reasons import Reason, WireError

NO_OUTPUT = b"\x12\x20" + bytes(32)  # the content id a verdict names when there is none


@dataclass(frozen=True, slots=True)
class _Body:
    T: ClassVar[str] = ""
    # CDDL keys that are Python keywords
    _RENAMED: ClassVar[dict[str, str]] = {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[self._RENAMED.get(f.name, f.name)] = list(v) if isinstance(v, tuple) else v
        return out

    def seal(self, identity: Identity) -> bytes:
        return seal_message(identity, self.T, self.body())

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Any:
        back = {v: k for k, v in cls._RENAMED.items()}
        kw = {back.get(k, k): (tuple(v) if isinstance(v, list) else v) for k, v in body.items()}
        return cls(**kw)


@dataclass(frozen=True, slots=True)
class JobOffer(_Body):
    T: ClassVar[str] = T_OFFER
    net: str
    spec: bytes
    ts: int


@dataclass(frozen=True, slots=True)
class JobQuery(_Body):
    T: ClassVar[str] = T_QUERY
    _RENAMED: ClassVar[dict[str, str]] = {"resource_class": "class"}
    net: str
    kinds: tuple[str, ...]
    resource_class: str
    ts: int


@dataclass(frozen=True, slots=True)
class JobList(_Body):
    T: ClassVar[str] = T_LIST
    net: str
    jobs: tuple[bytes, ...]
    ts: int


@dataclass(frozen=True, slots=True)
class JobGet(_Body):
    T: ClassVar[str] = T_GET
    net: str
    job: bytes


@dataclass(frozen=True, slots=True)
class JobClaim(_Body):
    T: ClassVar[str] = T_CLAIM
    net: str
    job: bytes
    price: int
    ts: int


@dataclass(frozen=True, slots=True)
class JobLease(_Body):
    T: ClassVar[str] = T_LEASE
    net: str
    job: bytes
    worker: bytes
    lease: int
    expires: int
    price: int


@dataclass(frozen=True, slots=True)
class JobHeartbeat(_Body):
    T: ClassVar[str] = T_HEARTBEAT
    net: str
    job: bytes
    lease: int
    progress: int
    ts: int


@dataclass(frozen=True, slots=True)
class JobResult(_Body):
    T: ClassVar[str] = T_RESULT
    net: str
    job: bytes
    lease: int
    output: bytes
    size: int
    ts: int
    proof: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def compute_ms(self) -> int:
        v = self.meta.get("elapsed_ms", 0)
        return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


@dataclass(frozen=True, slots=True)
class JobVerdict(_Body):
    T: ClassVar[str] = T_VERDICT
    net: str
    job: bytes
    lease: int
    worker: bytes
    output: bytes
    accepted: bool
    reason: str
    ts: int


@dataclass(frozen=True, slots=True)
class JobRefuse(_Body):
    T: ClassVar[str] = T_REFUSE
    net: str
    job: bytes
    reason: str
    detail: str
    ts: int

    @classmethod
    def make(cls, net: str, job: bytes, reason: Reason, detail: str, ts: int) -> JobRefuse:
        """A refusal with its detail cut to the byte limit on a character boundary."""
        short = detail.encode()[:MAX_DETAIL_LEN].decode("utf-8", "ignore")
        return cls(net=net, job=job if len(job) == CID_SIZE else b"", reason=reason.value,
                   detail=short, ts=ts)


@dataclass(frozen=True, slots=True)
class JobProbe(_Body):
    """A dispute's referee (the job's requester) asks a worker for entry ``index`` of the
    checkpoint chain its result for ``lease`` committed to, and with ``state`` for the
    state at that entry too (spec 06 DSP-3)."""

    T: ClassVar[str] = T_PROBE
    net: str
    job: bytes
    lease: int
    index: int
    state: bool
    ts: int


@dataclass(frozen=True, slots=True)
class JobEntry(_Body):
    """The answer to a :class:`JobProbe`: the 41-byte entry, its audit path and, when
    asked, the content id of the state's blob (else empty)."""

    T: ClassVar[str] = T_ENTRY
    net: str
    job: bytes
    lease: int
    index: int
    entry: bytes
    path: tuple[bytes, ...]
    state: bytes
    ts: int


StreamMessage = (JobOffer | JobQuery | JobList | JobGet | JobClaim | JobLease | JobHeartbeat
                 | JobResult | JobVerdict | JobRefuse | JobProbe | JobEntry)
CLASSES: dict[str, type[Any]] = {c.T: c for c in (
    JobOffer, JobQuery, JobList, JobGet, JobClaim, JobLease, JobHeartbeat, JobResult,
    JobVerdict, JobRefuse, JobProbe, JobEntry)}


@dataclass(frozen=True, slots=True)
class Received:
    """A decoded stream message with its signer (the envelope's key) and its bytes."""

    msg: StreamMessage
    signer: bytes
    raw: bytes = field(repr=False, default=b"")


def decode(data: bytes, *, net: str, expected: set[str] | None = None,
           verified: SignatureCache | None = None) -> Received:
    """Open one stream message (JOB-9) into its dataclass; raises WireError."""
    m = open_message(data, net=net, expected=expected, verified=verified)
    return Received(msg=CLASSES[m.t].from_body(m.body), signer=m.signer, raw=m.raw)


# -- the first message of an exchange (XCH-2 .. XCH-5) ---------------------------------------

# Which side of the market takes each first message (XCH-4); any other is refused.
REQUESTER_SIDE = frozenset({T_QUERY, T_GET, T_CLAIM, T_HEARTBEAT, T_RESULT})
WORKER_SIDE = frozenset({T_OFFER, T_PROBE})


@dataclass(frozen=True, slots=True)
class Route:
    """Where an inbound exchange goes: ``"requester"``, ``"worker"`` or ``"refuse"``
    (opened and authenticated, but not a first message: refused with ``unknown_type``)."""

    side: str
    received: Received


@dataclass(frozen=True, slots=True)
class Drop:
    """Counted under ``reason`` and closed with no answer: no signature for garbage."""

    reason: Reason


def route(first: bytes, remote: bytes, *, net: str,
          verified: SignatureCache | None = None) -> Route | Drop:
    """XCH-2, XCH-3, XCH-4: open the first message; it must be signed by the stream's
    Noise-authenticated peer ``remote``."""
    try:
        rec = decode(first, net=net, verified=verified)
    except WireError as e:
        return Drop(e.reason)
    if rec.signer != remote:
        return Drop(Reason.SIGNER_MISMATCH)
    t = rec.msg.T
    side = "requester" if t in REQUESTER_SIDE else "worker" if t in WORKER_SIDE else "refuse"
    return Route(side, rec)
