"""Limits on what a hostile peer can make the Kad-DHT and the libp2p service protocols hold
(spec/03-network.md §5.2 and §5.3, KAD-1 to KAD-9).

py-libp2p 0.8.1's ``KadDHT`` stores a value under any key that has no validator, with no
size limit below 1 MiB and up to 50000 records; keeps provider records for 48 h with no
bound per peer; and reads its streams with no deadline, twelve handlers at a time for all
peers together, so a dozen idle streams stop it answering anyone. :func:`harden_dht`
replaces its validator, value store, provider store and stream handler with ones that
follow :mod:`p2pnode.dhtpolicy`; :func:`guard_service_protocols` puts identify and ping
under the same per-peer stream limits and deadlines.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.host.ping import ID as PING_PROTOCOL_ID
from libp2p.identity.identify.identify import ID as IDENTIFY_PROTOCOL_ID
from libp2p.identity.identify_push.identify_push import ID_PUSH as IDENTIFY_PUSH_PROTOCOL_ID
from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.kad_dht.provider_store import ProviderRecord, ProviderStore
from libp2p.kad_dht.value_store import ValueStore
from libp2p.peer.peerinfo import PeerInfo
from libp2p.records.validator import NamespacedValidator
from prometheus_client import CollectorRegistry, Counter, Gauge

from p2pnode.dhtpolicy import KadLimits, KadPolicy, ProviderBook, RecordCheck, ValueBook
from p2pnode.log import event
from p2pnode.net.limits import StreamLimiter, reset_stream, stream_peer
from p2pnode.ratelimit import StreamLimits
from p2pnode.wire.reasons import Reason

log = logging.getLogger("p2pnode.net.kad")

Clock = Callable[[], float]
Handler = Callable[[Any], Awaitable[None]]

# KAD-6: inbound DHT streams of one peer open at once, of all peers, and the rate at which
# one peer may open new ones. A lookup opens one stream per request and closes it after the
# answer; a node rarely has more than a few requests to one peer in flight.
KAD_STREAMS_PER_PEER = 8
MAX_KAD_STREAMS = 128
KAD_STREAM_RATE = 50.0
KAD_STREAM_BURST = 100
KAD_STREAM_LIMITS = StreamLimits(per_peer=KAD_STREAMS_PER_PEER, total=MAX_KAD_STREAMS,
                                 rate=KAD_STREAM_RATE, burst=KAD_STREAM_BURST)
# KAD-7: a read on a DHT stream waits at most this long, and a stream lives at most this
# long (a peer trickling one byte at a time cannot keep a handler for ever).
KAD_IDLE_TIMEOUT_S = 10.0
KAD_STREAM_MAX_S = 60.0
# KAD-8: identify, identify push and ping; one or two streams of a peer at a time is all a
# libp2p host uses.
SERVICE_STREAMS_PER_PEER = 4
MAX_SERVICE_STREAMS = 256
SERVICE_STREAM_RATE = 10.0
SERVICE_STREAM_BURST = 20
SERVICE_STREAM_LIMITS = StreamLimits(per_peer=SERVICE_STREAMS_PER_PEER,
                                     total=MAX_SERVICE_STREAMS, rate=SERVICE_STREAM_RATE,
                                     burst=SERVICE_STREAM_BURST)
SERVICE_IDLE_TIMEOUT_S = 10.0
IDENTIFY_STREAM_MAX_S = 10.0
PING_STREAM_MAX_S = 60.0


class KadMetrics:
    """The DHT store's usage and the refusals and timeouts of every guarded protocol."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.records_refused = Counter(
            "p2pnode_dht_records_refused", "DHT value records refused, by where (check: a "
            "put to us or a lookup result; store; serve: held but no longer valid) and "
            "reason", ["op", "reason"], registry=r)
        self.records = Gauge("p2pnode_dht_records", "DHT value records held", registry=r)
        self.record_bytes = Gauge("p2pnode_dht_record_bytes",
                                  "Bytes of DHT value records held (keys and values)",
                                  registry=r)
        self.evictions = Counter("p2pnode_dht_evictions", "DHT records evicted to make room",
                                 ["store"], registry=r)
        self.providers = Gauge("p2pnode_dht_providers", "DHT provider records held",
                               registry=r)
        self.providers_refused = Counter(
            "p2pnode_dht_providers_refused", "DHT provider records not stored, by reason",
            ["reason"], registry=r)
        self.streams_refused = Counter(
            "p2pnode_streams_refused", "Inbound streams reset unread over a stream bound",
            ["protocol"], registry=r)
        self.streams_open = Gauge("p2pnode_streams_open", "Inbound streams being served",
                                  ["protocol"], registry=r)
        self.streams_timed_out = Counter(
            "p2pnode_streams_timed_out", "Inbound streams reset by an idle or lifetime "
            "deadline", ["protocol"], registry=r)

    def refused(self, op: str, reason: Reason) -> None:
        self.records_refused.labels(op=op, reason=reason.value).inc()


