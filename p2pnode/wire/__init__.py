"""Bytes <-> typed messages: canonical CBOR, signed envelopes, reason codes (spec 01)."""

from p2pnode.wire.reasons import ACCEPT, Accept, Ignore, Reason, Reject, Verdict, WireError

__all__ = ["ACCEPT", "Accept", "Ignore", "Reason", "Reject", "Verdict", "WireError"]
