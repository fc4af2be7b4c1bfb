"""Signed peer records consumed once per peerstore, not once per message.

py-libp2p attaches the sender's signed peer record to every pubsub RPC and every DHT
message, and the receiver verifies its Ed25519 signature, parses it and rewrites the
peer's addresses in the peerstore each time: at 10 idle nodes that was a sixth of a node's
CPU, for a record that changes only when the peer's addresses do. ``RecordMemo`` remembers,
per peerstore, the record bytes it accepted (with the peer they were checked against), so
the same bytes again cost one dictionary look-up. A record is consumed again after
``REFRESH_S`` so the peerstore's address TTL (2 h in py-libp2p) keeps being renewed, and
the memo holds at most ``MAX_RECORDS`` entries per peerstore. Only acceptances are
remembered: bytes that failed are checked again every time, exactly as without the memo.

``OwnRecordMemo`` is the sending side: py-libp2p builds the record it attaches from
``host.get_addrs()`` for every RPC it sends (each listener's socket address parsed into a
multiaddr, the set compared with the cached record's, the envelope marshalled again),
0.4 ms an RPC, the largest single cost of relaying a message. The bytes are now reused for
``OWN_REUSE_S``: a host whose addresses change sends its new record at most that much later.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

REFRESH_S = 600.0
MAX_RECORDS = 4096
OWN_REUSE_S = 5.0

Consume = Callable[..., bool]
OwnRecord = Callable[[Any], tuple[bytes, bool]]


class OwnRecordMemo:
    def __init__(self, *, reuse_s: float = OWN_REUSE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.reuse_s = reuse_s
        self.clock = clock
        self._by_host: weakref.WeakKeyDictionary[Any, tuple[float, bytes]]
        self._by_host = weakref.WeakKeyDictionary()
        self.built = 0

    def wrap(self, build: OwnRecord) -> OwnRecord:
        """``env_to_send_in_RPC(host)``: (envelope bytes, whether a new record was
        issued), built at most once per ``reuse_s`` per host."""

        def memoised(host: Any) -> tuple[bytes, bool]:
            now = self.clock()
            held = self._by_host.get(host)
            if held is not None and now - held[0] < self.reuse_s:
                return held[1], False
            self.built += 1
            envelope, issued = build(host)
            self._by_host[host] = (now, envelope)
            return envelope, issued

        return memoised


class RecordMemo:
    def __init__(self, *, refresh_s: float = REFRESH_S, max_records: int = MAX_RECORDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.refresh_s = refresh_s
        self.max_records = max_records
        self.clock = clock
        self._by_store: weakref.WeakKeyDictionary[Any, OrderedDict[tuple[bytes, bytes], float]]
        self._by_store = weakref.WeakKeyDictionary()
        self.hits = 0
        self.misses = 0

    def wrap(self, consume: Consume, field: Callable[[Any], bytes | None],
             expected: Callable[[Any, Any], bytes]) -> Consume:
        """``consume(msg, host, peer_id=None)`` checking each accepted record once.

        ``field(msg)`` gives the record bytes (None: the message carries none, and the
        original decides); ``expected(msg, peer_id)`` the identity the original checks the
        record against, part of the memo's key."""

        def memoised(msg: Any, host: Any, peer_id: Any = None) -> bool:
            record = field(msg)
            if not record:
                return consume(msg, host, peer_id)
            store = host.get_peerstore()
            seen = self._by_store.get(store)
            if seen is None:
                seen = self._by_store.setdefault(store, OrderedDict())
            key = (expected(msg, peer_id), record)
            now = self.clock()
            at = seen.get(key)
            if at is not None and now - at < self.refresh_s:
                self.hits += 1
                seen.move_to_end(key)
                return True
            self.misses += 1
            ok = consume(msg, host, peer_id)
            if ok:
                seen[key] = now
                seen.move_to_end(key)
                while len(seen) > self.max_records:
                    seen.popitem(last=False)
            else:
                seen.pop(key, None)
            return ok

        return memoised


def _peer_bytes(peer_id: Any) -> bytes:
    return b"" if peer_id is None else bytes(peer_id.to_bytes())


def pubsub_field(msg: Any) -> bytes | None:
    return bytes(msg.senderRecord) if msg.HasField("senderRecord") else None


def pubsub_expected(msg: Any, peer_id: Any) -> bytes:
    return _peer_bytes(peer_id)


def kad_field(msg: Any) -> bytes | None:
    # A DHT Message carries senderRecord; a Message.Peer (a provider or closer peer inside
    # an answer) carries signedRecord, checked against its own id.
    for name in ("senderRecord", "signedRecord"):
        try:
            if msg.HasField(name):
                return bytes(getattr(msg, name))
        except ValueError:  # the message type has no such field
            continue
    return None


def kad_expected(msg: Any, peer_id: Any) -> bytes:
    try:
        if msg.HasField("signedRecord"):
            return b"id:" + bytes(msg.id)
    except ValueError:
        pass
    return _peer_bytes(peer_id)
