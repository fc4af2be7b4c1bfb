"""What a DHT server node stores for others, and for how long (spec/03-network.md §5.2,
rules KAD-1 to KAD-7); pure: the caller passes ``now`` (seconds of any clock that the same
caller keeps using) and the record checks of the namespaces it serves.

- :class:`KadPolicy` decides whether a value record may be stored or served: its key must
  lie in a namespace we serve, its size under a bound, and the namespace's own check (for
  ``/p2pjob/``: DHT-1 to DHT-6) must accept it. It also says until when the record lives.
- :class:`ValueBook` is the bookkeeping of the value store: how many records, how many
  bytes, which expire when, and which to evict first (least recently stored).
- :class:`ProviderBook` holds provider records, bounded per key, per peer and in all,
  each with an expiry.
- :class:`ProviderLookup` runs a provider lookup that asks a few of the closest peers,
  not the whole network (KAD-10).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from p2pnode.wire.reasons import ACCEPT, Ignore, Reason, Reject, Verdict

# KAD-2: the largest value record stored; a job spec envelope is at most 8192 bytes (JOB-1).
MAX_RECORD_BYTES = 16384
# KAD-1: the longest key (py-libp2p refuses GET_VALUE keys over 128 bytes; ours are 76).
MAX_KEY_BYTES = 128
# KAD-3: value records held for others, and their bytes (keys and values).
MAX_RECORDS = 4096
MAX_STORE_BYTES = 32 << 20
# KAD-3: the longest a value record is kept, whatever its own expiry says.
RECORD_TTL_S = 86_400.0
# KAD-4: provider records, per key (Kademlia's k), per providing peer and in all.
MAX_PROVIDERS_PER_KEY = 20
MAX_PROVIDERS_PER_PEER = 64
MAX_PROVIDERS = 16384
# KAD-4: a provider record lives this long unless re-provided; discovery keys change every
# BUCKET_MS (60 s) and are looked up for two buckets (DHT-10), so 5 minutes is plenty.
PROVIDER_TTL_S = 300.0


@dataclass(frozen=True, slots=True)
class KadLimits:
    """The bounds of KAD-1 to KAD-4; tests shrink them."""

    max_record_bytes: int = MAX_RECORD_BYTES
    max_key_bytes: int = MAX_KEY_BYTES
    max_records: int = MAX_RECORDS
    max_store_bytes: int = MAX_STORE_BYTES
    record_ttl_s: float = RECORD_TTL_S
    max_providers_per_key: int = MAX_PROVIDERS_PER_KEY
    max_providers_per_peer: int = MAX_PROVIDERS_PER_PEER
    max_providers: int = MAX_PROVIDERS
    provider_ttl_s: float = PROVIDER_TTL_S


RecordCheck = Callable[[str, bytes, float], tuple[Verdict, float | None]]
"""``check(key, value, now)``: a namespace's verdict on a record and, when it is valid, the
time (same clock as ``now``) at which the record itself expires, or None if it does not
say."""


def namespace_of(key: str) -> str | None:
    """The namespace of ``/<ns>/<rest>`` (``rest`` not empty), else None."""
    parts = key.split("/", 2)
    if len(parts) != 3 or parts[0] or not parts[1] or not parts[2]:
        return None
    return parts[1]


class KadPolicy:
    """Which value records a node stores and serves (KAD-1, KAD-2, KAD-5)."""

    def __init__(self, limits: KadLimits, namespaces: Mapping[str, RecordCheck]) -> None:
        self.limits = limits
        self.namespaces = dict(namespaces)

    def check(self, key: bytes, value: bytes, now: float) -> tuple[Verdict, float]:
        """The verdict on storing or serving ``value`` under ``key``, and until when it may
        be kept (the sooner of the record's own expiry and ``now`` + the record TTL)."""
        lim = self.limits
        if len(key) > lim.max_key_bytes:
            return Reject(Reason.TOO_LARGE, "key"), now
        try:
            text = key.decode("utf-8")
        except UnicodeDecodeError:
            return Reject(Reason.MALFORMED, "key is not UTF-8"), now
        ns = namespace_of(text)
        check = self.namespaces.get(ns) if ns is not None else None
        if check is None:  # KAD-1
            return Reject(Reason.BAD_FIELD, f"no namespace {ns!r} here"), now
        if len(value) > lim.max_record_bytes:  # KAD-2
            return Reject(Reason.TOO_LARGE, "value"), now
        verdict, own_expiry = check(text, value, now)
        if not verdict.ok:
            return verdict, now
        keep = now + lim.record_ttl_s
        if own_expiry is not None:
            keep = min(keep, own_expiry)
        if keep <= now:
            return Reject(Reason.EXPIRED), now
        return ACCEPT, keep


@dataclass(slots=True)
class _Entry:
    size: int
    expires_at: float


class ValueBook:
    """Sizes and expiries of the value records held (KAD-3), least recently stored first.

    The store that holds the records themselves follows the book: it stores what ``put``
    admits and drops what ``put`` evicts and ``expire`` returns.
    """

    def __init__(self, max_records: int, max_bytes: int) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self.bytes = 0
        """Bytes held now: keys and values."""

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: bytes) -> bool:
        return key in self._entries

    def put(self, key: bytes, size: int, expires_at: float) -> list[bytes]:
        """Record ``key`` (replacing an earlier entry); the keys evicted to make room,
        least recently stored first. A record larger than the whole store is refused
        by the caller's size limit long before this."""
        self.remove(key)
        evicted: list[bytes] = []
        while self._entries and (len(self._entries) >= self.max_records
                                 or self.bytes + size > self.max_bytes):
            old, entry = self._entries.popitem(last=False)
            self.bytes -= entry.size
            evicted.append(old)
        self._entries[key] = _Entry(size, expires_at)
        self.bytes += size
        return evicted

    def remove(self, key: bytes) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self.bytes -= entry.size
        return True

    def live(self, key: bytes, now: float) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.expires_at > now

    def expires_at(self, key: bytes) -> float | None:
        entry = self._entries.get(key)
        return entry.expires_at if entry is not None else None

    def expire(self, now: float) -> list[bytes]:
        """Forget every record whose time is up; their keys."""
        gone = [k for k, e in self._entries.items() if e.expires_at <= now]
        for k in gone:
            self.remove(k)
        return gone


