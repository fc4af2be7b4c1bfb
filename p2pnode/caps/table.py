"""Capability ad validation and the live capability table (spec/02-capabilities.md §3-4).

Pure: ``now`` is passed in, nothing here reads a clock or a socket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from p2pnode.caps.model import AD_TYPE, CapabilityAd
from p2pnode.identity import peer_id_str
from p2pnode.wire import envelope
from p2pnode.wire.reasons import ACCEPT, Ignore, Reason, Reject, Verdict, WireError

# spec 02 §8, parameters
MAX_CLOCK_SKEW_MS = 30_000
MAX_TABLE_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class ValidatedAd:
    ad: CapabilityAd
    peer_id: str
    raw: bytes = b""
    """The envelope as received, served again in held-ads answers (SYNC-3)."""


def validate_ad(
    data: bytes,
    *,
    net: str,
    now_ms: int,
    source: bytes | None,
    held_seq: Callable[[str], int | None],
    max_skew_ms: int = MAX_CLOCK_SKEW_MS,
    verified: envelope.SignatureCache | None = None,
    synced: bool = False,
) -> tuple[Verdict, ValidatedAd | None]:
    """Apply rules CAPS-1..CAPS-8 of spec 02 §3 to one gossiped ad.

    ``source`` is the binary PeerID of the pubsub message's originator (``None`` when the
    ad did not arrive by gossip); ``held_seq(peer_id)`` gives the seq of the ad already
    held for a signer, or None. ``synced`` marks an ad from a held-ads answer (spec 02 §7,
    SYNC-5): it was stored by the answering peer a while ago, so only a ``ts`` in the
    future is checked against the skew bound.
    """
    try:
        env = envelope.open_envelope(data, expected_type=AD_TYPE,  # CAPS-1..3
                                     verified=verified)
        ad = CapabilityAd.from_body(env.body, signer=env.signer)  # CAPS-4
    except WireError as e:
        return Reject(e.reason, e.detail), None
    if ad.net != net:  # CAPS-5
        return Reject(Reason.WRONG_NETWORK, ad.net), None
    if source is not None and env.signer_peer_id_bytes != source:  # CAPS-6
        return Reject(Reason.SIGNER_MISMATCH), None
    if ad.expires_at_ms() <= now_ms:  # CAPS-7
        return Reject(Reason.EXPIRED), None
    skew = ad.ts - now_ms if synced else abs(ad.ts - now_ms)
    if skew > max_skew_ms:
        return Reject(Reason.CLOCK_SKEW, "ts %d vs now %d" % (ad.ts, now_ms)), None
    peer_id = peer_id_str(env.signer)
    held = held_seq(peer_id)
    if held is not None and ad.seq <= held:  # CAPS-8
        # Ignore, not reject: gossip can honestly deliver an older ad after a newer one
        # (an IWANT answered late, a replay to a new peer).
        return Ignore(Reason.STALE_SEQ, "seq %d <= held %d" % (ad.seq, held)), None
    return ACCEPT, ValidatedAd(ad=ad, peer_id=peer_id, raw=data)


@dataclass(slots=True)
class TableEntry:
    peer_id: str
    ad: CapabilityAd
    received_ms: int
    raw: bytes = b""
    """The signed envelope as received (empty when the ad was stored without it)."""


class CapTable:
    """Latest ad per peer; the highest seq wins; entries leave when their TTL runs out.

    The table holds at most ``max_entries`` signers (TBL-6): when it is full, a new signer
    is admitted only if ``preferred`` says so (the node prefers peers it is connected to),
    and then in place of the non-preferred entry that expires first."""

    def __init__(self, max_entries: int = MAX_TABLE_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, TableEntry] = {}

    def admits(self, peer_id: str, preferred: Callable[[str], bool] = lambda _: False) -> bool:
        """Whether an ad of ``peer_id`` could be stored now (TBL-6)."""
        if peer_id in self._entries or len(self._entries) < self.max_entries:
            return True
        return preferred(peer_id) and self._victim(preferred) is not None

    def _victim(self, preferred: Callable[[str], bool]) -> str | None:
        others = [e for e in self._entries.values() if not preferred(e.peer_id)]
        if not others:
            return None
        return min(others, key=lambda e: e.ad.expires_at_ms()).peer_id

    def held_seq(self, peer_id: str) -> int | None:
        e = self._entries.get(peer_id)
        return e.ad.seq if e else None

    def update(self, peer_id: str, ad: CapabilityAd, now_ms: int,
               preferred: Callable[[str], bool] = lambda _: False, raw: bytes = b"") -> bool:
        """Store ``ad`` unless an ad with the same or a higher seq is held, or the table is
        full (TBL-6); True if stored."""
        cur = self._entries.get(peer_id)
        if cur is not None and cur.ad.seq >= ad.seq:
            return False
        if cur is None and len(self._entries) >= self.max_entries:
            victim = self._victim(preferred) if preferred(peer_id) else None
            if victim is None:
                return False
            del self._entries[victim]
        self._entries[peer_id] = TableEntry(peer_id=peer_id, ad=ad, received_ms=now_ms,
                                            raw=raw)
        return True

    def expire(self, now_ms: int) -> list[str]:
        """Drop entries whose ad has expired; return their peer ids."""
        gone = [p for p, e in self._entries.items() if e.ad.expires_at_ms() <= now_ms]
        for p in gone:
            del self._entries[p]
        return gone

    def get(self, peer_id: str) -> TableEntry | None:
        return self._entries.get(peer_id)

    def live(self, now_ms: int) -> Iterator[TableEntry]:
        return (e for e in self._entries.values() if e.ad.expires_at_ms() > now_ms)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._entries
