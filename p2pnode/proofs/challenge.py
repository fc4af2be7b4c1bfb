"""Capability challenges and attestations (spec 06 §6, CHL-1..CHL-6). Pure.

A node checks another's advertised capability by giving it a matmul job sized to the
hardware its ad claims, with a deadline, addressed to it alone (the job's ``verify`` map
names the target, CHL-1); the result is judged by Freivalds like any other (PRF-5). The
challenger then signs an *attestation* and gossips it on ``/p2pnode/<net>/attest/1``:

    caps.attest v1, signed by the challenger:
      net      the network
      subject  the challenged node's Ed25519 key
      seq      the seq of the subject's ad that was challenged
      ok       whether a verified result came back in time
      n        the challenge's matrix size
      ms       how long it took, submit to verdict (0 when it failed)
      ts       when it was decided, ms

Every node keeps, per subject, the latest attestation of each challenger (bounded), and
calls a subject *attested*, *failed* or *never* by its own challenge (CHL-5: others'
attestations are shown, not trusted); offers go to attested workers first and to failed
ones last (CHL-6).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

from p2pnode.caps.model import CapabilityAd
from p2pnode.jobs.model import MAX_CREATED_SKEW_MS, MAX_NET_LEN
from p2pnode.wire import envelope
from p2pnode.wire.body import SealedBody
from p2pnode.wire.fields import boolean, bstr, map_exact, text, uint
from p2pnode.wire.reasons import Reason, WireError

T_ATTEST = "caps.attest"
VERSION = 1
ATTEST_MAX_SIZE = 512
TARGET_KEY = "target"  # the job's verify map: the one worker a challenge is for (CHL-1)
# An attestation counts for this long after its ts; older ones are refused (CHL-4).
ATTEST_TTL_MS = 6 * 3600 * 1000
# Subjects, and challengers per subject, a node remembers (CHL-5).
MAX_SUBJECTS = 4096
MAX_CHALLENGERS = 8
# CHL-2: a challenge's size by the hardware claimed, and its deadline.
CHALLENGE_DEADLINE_S = 60

envelope.register_type(T_ATTEST, {VERSION}, ATTEST_MAX_SIZE, own_channel=True)

_KEYS = frozenset({"net", "subject", "seq", "ok", "n", "ms", "ts"})


def challenge_n(cores: int, gpus: int) -> int:
    """CHL-2: the size of a challenge for a node that claims ``cores`` and ``gpus``: about
    a second of work for what it claims (a float64 BLAS does ~10 GFLOPS a core)."""
    if gpus > 0:
        return 2048
    if cores >= 32:
        return 1024
    if cores >= 8:
        return 512
    return 256


@dataclass(frozen=True, slots=True)
class Attestation(SealedBody):
    T: ClassVar[str] = T_ATTEST
    V: ClassVar[int] = VERSION
    net: str
    subject: bytes
    seq: int
    ok: bool
    n: int
    ms: int
    ts: int


@dataclass(frozen=True, slots=True)
class Signed:
    attestation: Attestation
    challenger: bytes
    raw: bytes


def open_attestation(data: bytes, *, net: str, now_ms: int,
                     verified: envelope.SignatureCache | None = None) -> Signed:
    """CHL-4: the attestation in ``data``; raises WireError with the reason."""
    env = envelope.open_envelope(data, expected_type=T_ATTEST, verified=verified)
    m = map_exact(env.body, _KEYS, T_ATTEST)
    a = Attestation(net=text(m["net"], MAX_NET_LEN, "net", nonempty=True),
                    subject=bstr(m["subject"], "subject", size=32), seq=uint(m["seq"], "seq"),
                    ok=boolean(m["ok"], "ok"), n=uint(m["n"], "n"), ms=uint(m["ms"], "ms"),
                    ts=uint(m["ts"], "ts"))
    if a.net != net:
        raise WireError(Reason.WRONG_NETWORK, a.net)
    if a.subject == env.signer:
        raise WireError(Reason.SIGNER_MISMATCH, "a node cannot attest itself")
    if a.ts > now_ms + MAX_CREATED_SKEW_MS:
        raise WireError(Reason.CLOCK_SKEW, "an attestation from the future")
    if a.ts + ATTEST_TTL_MS <= now_ms:
        raise WireError(Reason.EXPIRED, "an attestation past its TTL")
    return Signed(a, env.signer, env.raw)


class AttestTable:
    """Per subject, the latest attestation of each challenger (CHL-5), bounded."""

    def __init__(self, max_subjects: int = MAX_SUBJECTS,
                 max_challengers: int = MAX_CHALLENGERS) -> None:
        self.max_subjects = max_subjects
        self.max_challengers = max_challengers
        self._by: dict[bytes, dict[bytes, Attestation]] = {}

    def __len__(self) -> int:
        return len(self._by)

    def add(self, s: Signed) -> bool:
        """Keep ``s`` if it is the newest of its challenger for its subject; returns
        whether it changed anything (an older or equal one does not: not relayed)."""
        a = s.attestation
        held = self._by.setdefault(a.subject, {})
        old = held.get(s.challenger)
        if old is not None and old.ts >= a.ts:
            return False
        held[s.challenger] = a
        while len(held) > self.max_challengers:  # the oldest challenger's word goes
            del held[min(held, key=lambda k: held[k].ts)]
        while len(self._by) > self.max_subjects:
            del self._by[min(self._by, key=lambda k: max(x.ts for x in self._by[k].values()))]
        return True

    def status(self, subject: bytes, now_ms: int, me: bytes) -> str:
        """CHL-5: what this node's own live attestation of ``subject`` says: "attested",
        "failed" or "never". Others' attestations are shown, never trusted: keys are free,
        and a stranger's "failed" must not demote an honest worker."""
        a = self._by.get(subject, {}).get(me)
        if a is None or a.ts + ATTEST_TTL_MS <= now_ms:
            return "never"
        return "attested" if a.ok else "failed"

    def counts(self, subject: bytes, now_ms: int) -> tuple[int, int]:
        """Live attestations of ``subject`` by anyone: (ok, failed)."""
        live = [a for a in self._by.get(subject, {}).values()
                if a.ts + ATTEST_TTL_MS > now_ms]
        return sum(a.ok for a in live), sum(not a.ok for a in live)

    def of(self, subject: bytes) -> list[Attestation]:
        return list(self._by.get(subject, {}).values())


def offer_rank(status: str) -> int:
    """CHL-6: attested workers are offered jobs first, failed ones last."""
    return {"attested": 0, "never": 1, "failed": 2}[status]


def pick_subject(ads: Iterable[CapabilityAd], me: bytes, status: Callable[[bytes], str],
                 tried: dict[bytes, int]) -> tuple[bytes, int, int] | None:
    """CHL-3: the next ad to challenge, as (subject key, ad seq, challenge size): another
    node's ad claiming matmul that this node holds no live attestation of and has not
    challenged at this seq (one try per seq: a new ad, a new chance)."""
    for ad in ads:
        key = ad.signer
        if key == me or "matmul" not in ad.kinds:
            continue
        if status(key) != "never" or tried.get(key) == ad.seq:
            continue
        return key, ad.seq, challenge_n(ad.cores, len(ad.gpus))
    return None