class ProviderBook:
    """Provider records (KAD-4): peers (text PeerIDs) per key, each until an expiry.

    Per key at most ``per_key`` peers: a new one over that is ignored (``rate_limited``).
    Per peer at most ``per_peer`` keys: a new key evicts that peer's least recently
    provided one, so a peer can only crowd out itself. In all at most ``total`` records:
    a new one over that is ignored. ``exempt`` (our own PeerID) has no per-peer bound.
    """

    def __init__(self, limits: KadLimits, exempt: str = "") -> None:
        self.per_key = limits.max_providers_per_key
        self.per_peer = limits.max_providers_per_peer
        self.total_max = limits.max_providers
        self.ttl = limits.provider_ttl_s
        self.exempt = exempt
        self._by_key: dict[bytes, OrderedDict[str, float]] = {}
        self._by_peer: dict[str, OrderedDict[bytes, None]] = {}
        self.total = 0
        """Provider records held now."""

    def add(self, key: bytes, peer: str, now: float) -> tuple[Verdict, list[tuple[bytes, str]]]:
        """Record that ``peer`` provides ``key`` until ``now`` + TTL; the verdict and the
        (key, peer) records evicted for it."""
        peers = self._by_key.get(key)
        if peers is not None and peer in peers:  # a renewal
            peers[peer] = now + self.ttl
            peers.move_to_end(peer)
            self._by_peer[peer].move_to_end(key)
            return ACCEPT, []
        if peers is not None and len(self.providers(key, now)) >= self.per_key:
            return Ignore(Reason.RATE_LIMITED, "providers per key"), []
        evicted: list[tuple[bytes, str]] = []
        keys = self._by_peer.get(peer)
        if peer != self.exempt and keys is not None and len(keys) >= self.per_peer:
            oldest = next(iter(keys))
            self.remove(oldest, peer)
            evicted.append((oldest, peer))
        if self.total >= self.total_max:
            self.expire(now)  # a full sweep only when full: adds stay O(1)
        if self.total >= self.total_max:
            return Ignore(Reason.RATE_LIMITED, "providers in all"), evicted
        self._by_key.setdefault(key, OrderedDict())[peer] = now + self.ttl
        self._by_peer.setdefault(peer, OrderedDict())[key] = None
        self.total += 1
        return ACCEPT, evicted

    def remove(self, key: bytes, peer: str) -> bool:
        peers = self._by_key.get(key)
        if peers is None or peers.pop(peer, None) is None:
            return False
        if not peers:
            del self._by_key[key]
        keys = self._by_peer[peer]
        del keys[key]
        if not keys:
            del self._by_peer[peer]
        self.total -= 1
        return True

    def providers(self, key: bytes, now: float) -> list[str]:
        """The live providers of ``key``, least recently provided first."""
        peers = self._by_key.get(key)
        if peers is None:
            return []
        gone = [p for p, t in peers.items() if t <= now]
        for p in gone:
            self.remove(key, p)
        return list(self._by_key.get(key, ()))

    def keys_of(self, peer: str) -> int:
        """How many keys ``peer`` provides now (expired ones until the next sweep)."""
        return len(self._by_peer.get(peer, ()))

    def expire(self, now: float) -> list[tuple[bytes, str]]:
        """Forget every record whose time is up; the (key, peer) pairs."""
        gone = [(k, p) for k, peers in self._by_key.items() for p, t in peers.items()
                if t <= now]
        for k, p in gone:
            self.remove(k, p)
        return gone


