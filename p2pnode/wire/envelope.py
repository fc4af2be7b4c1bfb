"""The signed envelope shared by every p2pnode protocol object (spec/01-encoding.md §3).

    SignedEnvelope = {"t": type, "v": version, "b": body, "k": signer key, "s": signature}

The signature is Ed25519 over ``signing_input(t, v, b)``:

    "p2pnode/v1/" || t || "/" || decimal(v) || 0x00 || canonical_cbor(b)

The type and version are inside the signed bytes (domain separation), so a signature made
for one message type or version can never be replayed as another.

Each side encodes nothing twice: ``seal`` encodes the body once and writes the envelope
around those bytes; ``open_envelope`` verifies over the bytes of ``b`` as they stand in the
input, which the strict decoder has just shown to be the body's canonical encoding (ENV-7).
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from p2pnode.identity import (
    ED25519_PUBLIC_KEY_SIZE,
    ED25519_SIGNATURE_SIZE,
    Identity,
    peer_id_bytes,
    peer_id_str,
    verify,
)
from p2pnode.wire import cbor
from p2pnode.wire.cid import cid_of
from p2pnode.wire.reasons import Reason, WireError

DOMAIN = b"p2pnode/v1/"
ENVELOPE_KEYS = frozenset({"t", "v", "b", "k", "s"})
MAX_TYPE_LEN = 32

# Per-type size limits of the encoded envelope, bytes (spec 01 §4), and the versions each
# type is understood in. Each message module registers its types at import; unknown types
# are refused before their body is looked at.
SIZE_LIMITS: dict[str, int] = {}
VERSIONS: dict[str, frozenset[int]] = {}
# Types that only ever arrive on a channel of their own (a GossipSub topic): their limit
# does not raise the bound on decoding an envelope of no expected type (ENV-6).
OWN_CHANNEL: set[str] = set()


_TYPE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


def register_type(t: str, versions: set[int], size_limit: int, *,
                  own_channel: bool = False) -> None:
    """Declare a message type this implementation understands (idempotent).

    Names are lowercase letters, digits, '.', '_' and '-': never '/' or NUL, which keeps
    the signing input's header unambiguous (ENV-2)."""
    if not 0 < len(t.encode()) <= MAX_TYPE_LEN or not _TYPE_NAME.fullmatch(t):
        raise ValueError(f"type name {t!r} must be 1..{MAX_TYPE_LEN} of [a-z0-9._-]")
    SIZE_LIMITS[t] = size_limit
    VERSIONS[t] = frozenset(versions)
    if own_channel:
        OWN_CHANNEL.add(t)


# The heads of the envelope's first three entries (spec 01 §3.1: keys in the order b, k, s,
# t, v): a map of five, the key "b"; the key "k" and a 32-byte string; "s" and 64 bytes.
_HEAD_B = b"\xa5\x61b"
_HEAD_K = b"\x61k\x58\x20"
_HEAD_S = b"\x61s\x58\x40"

# Verdicts kept by a SignatureCache (spec 01 §3.2, ENV-12).
SIGNATURE_CACHE_ENTRIES = 8192


class SignatureCache:
    """The signature verdicts of envelopes already checked, keyed by the SHA-256 of their
    bytes (ENV-12): a duplicate costs a hash, never a second Ed25519 verification.

    The key covers every byte of the envelope, including ``k`` and ``s``, so the verdict
    of a key is the verdict of any copy of those bytes. Failures are kept too: a forged
    message flooded many times costs one verification. Bounded, least recently used out.
    """

    def __init__(self, max_entries: int = SIGNATURE_CACHE_ENTRIES) -> None:
        self.max_entries = max_entries
        self._verdicts: OrderedDict[bytes, bool] = OrderedDict()
        self.hits = 0
        self.verifications = 0

    def check(self, data: bytes, k: bytes, signed: bytes, s: bytes) -> bool:
        """Whether ``s`` is ``k``'s signature of ``signed`` (the signing input of ``data``),
        verifying only if these envelope bytes were not checked before."""
        return self.verdict(data, lambda: verify(k, signed, s))

    def verdict(self, data: bytes, verify_once: Callable[[], bool]) -> bool:
        """The verdict held for ``data``, or ``verify_once()``'s, then held. ``data`` must
        determine the verdict: every byte the verification reads is in it."""
        digest = hashlib.sha256(data).digest()
        held = self._verdicts.get(digest)
        if held is not None:
            self._verdicts.move_to_end(digest)
            self.hits += 1
            return held
        ok = verify_once()
        self.verifications += 1
        self._verdicts[digest] = ok
        if len(self._verdicts) > self.max_entries:
            self._verdicts.popitem(last=False)
        return ok

    def __len__(self) -> int:
        return len(self._verdicts)


