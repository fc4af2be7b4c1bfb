"""The typed seams between the services and the outside world (docs: ARCHITECTURE).

Services meet the network only through a :class:`Transport` (and time only through
``p2pnode.services.clock.LocalClock``). ``p2pnode/net/transport.py`` implements it over
py-libp2p; ``p2pnode/services/memory.py`` implements it in memory for the shell's tests and
the simulator. No py-libp2p type crosses these interfaces: peers are PeerID strings, keys are
raw Ed25519 public keys, payloads are bytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from p2pnode.blobs.store import BlobStore
from p2pnode.wire.reasons import Reason, Verdict


class Exchange(Protocol):
    """One ``/job/1`` exchange: whole frames in and out (XCH-1)."""

    async def send(self, payload: bytes) -> None: ...

    async def receive(self, timeout: float) -> bytes:
        """The next frame; WireError when the stream ends or the frame is bad, TooSlowError
        after ``timeout`` seconds."""
        ...

    async def close(self) -> None: ...


# (the exchange, the Noise-authenticated Ed25519 key of the peer, its first frame)
JobHandler = Callable[[Exchange, bytes, bytes], Awaitable[None]]


class Transport(Protocol):
    """What the job market needs of the network."""

    peer_id: str

    def serve_jobs(self, handler: JobHandler) -> None:
        """Call ``handler`` for every inbound ``/job/1`` exchange (within its limits)."""

    async def open_job(self, peer: str) -> Exchange:
        """Open a ``/job/1`` exchange to ``peer`` (bounded by EXCHANGE_TIMEOUT_S)."""
        ...

    async def fetch_blob(self, peer: str, cid: bytes, store: BlobStore, *, max_size: int,
                         timeout: float) -> None:
        """Fetch ``cid`` from ``peer`` into ``store`` (hash-checked, BLOB rules); raises
        WireError with the reason, or TooSlowError."""

    async def dht_put(self, key: str, value: bytes, timeout: float) -> bool: ...

    async def dht_get(self, key: str, timeout: float) -> bytes | None: ...

    async def provide(self, key: str, timeout: float) -> bool: ...

    async def find_providers(self, key: str, timeout: float) -> list[str]:
        """Peers that provide ``key``, connected to (or at least dialled) already."""
        ...

    def connected(self, peer: str) -> bool: ...

    async def ensure_connected(self, peer: str, addrs: list[str]) -> bool:
        """Dial ``peer`` at ``addrs`` unless a connection is up; never drops one."""
        ...

    async def reconnect(self, peer: str, addrs: list[str]) -> bool:
        """No stream could be opened to ``peer``: drop the connections that are dead
        (keeping the newest when there are several) and make sure one is up."""
        ...



class SyncNet(Protocol):
    """What the ledger needs of the network besides its topic: ``/sync/1`` sessions."""

    def serve_sync(self, handle: Callable[[Exchange, str], Awaitable[None]]) -> None:
        """Call ``handle(exchange, peer)`` for every inbound session (within RCN-9)."""

    async def open_sync(self, peer: str) -> Exchange:
        """Open a session to ``peer``; TransportError if it cannot be opened."""
        ...


class TransportError(Exception):
    """A peer could not be reached or a stream could not be opened."""


# (source key of the message as pubsub saw it, its data, the peer that forwarded it) ->
# the verdict; a Reject counts against the forwarder's score (spec 03 PEER-2).
TopicValidator = Callable[[bytes | None, bytes, str], Verdict]


class Gossip(Protocol):
    """What the capability service needs of the network: one pubsub topic and peering."""

    peer_id: str

    def listen_addrs(self) -> list[str]: ...

    def connected_peers(self) -> list[str]: ...

    def set_validator(self, topic: str, validate: TopicValidator) -> None: ...

    async def subscribe(self, topic: str) -> Subscription: ...

    async def publish(self, topic: str, data: bytes) -> None: ...

    def topic_peers(self, topic: str) -> dict[str, int]:
        """Peers subscribed to ``topic``, each with a token that changes when the peer's
        pubsub stream does (a restarted peer keeps its PeerID but not its stream)."""
        ...

    def mesh_peers(self, topic: str) -> int:
        """How many peers our own publications on ``topic`` go to now (its mesh)."""
        ...

    async def dial(self, addr: str, timeout: float) -> tuple[bool, str]:
        """Connect to ``.../p2p/<id>``; (ok, error text)."""
        ...

    async def upkeep(self, resubscribe: bool) -> int:
        """Repair the pubsub view of connected peers (and, when ``resubscribe``, announce
        our subscriptions again to peers whose pubsub stream is new); returns how many
        peers were repaired."""
        ...

    def peer_addrs(self) -> dict[str, list[str]]:
        """Connected peers and the addresses the host knows for each."""
        ...

    def serve_held_ads(self, answer: Callable[[str], list[bytes]],
                       on_refused: Callable[[], None]) -> None:
        """Answer held-ads requests (spec 02 §9) with ``answer(peer)``, within the stream
        limits of SYNC-6; ``on_refused()`` for each request over them."""

    async def pull_held_ads(self, peer: str) -> tuple[list[bytes], Reason | None]:
        """Ask ``peer`` for its held ads (SYNC-4): the ads read, and why the answer was cut
        short, or None."""
        ...


class Subscription(Protocol):
    async def get(self) -> tuple[bytes | None, bytes]:
        """The next message: (source key, data)."""
        ...