# -- streams -------------------------------------------------------------------------


class IdleTimeoutStream:
    """A py-libp2p stream whose every ``read`` fails with ``trio.TooSlowError`` after
    ``idle_s``; everything else is the wrapped stream's. The handlers we wrap catch the
    error as a failed read and reset the stream."""

    def __init__(self, stream: Any, idle_s: float) -> None:
        self._stream = stream
        self._idle_s = idle_s
        self.timed_out = False

    async def read(self, n: int | None = None) -> bytes:
        try:
            with trio.fail_after(self._idle_s):
                return bytes(await self._stream.read(n))
        except trio.TooSlowError:
            self.timed_out = True
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_handler(protocol: str, handler: Handler, limiter: StreamLimiter, *,
                  idle_s: float, max_s: float, metrics: KadMetrics) -> Handler:
    """``handler`` behind ``limiter`` (a stream over its bounds is reset unread), with every
    read bounded by ``idle_s`` and the whole stream by ``max_s``; a stream that runs out of
    time is reset. ``protocol`` names the metrics label."""
    metrics.streams_open.labels(protocol=protocol).set_function(lambda: limiter.total)

    async def timed(stream: Any) -> None:
        idle = IdleTimeoutStream(stream, idle_s)
        with trio.move_on_after(max_s) as scope:
            await handler(idle)
        if scope.cancelled_caught or idle.timed_out:
            metrics.streams_timed_out.labels(protocol=protocol).inc()
            event(log, "stream.timed_out", logging.DEBUG, protocol=protocol,
                  peer=stream_peer(stream), idle=idle.timed_out)
            await reset_stream(stream)

    async def guarded(stream: Any) -> None:
        if not await limiter.serve(stream, timed):
            metrics.streams_refused.labels(protocol=protocol).inc()
            event(log, "stream.refused", logging.DEBUG, protocol=protocol,
                  peer=stream_peer(stream), reason=Reason.RATE_LIMITED.value)

    return guarded


def guard_service_protocols(host: Any, metrics: KadMetrics,
                            limits: StreamLimits = SERVICE_STREAM_LIMITS,
                            idle_s: float = SERVICE_IDLE_TIMEOUT_S) -> None:
    """Put the host's identify, identify push and ping handlers each under ``limits`` and
    under deadlines (KAD-8). py-libp2p registers them at host construction."""
    handlers = host.get_mux().handlers
    for pid, label, max_s in ((IDENTIFY_PROTOCOL_ID, "identify", IDENTIFY_STREAM_MAX_S),
                              (IDENTIFY_PUSH_PROTOCOL_ID, "identify_push",
                               IDENTIFY_STREAM_MAX_S),
                              (PING_PROTOCOL_ID, "ping", PING_STREAM_MAX_S)):
        inner = handlers.get(pid)
        if inner is not None:
            host.set_stream_handler(pid, guard_handler(label, inner, StreamLimiter(limits),
                                                       idle_s=idle_s, max_s=max_s,
                                                       metrics=metrics))


# -- records ---------------------------------------------------------------------------


class KadValidator(NamespacedValidator):  # type: ignore[misc]
    """py-libp2p's validator seam run by :class:`KadPolicy`: only our namespaces, strict
    (no fallback for keys without a namespace, no ``pk`` or ``ipns``). A refusal raises, and
    py-libp2p then resets the stream without an answer (KAD-5)."""

    def __init__(self, policy: KadPolicy, now: Clock,
                 on_refuse: Callable[[Reason], None]) -> None:
        super().__init__({}, strict_validation=True)
        self.policy = policy
        self.now = now
        self.on_refuse = on_refuse

    def validate(self, key: str, value: bytes) -> None:
        verdict, _ = self.policy.check(key.encode(), value, self.now())
        if not verdict.ok:
            reason = verdict.reason  # type: ignore[union-attr]
            self.on_refuse(reason)
            raise ValueError(f"DHT record refused: {reason.value}")

    def select(self, key: str, values: list[bytes]) -> int:
        # Our records are content-addressed: every valid value under a key is the same.
        # py-libp2p passes [held, offered] on a put and resets the stream unless the
        # offered one wins: taking the last acknowledges a repeated put (KAD-5).
        return len(values) - 1