def signing_input(t: str, v: int, body_bytes: bytes) -> bytes:
    return DOMAIN + t.encode("utf-8") + b"/" + str(v).encode("ascii") + b"\x00" + body_bytes


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded and signature-checked envelope; ``raw`` is its canonical encoding."""

    t: str
    v: int
    body: Any
    signer: bytes
    sig: bytes
    raw: bytes

    @property
    def signer_peer_id(self) -> str:
        return peer_id_str(self.signer)

    @property
    def signer_peer_id_bytes(self) -> bytes:
        return peer_id_bytes(self.signer)

    @property
    def content_id(self) -> bytes:
        return cid_of(self.raw)


def _envelope_bytes(t: str, v: int, body_bytes: bytes, k: bytes, sig: bytes) -> bytes:
    """The canonical encoding of ``{"t": t, "v": v, "b": body, "k": k, "s": sig}`` from the
    body's encoding: the five keys are one-byte text strings, so ENC-6 orders them b, k, s,
    t, v, and each value is written as ``cbor.encode`` would write it."""
    return b"".join((_HEAD_B, body_bytes, _HEAD_K, k, _HEAD_S, sig,
                     b"\x61t", cbor.encode(t), b"\x61v", cbor.encode(v)))


def seal(identity: Identity, t: str, v: int, body: Any) -> bytes:
    """Sign ``body`` as a message of type ``t`` version ``v``; return the envelope bytes.

    The body is encoded once: its bytes are both the end of the signing input and the value
    of ``b`` in the envelope, where it sits one level down (ENC-11)."""
    body_bytes = cbor.encode(body, depth=1)
    sig = identity.sign(signing_input(t, v, body_bytes))
    return _envelope_bytes(t, v, body_bytes, identity.public_key, sig)


def _body_bytes(data: bytes, t: str, v: int) -> bytes:
    """The bytes of ``b`` inside envelope bytes ``data`` that the strict decoder accepted
    with exactly the five keys and with ``t`` and ``v`` as given (ENV-7: a slice, no
    re-encoding). Canonical order puts ``b`` first, right after the map head and its key,
    and the other four values have lengths fixed by ``k``, ``s``, ``t`` and ``v``."""
    tail = (len(_HEAD_K) + ED25519_PUBLIC_KEY_SIZE + len(_HEAD_S) + ED25519_SIGNATURE_SIZE
            + 2 + len(cbor.encode(t)) + 2 + len(cbor.encode(v)))
    return data[len(_HEAD_B) : len(data) - tail]


def _decode(data: bytes, expected_type: str | None) -> tuple[Any, str, int, bytes, bytes, bytes]:
    """Everything :func:`open_envelope` checks but the signature: (body, t, v, k, s, data)."""
    if expected_type is not None and expected_type in SIZE_LIMITS:
        limit = SIZE_LIMITS[expected_type]
    else:
        limit = max((n for t, n in SIZE_LIMITS.items() if t not in OWN_CHANNEL),
                    default=cbor.MAX_MESSAGE_SIZE)
    if len(data) > limit:
        raise WireError(Reason.TOO_LARGE, "%d bytes > limit %d" % (len(data), limit))
    data = bytes(data)
    obj = cbor.decode(data, max_size=limit)
    if not isinstance(obj, dict):
        raise WireError(Reason.BAD_ENVELOPE, "an envelope is a map")
    keys = set(obj)
    if keys - ENVELOPE_KEYS:
        raise WireError(Reason.UNKNOWN_FIELD, "envelope fields %s" % sorted(map(str, keys)))
    if keys != ENVELOPE_KEYS:
        raise WireError(Reason.BAD_ENVELOPE, "missing %s" % sorted(ENVELOPE_KEYS - keys))
    t, v, k, s = obj["t"], obj["v"], obj["k"], obj["s"]
    if not isinstance(t, str) or not 0 < len(t.encode("utf-8")) <= MAX_TYPE_LEN:
        raise WireError(Reason.BAD_ENVELOPE, "t must be a short text string")
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise WireError(Reason.BAD_ENVELOPE, "v must be an unsigned integer")
    if not isinstance(k, bytes) or len(k) != ED25519_PUBLIC_KEY_SIZE:
        raise WireError(Reason.BAD_KEY, "k must be a 32-byte Ed25519 public key")
    if not isinstance(s, bytes) or len(s) != ED25519_SIGNATURE_SIZE:
        raise WireError(Reason.BAD_SIGNATURE, "s must be 64 bytes")
    if t not in VERSIONS or (expected_type is not None and t != expected_type):
        raise WireError(Reason.UNKNOWN_TYPE, t)
    if v not in VERSIONS[t]:
        raise WireError(Reason.UNSUPPORTED_VERSION, "%s v%d" % (t, v))
    if len(data) > SIZE_LIMITS[t]:
        raise WireError(Reason.TOO_LARGE, "%d bytes > limit %d" % (len(data), SIZE_LIMITS[t]))
    return obj["b"], t, v, k, s, data


def open_envelope(data: bytes, expected_type: str | None = None, *,
                  verified: SignatureCache | None = None) -> Envelope:
    """Decode, structure-check and signature-check an envelope.

    Checks run cheapest first (size, codec, structure, type, version, signature) so that
    garbage costs little; raises :class:`WireError` with the reason of the first failure.
    With ``verified``, envelope bytes whose signature was checked before are not checked
    again (ENV-12).
    """
    body, t, v, k, s, data = _decode(data, expected_type)
    signed = signing_input(t, v, _body_bytes(data, t, v))
    ok = verify(k, signed, s) if verified is None else verified.check(data, k, signed, s)
    if not ok:
        raise WireError(Reason.BAD_SIGNATURE)
    return Envelope(t=t, v=v, body=body, signer=k, sig=s, raw=data)


def signer_of(data: bytes, t: str, v: int) -> bytes:
    """The ``k`` of envelope bytes ``data`` of type ``t`` version ``v``, read from its fixed
    place without decoding the body or checking the signature (ENV-7's layout: the body
    first, then ``k``, ``s``, ``t`` and ``v``, whose lengths are fixed). Sound only where
    the bytes are bound by a hash that a checked signature covers: the ledger matches a
    receipt's signer to the job its receipt names (spec 07 LGR-2)."""
    tail = b"\x61t" + cbor.encode(t) + b"\x61v" + cbor.encode(v)
    n_tail = len(_HEAD_K) + ED25519_PUBLIC_KEY_SIZE + len(_HEAD_S) + ED25519_SIGNATURE_SIZE \
        + len(tail)
    limit = SIZE_LIMITS.get(t, cbor.MAX_MESSAGE_SIZE)
    if len(data) > limit:
        raise WireError(Reason.TOO_LARGE, "%d bytes > limit %d" % (len(data), limit))
    if len(data) < len(_HEAD_B) + 1 + n_tail or not data.startswith(_HEAD_B) or \
            not data.endswith(tail):
        raise WireError(Reason.BAD_ENVELOPE, "not a %s v%d envelope" % (t, v))
    at = len(data) - n_tail
    if data[at : at + len(_HEAD_K)] != _HEAD_K:
        raise WireError(Reason.BAD_ENVELOPE, "not a %s v%d envelope" % (t, v))
    k = data[at + len(_HEAD_K) : at + len(_HEAD_K) + ED25519_PUBLIC_KEY_SIZE]
    at += len(_HEAD_K) + ED25519_PUBLIC_KEY_SIZE
    if data[at : at + len(_HEAD_S)] != _HEAD_S:
        raise WireError(Reason.BAD_ENVELOPE, "not a %s v%d envelope" % (t, v))
    return bytes(k)
