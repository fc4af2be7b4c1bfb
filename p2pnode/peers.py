"""Peer policy (spec 03 §4.1 and §5.5): GossipSub score parameters and the score function,
the ban list, and which connections to close when there are too many. Pure: the caller
passes ``now`` and the facts; the shells in ``p2pnode/net/`` carry out the decisions.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from p2pnode.wire.reasons import Reason, Reject, Verdict

# -- scoring (spec 03 §4.1) ---------------------------------------------------------------

# Topic weights by topic name without the network part (`/p2pnode/<net>/<name>`). A topic
# not listed weighs nothing: a peer's score counts only topics we run.
CAPS_TOPIC_WEIGHT = 1.0
LEDGER_TOPIC_WEIGHT = 1.0  # ledger credits (spec 07)
ANCHORS_TOPIC_WEIGHT = 0.5  # anchor announcements (spec 08)
FRAUD_TOPIC_WEIGHT = 0.5
ATTEST_TOPIC_WEIGHT = 0.5
TOPIC_WEIGHTS: dict[str, float] = {
    "caps/1": CAPS_TOPIC_WEIGHT,
    "fraud/1": FRAUD_TOPIC_WEIGHT,
    "attest/1": ATTEST_TOPIC_WEIGHT,
    "ledger/1": LEDGER_TOPIC_WEIGHT,
    "anchors/1": ANCHORS_TOPIC_WEIGHT,
}
# P2, first message deliveries: a small reward for peers that bring us valid messages first.
FIRST_DELIVERY_WEIGHT = 1.0
FIRST_DELIVERY_CAP = 10.0
FIRST_DELIVERY_DECAY = 0.99
# P4, invalid messages (our validators' Reject): squared, as GossipSub v1.1 has it.
INVALID_WEIGHT = -1.0
INVALID_DECAY = 0.99
# Thresholds (GossipSub v1.1 §"Score Thresholds").
GOSSIP_THRESHOLD = -10.0
PUBLISH_THRESHOLD = -50.0
GRAYLIST_THRESHOLD = -80.0


# Rejects an honest relay may pass on, because they depend on the receiver's clock: they
# count against nobody's score (PEER-2).
CLOCK_DEPENDENT = frozenset({Reason.EXPIRED, Reason.CLOCK_SKEW})
# Likewise a message over one of our rate limits is an Ignore, never a Reject.


def penalises_forwarder(verdict: Verdict) -> bool:
    """Whether a topic validator's verdict counts as an invalid message (P4) of the peer
    that forwarded the message (PEER-2)."""
    return isinstance(verdict, Reject) and verdict.reason not in CLOCK_DEPENDENT


def topic_name(topic: str) -> str:
    """``/p2pnode/<net>/caps/1`` -> ``caps/1``; other topics are returned unchanged."""
    parts = topic.strip("/").split("/")
    if len(parts) == 4 and parts[0] == "p2pnode":
        return f"{parts[2]}/{parts[3]}"
    return topic


def topic_weight(topic: str) -> float:
    return TOPIC_WEIGHTS.get(topic_name(topic), 0.0)


def topic_score(topic: str, first_deliveries: float, invalid: float) -> float:
    """One topic's part of a peer's score (PEER-1): weight x (P2 + P4)."""
    p2 = FIRST_DELIVERY_WEIGHT * min(first_deliveries, FIRST_DELIVERY_CAP)
    p4 = INVALID_WEIGHT * invalid * invalid
    return topic_weight(topic) * (p2 + p4)


# -- bans (spec 03 PEER-4 to PEER-6) --------------------------------------------------------

BAN_S = 600.0
# A peer whose forwarded messages we reject this often is banned whatever its score.
REJECTS_TO_BAN = 20
REJECT_WINDOW_S = 60.0
MAX_BANS = 10_000


class BanReason(StrEnum):
    GRAYLISTED = "graylisted"  # score below GRAYLIST_THRESHOLD
    REJECTS = "rejects"  # REJECTS_TO_BAN rejected messages within REJECT_WINDOW_S


class BanList:
    """Peers refused for ``ban_s`` seconds after misbehaving (PEER-4 to PEER-6).

    Holds at most ``max_bans`` bans (the one ending soonest is forgotten first) and, per
    peer, at most ``rejects_to_ban`` reject times.
    """

    def __init__(self, *, ban_s: float = BAN_S, rejects_to_ban: int = REJECTS_TO_BAN,
                 reject_window_s: float = REJECT_WINDOW_S, max_bans: int = MAX_BANS) -> None:
        self.ban_s = ban_s
        self.rejects_to_ban = rejects_to_ban
        self.reject_window_s = reject_window_s
        self.max_bans = max_bans
        self._until: dict[str, float] = {}
        self._rejects: dict[str, deque[float]] = {}

    def ban(self, peer: str, now: float) -> bool:
        """Ban ``peer`` from ``now``; True if it was not banned already."""
        new = not self.is_banned(peer, now)
        if new and len(self._until) >= self.max_bans:
            self.expire(now)
            if len(self._until) >= self.max_bans:
                del self._until[min(self._until, key=self._until.__getitem__)]
        self._until[peer] = now + self.ban_s
        self._rejects.pop(peer, None)
        return new

    def on_reject(self, peer: str, now: float) -> bool:
        """Count one rejected message forwarded by ``peer``; True if that bans it now."""
        if self.is_banned(peer, now):
            return False
        times = self._rejects.setdefault(peer, deque(maxlen=self.rejects_to_ban))
        times.append(now)
        if len(times) == self.rejects_to_ban and now - times[0] <= self.reject_window_s:
            return self.ban(peer, now)
        return False

    def is_banned(self, peer: str, now: float) -> bool:
        until = self._until.get(peer)
        return until is not None and now < until

    def expire(self, now: float) -> list[str]:
        """Forget ended bans and stale reject counts; return the peers whose ban ended."""
        ended = [p for p, until in self._until.items() if until <= now]
        for p in ended:
            del self._until[p]
        stale = [p for p, t in self._rejects.items() if not t or now - t[-1] > self.reject_window_s]
        for p in stale:
            del self._rejects[p]
        return ended

    def banned(self, now: float) -> list[str]:
        return [p for p, until in self._until.items() if now < until]

    def __len__(self) -> int:
        return len(self._until)


# -- connection management (spec 03 §5.5) ---------------------------------------------------

MAX_CONNECTIONS = 64
# Above the soft limit py-libp2p itself refuses connections; between the two we close the
# least valued ones (PEER-7). The headroom lets us still dial a peer we need when full.
HARD_LIMIT_HEADROOM = 16
MAX_CONNECTIONS_PER_IP = 8


class CloseReason(StrEnum):
    BANNED = "banned"
    PER_IP = "per_ip"
    OVER_LIMIT = "over_limit"


@dataclass(frozen=True, slots=True)
class ConnLimits:
    max_connections: int = MAX_CONNECTIONS
    max_per_ip: int = MAX_CONNECTIONS_PER_IP
    # Loopback peers (a local testnet) are exempt from the per-IP limit unless this is set.
    limit_loopback: bool = False

    def ip_limited(self, ip: str | None) -> bool:
        if ip is None:
            return False
        try:
            loopback = ipaddress.ip_address(ip).is_loopback
        except ValueError:
            return False
        return self.limit_loopback or not loopback


@dataclass(frozen=True, slots=True)
class PeerConns:
    """A connected peer as the policy sees it."""

    peer: str
    ip: str | None
    since: float  # when its first open connection came up
    score: float
    protected: bool
    connections: int = 1


@dataclass(frozen=True, slots=True)
class Close:
    peer: str
    reason: CloseReason


def plan_closes(peers: Sequence[PeerConns], limits: ConnLimits,
                banned: Iterable[str] = ()) -> list[Close]:
    """The peers to disconnect, each with its reason (PEER-6 to PEER-9).

    Banned peers always go; then, never touching a protected peer, the peers over the
    per-IP limit and then over the connection limit, lowest score first and, at equal
    score, newest first.
    """
    bans = set(banned)
    out = [Close(p.peer, CloseReason.BANNED) for p in peers if p.peer in bans]
    live = [p for p in peers if p.peer not in bans]
    # Oldest first within an IP: the newcomers beyond the limit are the ones to go.
    per_ip: Counter[str] = Counter()
    kept = []
    for p in sorted(live, key=lambda p: (p.since, p.peer)):
        if limits.ip_limited(p.ip) and not p.protected:
            assert p.ip is not None
            if per_ip[p.ip] >= limits.max_per_ip:
                out.append(Close(p.peer, CloseReason.PER_IP))
                continue
            per_ip[p.ip] += 1
        kept.append(p)
    excess = sum(p.connections for p in kept) - limits.max_connections
    for p in sorted((p for p in kept if not p.protected), key=lambda p: (p.score, -p.since)):
        if excess <= 0:
            break
        out.append(Close(p.peer, CloseReason.OVER_LIMIT))
        excess -= p.connections
    return out