class BoundedValueStore(ValueStore):  # type: ignore[misc]
    """py-libp2p's value store with the bounds of KAD-3, following a :class:`ValueBook`;
    a record that no longer passes the policy is dropped instead of served (KAD-5)."""

    def __init__(self, host: Any, policy: KadPolicy, now: Clock, metrics: KadMetrics) -> None:
        super().__init__(host=host, local_peer_id=host.get_id())
        lim = policy.limits
        self.policy = policy
        self.book = ValueBook(lim.max_records, lim.max_store_bytes)
        self.now = now
        self.metrics = metrics

    def _admit(self, key: bytes, value: bytes) -> float | None:
        """Make room for ``key``; until when it may be kept, or None if it may not."""
        now = self.now()
        verdict, keep = self.policy.check(key, value, now)
        if not verdict.ok:
            reason = verdict.reason  # type: ignore[union-attr]
            self.metrics.refused("store", reason)
            return None
        evicted = self.book.put(key, len(key) + len(value), keep)
        for old in evicted:
            self.store.pop(old, None)
            self.local_keys.discard(old)
        if evicted:
            self.metrics.evictions.labels(store="values").inc(len(evicted))
            event(log, "dht.values.full", logging.DEBUG, evicted=len(evicted),
                  records=len(self.book), bytes=self.book.bytes)
        return keep

    def _gauges(self) -> None:
        self.metrics.records.set(len(self.book))
        self.metrics.record_bytes.set(self.book.bytes)

    def put(self, key: bytes, value: bytes, validity: float = 0.0) -> None:
        keep = self._admit(key, value)
        if keep is not None:
            super().put(key, value, validity=keep)
        self._gauges()

    def put_record(self, key: bytes, record: Any) -> None:
        keep = self._admit(key, bytes(record.value))
        if keep is not None:
            self.store[key] = (record, keep)
        self._gauges()

    def get(self, key: bytes) -> Any:
        entry = self.store.get(key)
        if entry is None:
            return None
        record, _ = entry
        now = self.now()
        if not self.book.live(key, now):
            self.remove(key)
            return None
        verdict, _ = self.policy.check(key, bytes(record.value), now)
        if not verdict.ok:
            reason = verdict.reason  # type: ignore[union-attr]
            self.metrics.refused("serve", reason)
            event(log, "dht.record.dropped", logging.DEBUG, reason=reason.value)
            self.remove(key)
            return None
        return record

    def remove(self, key: bytes) -> bool:
        self.book.remove(key)
        found = key in self.store
        self.store.pop(key, None)
        self._gauges()
        return found

    def has(self, key: bytes) -> bool:
        return self.get(key) is not None

    def cleanup_expired(self) -> int:
        gone = self.book.expire(self.now())
        for key in gone:
            self.store.pop(key, None)
        # Entries the book does not know (none are made that way) are not kept either.
        for key in [k for k in self.store if k not in self.book]:
            del self.store[key]
        self._gauges()
        return len(gone)


class BoundedProviderStore(ProviderStore):  # type: ignore[misc]
    """py-libp2p's provider store with the bounds and expiry of KAD-4, following a
    :class:`ProviderBook`."""

    def __init__(self, host: Any, peer_routing: Any, limits: KadLimits, now: Clock,
                 metrics: KadMetrics) -> None:
        super().__init__(host=host, peer_routing=peer_routing)
        self.book = ProviderBook(limits, exempt=str(host.get_id()))
        self.now = now
        self.metrics = metrics
        self.provide_ttl_s = limits.provider_ttl_s
        self._provided_at: dict[bytes, float] = {}

    async def provide(self, key: bytes) -> bool:
        # py-libp2p keeps every key it ever provided and republishes them all daily; a
        # discovery key is worth providing for a few minutes (DHT-10), so a key we have not
        # provided again within the provider TTL is forgotten (KAD-4).
        self._provided_at[key] = self.now()
        return bool(await super().provide(key))

    def forget_old_provides(self) -> int:
        """Drop our own provided keys not provided again within the provider TTL."""
        cutoff = self.now() - self.provide_ttl_s
        old = [k for k, t in self._provided_at.items() if t < cutoff]
        for key in old:
            del self._provided_at[key]
            self.providing_keys.discard(key)
            self._last_republish.pop(key, None)
        return len(old)

    def _drop(self, key: bytes, peer: str) -> None:
        peers = self.providers.get(key)
        if peers is not None:
            peers.pop(peer, None)
            if not peers:
                del self.providers[key]

    def add_provider(self, key: bytes, provider: PeerInfo) -> None:
        if not provider or not provider.peer_id:
            return
        peer, now = str(provider.peer_id), self.now()
        verdict, evicted = self.book.add(key, peer, now)
        for old_key, old_peer in evicted:
            self._drop(old_key, old_peer)
        if evicted:
            self.metrics.evictions.labels(store="providers").inc(len(evicted))
        if verdict.ok:
            self.providers.setdefault(key, {})[peer] = ProviderRecord(provider, now)
        else:
            reason = verdict.reason  # type: ignore[union-attr]
            self.metrics.providers_refused.labels(reason=reason.value).inc()
            event(log, "dht.provider.refused", logging.DEBUG, peer=peer, reason=reason.value)
        self.metrics.providers.set(self.book.total)

    def get_providers(self, key: bytes) -> list[PeerInfo]:
        live = self.book.providers(key, self.now())
        peers = self.providers.get(key, {})
        for peer in [p for p in peers if p not in live]:
            self._drop(key, peer)
        self.metrics.providers.set(self.book.total)
        held = self.providers.get(key, {})
        return [PeerInfo(held[p].peer_id, held[p].addresses) for p in live if p in held]

    def cleanup_expired(self) -> None:
        for key, peer in self.book.expire(self.now()):
            self._drop(key, peer)
        self.forget_old_provides()
        self.metrics.providers.set(self.book.total)

    def size(self) -> int:
        return self.book.total


