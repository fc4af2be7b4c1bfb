"""The connection manager and ban enforcement (spec 03 §5.5): the trio side of
``p2pnode.peers`` (``BanList``, ``plan_closes``).

It wakes on every new connection and once a second, bans peers that are graylisted
(PEER-4) or rejected too often (PEER-5), and closes the connections the policy names:
banned peers, peers over the per-IP limit and, above the connection limit, the least valued
unprotected ones (PEER-7, PEER-8). Protected peers (bootstrap, lease counterparts) are
never closed for a limit; a ban closes them too.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterable
from typing import Any

import trio
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.peer.id import ID
from libp2p.pubsub.pubsub import Pubsub
from multiaddr import Multiaddr
from prometheus_client import CollectorRegistry, Counter, Gauge

from p2pnode.log import event
from p2pnode.net.scoring import Scorer
from p2pnode.peers import BanList, BanReason, CloseReason, ConnLimits, PeerConns, plan_closes

log = logging.getLogger("p2pnode.net")

SWEEP_S = 1.0
DISCONNECT_TIMEOUT_S = 2.0
LOG_EVERY_S = 1.0
Clock = Callable[[], float]


class PeerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.banned = Counter("p2pnode_peers_banned", "Peers banned, by reason", ["reason"],
                              registry=r)
        self.bans = Gauge("p2pnode_peers_banned_now", "Peers under a ban now", registry=r)
        self.graylisted = Counter(
            "p2pnode_peers_graylisted",
            "Times a connected peer's score was found below the graylist threshold", registry=r)
        self.invalid = Counter(
            "p2pnode_gossip_invalid", "Rejected gossip messages counted against the "
            "forwarding peer's score (P4)", ["topic"], registry=r)
        self.closed = Counter(
            "p2pnode_connections_closed", "Peers disconnected or refused by the connection "
            "manager, by reason", ["reason"], registry=r)
        self.dials_refused = Counter(
            "p2pnode_dials_refused", "Outbound dials refused, by reason", ["reason"],
            registry=r)
        self.connections = Gauge("p2pnode_connections", "Open connections", registry=r)
        self.max_connections = Gauge(
            "p2pnode_connections_max", "Connection limit (above it the least valued "
            "unprotected peers are disconnected)", registry=r)
        self.protected = Gauge("p2pnode_peers_protected", "Connected protected peers",
                               registry=r)
        for reason in BanReason:
            self.banned.labels(reason=reason.value)
        for close in CloseReason:
            self.closed.labels(reason=close.value)
        self.dials_refused.labels(reason=CloseReason.BANNED.value)


class _Wake(INotifee):
    """Wakes the guard on each new connection; every other network event is ignored."""

    def __init__(self, guard: PeerGuard) -> None:
        self.guard = guard

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self.guard.wake()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        pass

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, multiaddr: Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: Multiaddr) -> None:
        pass


def _remote_ip(conn: Any) -> str | None:
    try:
        addr = conn.muxed_conn.get_remote_address()
    except AttributeError:
        return None
    return str(addr[0]) if addr else None


class PeerGuard:
    """Bans and connection limits for one host (spec 03 §5.5).

    ``clock`` is monotonic seconds (trio's by default, so a test's MockClock drives it).
    """

    def __init__(self, host: Any, pubsub: Pubsub, scorer: Scorer, *, limits: ConnLimits,
                 bans: BanList, metrics: PeerMetrics, clock: Clock | None = None) -> None:
        self.host = host
        self.pubsub = pubsub
        self.scorer = scorer
        self.limits = limits
        self.bans = bans
        self.metrics = metrics
        self._clock: Clock = clock or trio.current_time
        self._tags: dict[str, set[str]] = {}
        self._sources: list[Callable[[], Iterable[str]]] = []
        self._since: dict[str, float] = {}
        self._wake = trio.Event()
        self._unlogged: collections.Counter[str] = collections.Counter()
        self._logged_at = -LOG_EVERY_S
        metrics.max_connections.set(limits.max_connections)

    # -- protection (PEER-8) --------------------------------------------------------------

    def protect(self, peer: str, tag: str) -> None:
        """Never close ``peer`` for a connection limit while any tag protects it."""
        self._tags.setdefault(peer, set()).add(tag)

    def unprotect(self, peer: str, tag: str) -> bool:
        """Drop one tag; True if other tags still protect ``peer``."""
        tags = self._tags.get(peer, set())
        tags.discard(tag)
        if not tags:
            self._tags.pop(peer, None)
        return bool(tags)

    def add_protected(self, source: Callable[[], Iterable[str]]) -> None:
        """``source()`` names peers to protect now (e.g. the counterparts of live leases)."""
        self._sources.append(source)

    def protected(self) -> set[str]:
        out = set(self._tags)
        for source in self._sources:
            out.update(source())
        return out

    # -- bans (PEER-4, PEER-5) ---------------------------------------------------------------

    def is_banned(self, peer: str) -> bool:
        return self.bans.is_banned(peer, self._clock())

    def refuse_dial(self, peer: str) -> bool:
        """True (and counted) if we must not dial ``peer`` now."""
        if not self.is_banned(peer):
            return False
        self.metrics.dials_refused.labels(reason=CloseReason.BANNED.value).inc()
        event(log, "peer.dial.refused", logging.DEBUG, peer=peer, reason="banned")
        return True

    def on_invalid(self, peer: str, topic: str) -> None:
        """Our validator rejected a message that ``peer`` forwarded on ``topic``."""
        try:
            pid = ID.from_base58(peer)
        except ValueError:
            return
        self.scorer.record_invalid(pid, topic)
        self.metrics.invalid.labels(topic=topic).inc()
        if self.bans.on_reject(peer, self._clock()):
            self._banned(peer, BanReason.REJECTS)
        elif self.scorer.is_graylisted(pid, []):
            self._graylisted(peer, pid)

    def _graylisted(self, peer: str, pid: ID) -> None:
        self.metrics.graylisted.inc()
        event(log, "peer.graylisted", logging.WARNING, peer=peer,
              score=self.scorer.score(pid, []))
        self.ban(peer, BanReason.GRAYLISTED)

    def ban(self, peer: str, reason: BanReason) -> None:
        if self.bans.ban(peer, self._clock()):
            self._banned(peer, reason)

    def _banned(self, peer: str, reason: BanReason) -> None:
        # pubsub drops whatever the peer still sends (as forwarder or origin) at once.
        self.pubsub.add_to_blacklist(ID.from_base58(peer))
        self.metrics.banned.labels(reason=reason.value).inc()
        self.metrics.bans.set(len(self.bans))
        event(log, "peer.banned", logging.WARNING, peer=peer, reason=reason.value,
              ban_s=self.bans.ban_s)
        self.wake()

    def usage(self) -> dict[str, dict[str, int]]:
        """Connections and bans against their limits (``p2pnode status``)."""
        now = self._clock()
        return {
            "connections": {"held": len(self.host.get_network().get_connections()),
                            "cap": self.limits.max_connections},
            "bans": {"held": len(self.bans.banned(now)), "cap": self.bans.max_bans},
        }

    # -- the loop -----------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.host.get_network().register_notifee(_Wake(self))
        task_status.started()
        while True:
            with trio.move_on_after(SWEEP_S):
                await self._wake.wait()
            self._wake = trio.Event()
            await self.sweep()

    async def sweep(self) -> None:
        now = self._clock()
        for peer in self.bans.expire(now):
            event(log, "peer.unbanned", peer=peer)
        # pubsub's blacklist follows the ban list, including bans it forgot when full.
        banned = set(self.bans.banned(now))
        for pid in list(self.pubsub.blacklisted_peers):
            if pid.to_base58() not in banned:
                self.pubsub.remove_from_blacklist(pid)
        conns = self.host.get_network().get_connections()
        by_peer: dict[str, list[Any]] = {}
        for c in conns:
            by_peer.setdefault(str(c.muxed_conn.peer_id), []).append(c)
        self._since = {p: self._since.get(p, now) for p in by_peer}
        for peer in by_peer:  # today only P4 lowers a score; this catches any later term
            pid = ID.from_base58(peer)
            if not self.bans.is_banned(peer, now) and self.scorer.is_graylisted(pid, []):
                self._graylisted(peer, pid)
        protected = self.protected()
        view = [PeerConns(peer=p, ip=_remote_ip(cs[0]), since=self._since[p],
                          score=self.scorer.score(ID.from_base58(p), []),
                          protected=p in protected, connections=len(cs))
                for p, cs in by_peer.items()]
        closes = plan_closes(view, self.limits, self.bans.banned(now))
        self.metrics.connections.set(len(conns))
        self.metrics.protected.set(sum(1 for p in view if p.protected))
        self.metrics.bans.set(len(self.bans))
        self._unlogged.update(c.reason.value for c in closes)
        if self._unlogged and now - self._logged_at >= LOG_EVERY_S:
            # One line a second at most: a flood of connections must not flood the log.
            event(log, "connections.closed", logging.WARNING, count=self._unlogged.total(),
                  reasons=dict(self._unlogged), connections=len(conns),
                  limit=self.limits.max_connections)
            self._unlogged.clear()
            self._logged_at = now
        if not closes:
            return
        async with trio.open_nursery() as nursery:
            for c in closes:
                self.metrics.closed.labels(reason=c.reason.value).inc()
                nursery.start_soon(self._disconnect, c.peer)

    async def _disconnect(self, peer: str) -> None:
        with trio.move_on_after(DISCONNECT_TIMEOUT_S):
            try:
                await self.host.disconnect(ID.from_base58(peer))
            except Exception as e:  # already gone, or the close failed: the next sweep retries
                log.debug("disconnect %s: %s", peer, e)
        self._since.pop(peer, None)
