"""Reason codes for rejected or ignored input (spec/01-encoding.md §Reason codes).

One enum shared by the codec, validators, metrics labels, logs and conformance vectors.
The string value is the wire/vector spelling and never changes once published.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    # codec (spec 01)
    MALFORMED = "malformed"
    TRUNCATED = "truncated"
    TRAILING_BYTES = "trailing_bytes"
    NON_CANONICAL = "non_canonical"
    INDEFINITE_LENGTH = "indefinite_length"
    DUPLICATE_KEY = "duplicate_key"
    FLOAT_FORBIDDEN = "float_forbidden"
    UNSUPPORTED_TYPE = "unsupported_type"
    TOO_LARGE = "too_large"
    TOO_DEEP = "too_deep"
    # envelope (spec 01)
    BAD_ENVELOPE = "bad_envelope"
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    BAD_KEY = "bad_key"
    BAD_SIGNATURE = "bad_signature"
    # message bodies (spec 02 onwards)
    BAD_FIELD = "bad_field"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_NETWORK = "wrong_network"
    SIGNER_MISMATCH = "signer_mismatch"
    STALE_SEQ = "stale_seq"
    CLOCK_SKEW = "clock_skew"
    EXPIRED = "expired"
    RATE_LIMITED = "rate_limited"
    # jobs and content (spec 04, spec 05)
    HASH_MISMATCH = "hash_mismatch"
    NOT_FOUND = "not_found"
    ID_MISMATCH = "id_mismatch"
    UNKNOWN_JOB = "unknown_job"
    NOT_LEASEHOLDER = "not_leaseholder"
    LEASE_EXPIRED = "lease_expired"
    DEADLINE_PASSED = "deadline_passed"
    REQUIREMENTS_UNMET = "requirements_unmet"
    BUSY = "busy"
    BAD_STATE = "bad_state"
    EXEC_FAILED = "exec_failed"
    LIMIT_EXCEEDED = "limit_exceeded"
    # proofs (spec 06)
    BAD_PROOF = "bad_proof"
    WRONG_RESULT = "wrong_result"
    BARRED = "barred"
    # ledger (spec 07)
    DUPLICATE = "duplicate"


class WireError(ValueError):
    """Raised by decoders; carries the reason code that validators report."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Accept:
    """Validation outcome: deliver and relay."""

    @property
    def ok(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Reject:
    """Validation outcome: drop, do not relay; the sender misbehaved."""

    reason: Reason
    detail: str = ""

    @property
    def ok(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class Ignore:
    """Validation outcome: drop, do not relay; no fault of the sender (e.g. already known)."""

    reason: Reason
    detail: str = ""

    @property
    def ok(self) -> bool:
        return False


Verdict = Accept | Reject | Ignore
ACCEPT = Accept()