# -- wiring ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KadSettings:
    """The DHT server's bounds (KAD-1 to KAD-7) and those of the libp2p service protocols
    (KAD-8); tests shrink them."""

    limits: KadLimits = field(default_factory=KadLimits)
    streams: StreamLimits = KAD_STREAM_LIMITS
    idle_s: float = KAD_IDLE_TIMEOUT_S
    max_s: float = KAD_STREAM_MAX_S
    service_streams: StreamLimits = SERVICE_STREAM_LIMITS
    service_idle_s: float = SERVICE_IDLE_TIMEOUT_S


def harden_dht(dht: KadDHT, *, namespaces: Mapping[str, RecordCheck], now: Clock,
               metrics: KadMetrics, on_refuse: Callable[[Reason], None],
               settings: KadSettings | None = None) -> None:
    """Give ``dht`` (constructed, not yet serving) the limits of KAD-1 to KAD-7.

    ``namespaces`` maps each record namespace we serve to its check; ``now`` is the wall
    clock in seconds (records' own expiries are wall times); ``on_refuse`` counts the
    reason of every refused put or lookup result.
    """
    settings = settings or KadSettings()
    policy = KadPolicy(settings.limits, namespaces)
    stream_limits = settings.streams

    def refuse(reason: Reason) -> None:
        metrics.refused("check", reason)
        on_refuse(reason)

    dht.set_validator(KadValidator(policy, now, refuse))
    dht.strict_validation = True  # set_validator copied the DHT's (lax) flag onto ours
    dht.value_store = BoundedValueStore(dht.host, policy, now, metrics)
    dht.provider_store = BoundedProviderStore(dht.host, dht.peer_routing, policy.limits,
                                              now, metrics)
    # py-libp2p lets 12 handlers run at once for all peers together and resets the rest;
    # with a per-peer bound and deadlines of our own, its bound becomes our total.
    dht._inbound_limiter = trio.CapacityLimiter(stream_limits.total)
    limiter = StreamLimiter(stream_limits)
    dht.host.set_stream_handler(
        _kad_protocol(), guard_handler("kad", dht.handle_stream, limiter,
                                       idle_s=settings.idle_s, max_s=settings.max_s,
                                       metrics=metrics))


def _kad_protocol() -> Any:
    import libp2p.kad_dht.kad_dht as kad_main

    # patch_libp2p has set it to /p2pnode/<net>/kad/1.0.0 by now (NET-10).
    return kad_main.PROTOCOL_ID  # type: ignore[attr-defined]


def dht_usage(dht: Any) -> dict[str, dict[str, int]]:
    """What the DHT holds for others against its bounds (KAD-3, KAD-4; ``p2pnode status``)."""
    out: dict[str, dict[str, int]] = {}
    values, providers = getattr(dht, "value_store", None), getattr(dht, "provider_store", None)
    if isinstance(values, BoundedValueStore):
        out["dht_records"] = {"held": len(values.book), "cap": values.book.max_records}
        out["dht_record_bytes"] = {"held": values.book.bytes, "cap": values.book.max_bytes}
    if isinstance(providers, BoundedProviderStore):
        out["dht_providers"] = {"held": providers.book.total,
                                "cap": providers.book.total_max}
    return out
