"""Job discovery through the Kad-DHT (spec/04-jobs.md §3.1, §3.2), sans-IO.

- Value records: key ``/p2pjob/<hex job id>``, value the JobSpec envelope. A record is valid
  when the value opens as a ``job.spec`` of our network, its content id equals the id in the
  key, its deadline has not passed (the DHT keeps no TTL of its own) and it was not created
  in the future.
- Provider records: a requester with open jobs provides the key
  ``sha256("p2pnode/<net>/open/<kind>/<class>/<bucket>")`` (a sha2-256 multihash, hex) for
  the current time bucket, and again when the bucket turns. A worker looks up the keys of
  the kinds and classes it can serve, for the current and the previous bucket.
"""

from __future__ import annotations

import hashlib

from p2pnode.jobs.model import SignedJob, created_in_future
from p2pnode.wire.envelope import SignatureCache
from p2pnode.wire.reasons import ACCEPT, Reason, Reject, Verdict, WireError

RECORD_NAMESPACE = "p2pjob"
BUCKET_MS = 60_000


def job_record_key(job_id: bytes) -> str:
    return f"/{RECORD_NAMESPACE}/{job_id.hex()}"


def job_id_from_key(key: str) -> bytes:
    prefix = f"/{RECORD_NAMESPACE}/"
    if not key.startswith(prefix):
        raise WireError(Reason.BAD_FIELD, "not a job record key")
    try:
        job_id = bytes.fromhex(key[len(prefix):])
    except ValueError as e:
        raise WireError(Reason.BAD_FIELD, "job record key is not hex") from e
    if job_id.hex() != key[len(prefix):]:  # one key per record: lowercase, no spaces
        raise WireError(Reason.BAD_FIELD, "job record key is not lowercase hex")
    return job_id


def validate_job_record(key: str, value: bytes, *, net: str, now_ms: int,
                        verified: SignatureCache | None = None
                        ) -> tuple[Verdict, SignedJob | None]:
    """Rules DHT-1 to DHT-5, in the order of DHT-6."""
    try:
        job_id = job_id_from_key(key)  # DHT-1
        job = SignedJob.open(value, verified=verified)  # DHT-2 (envelope, signature, schema)
    except WireError as e:
        return Reject(e.reason, e.detail), None
    if job.id != job_id:  # DHT-3
        return Reject(Reason.ID_MISMATCH, "record id differs from content"), None
    if job.spec.net != net:  # DHT-4
        return Reject(Reason.WRONG_NETWORK, job.spec.net), None
    if job.spec.deadline <= now_ms:  # DHT-5
        return Reject(Reason.EXPIRED), None
    if created_in_future(job.spec, now_ms):  # DHT-5, JOB-11
        return Reject(Reason.CLOCK_SKEW, "created after now + the clock skew"), None
    return ACCEPT, job


def bucket_of(now_ms: int) -> int:
    return now_ms // BUCKET_MS


def discovery_key(net: str, kind: str, resource_class: str, bucket: int) -> str:
    digest = hashlib.sha256(f"p2pnode/{net}/open/{kind}/{resource_class}/{bucket}".encode())
    return (b"\x12\x20" + digest.digest()).hex()


def lookup_keys(net: str, kinds: list[str], classes: tuple[str, ...],
                now_ms: int) -> list[str]:
    b = bucket_of(now_ms)
    return [discovery_key(net, k, c, bb) for k in sorted(kinds) for c in classes
            for bb in (b, b - 1)]


# DHT-10: each lookup round that finds no provider doubles the wait before the next, up to
# DISCOVERY_BACKOFF times the configured interval; a round that finds one waits the
# interval again. An idle network of N workers then costs N lookups per 30 s, not per 5 s.
DISCOVERY_BACKOFF = 6


def discovery_wait_s(interval_s: float, empty_rounds: int) -> float:
    """The wait (before jitter) after ``empty_rounds`` rounds in a row found no provider."""
    factor: int = min(1 << min(empty_rounds, 16), DISCOVERY_BACKOFF)
    return interval_s * factor