# -- provider lookups (KAD-10) --------------------------------------------------------------

# KAD-10: queries in flight at once, how many of the closest peers known must have answered
# for a lookup to end, how many peers one lookup may ask in all, and the wait for one.
LOOKUP_ALPHA = 3
LOOKUP_BETA = 3
LOOKUP_MAX_QUERIES = 20
LOOKUP_QUERY_TIMEOUT_S = 5.0

P = TypeVar("P", bound=Hashable)


class ProviderLookup(Generic[P]):
    """An iterative GET_PROVIDERS lookup (KAD-10), without the I/O.

    Peers are opaque; ``distance(peer)`` is the peer's XOR distance to the key. The shell
    asks :meth:`next_batch` for peers to query, reports each answer (:meth:`on_answer`,
    with the providers and the closer peers it named) or failure (:meth:`on_failure`),
    and stops when :attr:`done`. The lookup ends once ``beta`` of the closest peers known
    have answered and none of them is still to be asked, once it holds ``count``
    providers, or once it has asked ``max_queries`` peers; so a lookup in a network of N
    nodes asks about ``beta`` peers, not N (py-libp2p's asks every peer that any answer
    names until it has 20 providers, which for a key nobody provides is the whole network,
    twice: once for the closest peers, once for the providers).
    """

    def __init__(self, start: Iterable[P], distance: Callable[[P], int], *,
                 count: int = MAX_PROVIDERS_PER_KEY, alpha: int = LOOKUP_ALPHA,
                 beta: int = LOOKUP_BETA, max_queries: int = LOOKUP_MAX_QUERIES,
                 me: P | None = None) -> None:
        self.distance = distance
        self.count, self.alpha, self.beta, self.max_queries = count, alpha, beta, max_queries
        self.me = me
        self._known: dict[P, int] = {}  # peer -> distance
        self._asked: set[P] = set()
        self._answered: set[P] = set()
        self._failed: set[P] = set()
        self._in_flight: set[P] = set()
        self.providers: list[object] = []
        self._add(start)

    def _add(self, peers: Iterable[P]) -> None:
        for p in peers:
            if p != self.me and p not in self._known:
                self._known[p] = self.distance(p)

    def _closest_alive(self) -> list[P]:
        """The ``beta`` closest known peers that have not failed."""
        alive = [p for p in self._known if p not in self._failed]
        alive.sort(key=self._known.__getitem__)
        return alive[: self.beta]

    @property
    def queries(self) -> int:
        return len(self._asked)

    @property
    def done(self) -> bool:
        if len(self.providers) >= self.count:
            return True
        if self._in_flight:
            return False
        if self.queries >= self.max_queries:
            return True
        closest = self._closest_alive()
        if not closest:
            return True
        return all(p in self._answered for p in closest)

    def next_batch(self) -> list[P]:
        """Peers to query now: those of the ``beta`` closest known and not failed that have
        not been asked, up to ``alpha`` in flight."""
        if self.done:
            return []
        room = min(self.alpha - len(self._in_flight), self.max_queries - self.queries)
        # Only peers among the beta closest alive: the lookup never asks more than it
        # needs to end, unless a peer fails or an answer names closer ones.
        todo = [p for p in self._closest_alive() if p not in self._asked][: max(0, room)]
        for p in todo:
            self._asked.add(p)
            self._in_flight.add(p)
        return todo

    def on_answer(self, peer: P, providers: Iterable[object], closer: Iterable[P]) -> None:
        self._in_flight.discard(peer)
        self._answered.add(peer)
        self.providers.extend(providers)
        self._add(closer)

    def on_failure(self, peer: P) -> None:
        self._in_flight.discard(peer)
        self._failed.add(peer)
