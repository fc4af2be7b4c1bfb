"""The :class:`p2pnode.ports.Transport` of the job market in memory: no sockets, no libp2p.

For the shell's tests and the simulator, after the idea of ``trio/testing/_fake_net.py``: a
:class:`MemoryNetwork` hands out one :class:`MemoryTransport` per peer; services run over
it exactly as over ``p2pnode.net.transport.Libp2pTransport``.

- ``/job/1`` exchanges are pairs of trio memory channels carrying bytes, framed with
  ``p2pnode.wire.framing`` and read through a ``FrameDecoder(MAX_FRAME)``, so frames, the
  frame limit and the ends of streams behave as on the wire. The serving side runs the
  handler given to ``serve_jobs`` with the opener's public key as ``remote``, inside the
  serving transport's ``run`` (stopping a node stops its handlers).
- ``fetch_blob`` copies from the peer's store (``serve_blobs``) into the caller's store
  through ``BlobStore.writer(expected_cid=...)``, with the answers and reasons of
  ``p2pnode.net.blob_protocol``: ``not_found`` (also when no stream can be had),
  ``too_large`` over ``max_size``, ``hash_mismatch`` from the writer, and what
  :class:`BlobFaults` makes the peer's server do (answer ``busy``, stall, fail).
- One small DHT shared by the network (values and provider records), reachable by every
  peer that is online and not disconnected.
- Failures: ``disconnect``/``reconnect`` a peer, ``partition`` the peers into groups,
  ``heal``. Cutting a peer off resets its open exchanges and transfers at once.

Every peer that runs its transport is connected to every other one it can reach: there is
no dialling, so ``ensure_connected`` only says whether the peer is reachable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from p2pnode.blobs.protocol import BUSY_WAIT_S, CHUNK_SIZE
from p2pnode.blobs.store import BlobStore
from p2pnode.identity import peer_id_str
from p2pnode.jobs.model import MAX_FRAME
from p2pnode.ports import Exchange, JobHandler, Transport, TransportError
from p2pnode.wire.framing import FrameDecoder, encode_frame
from p2pnode.wire.reasons import Reason, WireError

# As p2pnode.net.job_protocol: the serving side waits this long for the first frame.
EXCHANGE_TIMEOUT_S = 10.0


# -- exchanges ---------------------------------------------------------------------------------


class MemoryExchange:
    """One end of a ``/job/1`` exchange (the :class:`p2pnode.ports.Exchange` protocol)."""

    def __init__(self, link: _Link, out: trio.MemorySendChannel[bytes],
                 inp: trio.MemoryReceiveChannel[bytes], max_frame: int) -> None:
        self._link = link
        self._out = out
        self._inp = inp
        self._decoder = FrameDecoder(max_frame)
        self._closed = False

    async def send(self, payload: bytes) -> None:
        await trio.lowlevel.checkpoint()
        try:
            self._out.send_nowait(encode_frame(payload))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
            raise WireError(Reason.TRUNCATED, "stream closed while sending") from e

    async def receive(self, timeout: float) -> bytes:
        """The next frame; WireError(TRUNCATED) when the stream ends or was reset first,
        WireError(TOO_LARGE) as soon as a prefix announces more than the frame limit,
        TooSlowError after ``timeout`` seconds."""
        with trio.fail_after(timeout):
            while True:
                frame = self._decoder.next_frame()
                if frame is not None:
                    return frame
                try:
                    chunk = await self._inp.receive()
                except trio.EndOfChannel as e:
                    raise WireError(Reason.TRUNCATED, "stream closed mid-frame") from e
                except (trio.ClosedResourceError, trio.BrokenResourceError) as e:
                    raise WireError(Reason.TRUNCATED, "stream reset") from e
                self._decoder.feed(chunk)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.close()
            self._inp.close()
            self._link.closed_end()
        await trio.lowlevel.checkpoint()


class _Link:
    """The two ends of one exchange, between ``opener`` and ``server``."""

    def __init__(self, network: MemoryNetwork, opener: str, server: str) -> None:
        self.network = network
        self.opener = opener
        self.server = server
        a_out, b_in = trio.open_memory_channel[bytes](math.inf)
        b_out, a_in = trio.open_memory_channel[bytes](math.inf)
        self._channels = (a_out, a_in, b_out, b_in)
        self.client = MemoryExchange(self, a_out, a_in, MAX_FRAME)
        self.serving = MemoryExchange(self, b_out, b_in, MAX_FRAME)
        self._open_ends = 2

    def closed_end(self) -> None:
        self._open_ends -= 1
        if self._open_ends <= 0:
            self.network._links.pop(self, None)

    def reset(self) -> None:
        """Both ends fail at once: pending and later reads and writes raise (no data that
        was in flight arrives)."""
        for ch in self._channels:
            ch.close()
        self.network._links.pop(self, None)

    def involves(self, peer: str) -> bool:
        return peer in (self.opener, self.server)


class _Transfer:
    """A blob fetch in flight, reset like a stream when either peer is cut off."""

    def __init__(self, network: MemoryNetwork, opener: str, server: str) -> None:
        self.network = network
        self.opener = opener
        self.server = server
        self.scope = trio.CancelScope()

    def reset(self) -> None:
        self.scope.cancel()
        self.network._links.pop(self, None)

    def involves(self, peer: str) -> bool:
        return peer in (self.opener, self.server)


# -- blobs -------------------------------------------------------------------------------------


@dataclass
class BlobFaults:
    """What a peer's blob server does wrong, for tests; and what it did."""

    busy: int = 0
    """Answer ``busy`` to this many more requests (after ``busy_wait`` seconds, as a real
    server waits for a free slot before it says so)."""
    busy_wait: float = BUSY_WAIT_S
    stall: bool = False
    """Never answer: the fetch runs into its timeout (TooSlowError)."""
    fail: Reason | None = None
    """Break every transfer part-way with this reason; ``hash_mismatch`` sends wrong bytes
    instead, so the fetching store's writer finds the mismatch."""
    # what happened
    busy_answers: int = 0
    stalled: int = 0
    failed: int = 0
    served: int = 0


# -- the DHT -----------------------------------------------------------------------------------


@dataclass
class MemoryDht:
    """Value and provider records, shared by the network; ``validator`` (key, value) may
    refuse a value as the real node's record validators do."""

    validator: Callable[[str, bytes], bool] | None = None
    values: dict[str, bytes] = field(default_factory=dict)
    providers: dict[str, list[str]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    """How often each operation was asked for (put, get, provide, find_providers)."""

    def _count(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1

    def put(self, key: str, value: bytes) -> bool:
        self._count("put")
        if self.validator is not None and not self.validator(key, value):
            return False
        self.values[key] = value
        return True

    def get(self, key: str) -> bytes | None:
        self._count("get")
        return self.values.get(key)

    def provide(self, key: str, peer: str) -> None:
        self._count("provide")
        peers = self.providers.setdefault(key, [])
        if peer not in peers:
            peers.append(peer)

    def find_providers(self, key: str) -> list[str]:
        self._count("find_providers")
        return list(self.providers.get(key, ()))


# -- the network -------------------------------------------------------------------------------


class MemoryNetwork:
    """Peers, the links between them and the DHT; see the module docstring."""

    def __init__(self, *, dht_validator: Callable[[str, bytes], bool] | None = None) -> None:
        self.dht = MemoryDht(dht_validator)
        self._peers: dict[str, MemoryTransport] = {}
        # insertion-ordered, so that resets happen in a replayable order
        self._links: dict[_Link | _Transfer, None] = {}
        self._cut: set[str] = set()
        self._group_of: dict[str, int] = {}

    def transport(self, peer_id: str, public_key: bytes, *,
                  on_reject: Callable[[Reason], None] | None = None) -> MemoryTransport:
        """The endpoint of ``peer_id`` (whose key is ``public_key``). A peer that is not
        running may be given a new endpoint (a restarted process)."""
        if peer_id != peer_id_str(public_key):
            raise ValueError("peer_id is not the PeerID of public_key")
        old = self._peers.get(peer_id)
        if old is not None and old.online:
            raise ValueError(f"{peer_id} is running already")
        t = MemoryTransport(self, peer_id, public_key, on_reject=on_reject)
        self._peers[peer_id] = t
        return t

    def peer(self, peer_id: str) -> MemoryTransport | None:
        return self._peers.get(peer_id)

    # -- failures --------------------------------------------------------------------------

    def disconnect(self, peer: str) -> None:
        """Cut ``peer`` off: its exchanges and transfers fail now, nothing reaches it or
        leaves it (the DHT included) until ``reconnect``. Its tasks keep running."""
        self._cut.add(peer)
        self._reset(lambda link: link.involves(peer))

    def reconnect(self, peer: str) -> None:
        self._cut.discard(peer)

    def partition(self, *groups: Iterable[str]) -> None:
        """Peers in different groups cannot reach each other (peers in none reach all);
        replaces an earlier partition. Links across the groups are reset."""
        self._group_of = {p: i for i, g in enumerate(groups) for p in g}
        self._reset(lambda link: not self._same_side(link.opener, link.server))

    def heal(self) -> None:
        """Remove the partition (not the disconnections)."""
        self._group_of = {}

    def _reset(self, which: Callable[[_Link | _Transfer], bool]) -> None:
        for link in [li for li in self._links if which(li)]:
            link.reset()

    def _same_side(self, a: str, b: str) -> bool:
        ga, gb = self._group_of.get(a), self._group_of.get(b)
        return ga is None or gb is None or ga == gb

    def on_network(self, peer: str) -> bool:
        """Running and not cut off (the DHT is reachable)."""
        t = self._peers.get(peer)
        return t is not None and t.online and peer not in self._cut

    def reachable(self, a: str, b: str) -> bool:
        return (a != b and self.on_network(a) and self.on_network(b)
                and self._same_side(a, b))

    def _target(self, opener: str, peer: str) -> MemoryTransport:
        t = self._peers.get(peer)
        if t is None:
            raise TransportError(f"no stream to {peer}: unknown peer")
        if not self.reachable(opener, peer):
            raise TransportError(f"no stream to {peer}: not reachable")
        return t

    def _open(self, opener: str, peer: str) -> _Link:
        link = _Link(self, opener, peer)
        self._links[link] = None
        return link


class MemoryTransport:
    """One peer's endpoint (the :class:`p2pnode.ports.Transport` protocol). It is online
    while ``run`` runs; inbound exchanges are handled in ``run``'s nursery."""

    def __init__(self, network: MemoryNetwork, peer_id: str, public_key: bytes, *,
                 on_reject: Callable[[Reason], None] | None = None) -> None:
        self.network = network
        self.peer_id = peer_id
        self.public_key = public_key
        self.on_reject = on_reject
        self.blob_faults = BlobFaults()
        self._handler: JobHandler | None = None
        self._blobs: BlobStore | None = None
        self._nursery: trio.Nursery | None = None

    @property
    def online(self) -> bool:
        return self._nursery is not None

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Be on the network until cancelled; then every exchange with this peer fails."""
        if self._nursery is not None:
            raise RuntimeError(f"{self.peer_id} is running already")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self.network._reset(lambda link: link.involves(self.peer_id))

    def _reject(self, reason: Reason) -> None:
        if self.on_reject is not None:
            self.on_reject(reason)

    # -- /job/1 ----------------------------------------------------------------------------

    def serve_jobs(self, handler: JobHandler) -> None:
        self._handler = handler

    async def open_job(self, peer: str) -> MemoryExchange:
        await trio.lowlevel.checkpoint()
        target = self.network._target(self.peer_id, peer)
        if target._handler is None or target._nursery is None:
            raise TransportError(f"no stream to {peer}: /job/1 not served")
        link = self.network._open(self.peer_id, peer)
        target._nursery.start_soon(target._serve, target._handler, link.serving,
                                   self.public_key)
        return link.client

    async def _serve(self, handler: JobHandler, ex: MemoryExchange, remote: bytes) -> None:
        """As ``p2pnode.net.job_protocol.make_job_handler``, except that an unexpected
        exception is not swallowed: it fails the test that caused it."""
        try:
            first = await ex.receive(EXCHANGE_TIMEOUT_S)
            await handler(ex, remote, first)
        except WireError as e:
            self._reject(e.reason)
        except trio.TooSlowError:
            self._reject(Reason.TRUNCATED)
        finally:
            await ex.close()

    # -- blobs -----------------------------------------------------------------------------

    def serve_blobs(self, store: BlobStore) -> None:
        """Serve ``store`` to the peers (as ``register_blob_protocol``)."""
        self._blobs = store

    async def fetch_blob(self, peer: str, cid: bytes, store: BlobStore, *, max_size: int,
                         timeout: float) -> None:
        """As ``fetch_blob_to_store``: a blob already held is not fetched; errors are
        WireError with the reason, or TooSlowError after ``timeout`` seconds; on any error
        nothing is stored."""
        with trio.fail_after(timeout):
            await trio.lowlevel.checkpoint()
            if store.has(cid):
                return
            limit = min(max_size, store.max_blob_size)
            server = self.network.peer(peer)
            if (server is None or server._blobs is None
                    or not self.network.reachable(self.peer_id, peer)):
                raise WireError(Reason.NOT_FOUND, "no blob stream to the peer")
            transfer = _Transfer(self.network, self.peer_id, peer)
            self.network._links[transfer] = None
            done = False
            try:
                with transfer.scope:
                    await self._copy(server, cid, store, limit)
                    done = True
            finally:
                self.network._links.pop(transfer, None)
            if not done:
                raise WireError(Reason.TRUNCATED, "stream reset mid-transfer")

    async def _copy(self, server: MemoryTransport, cid: bytes, store: BlobStore,
                    limit: int) -> None:
        data = await server._answer_blob(cid, limit)
        faults = server.blob_faults
        cut: int | None = None
        if faults.fail is Reason.HASH_MISMATCH:
            faults.failed += 1
            data = bytes([data[0] ^ 1]) + data[1:] if data else b"\x00"
        elif faults.fail is not None:
            cut = len(data) // 2
        writer = store.writer(expected_cid=cid)
        try:
            for i in range(0, max(len(data), 1), CHUNK_SIZE):
                await trio.lowlevel.checkpoint()
                if faults.fail is not None and cut is not None and i >= cut:
                    faults.failed += 1
                    raise WireError(faults.fail, "transfer failed")
                writer.write(data[i:i + CHUNK_SIZE])
            await trio.to_thread.run_sync(writer.commit)  # hash_mismatch raised here
            faults.served += 1
        finally:
            writer.abort()

    async def _answer_blob(self, cid: bytes, limit: int) -> bytes:
        """The server's side: its faults, then BLOB-5's answer (content, or a refusal)."""
        faults = self.blob_faults
        if faults.stall:
            faults.stalled += 1
            await trio.sleep_forever()
        if faults.busy > 0:
            faults.busy -= 1
            faults.busy_answers += 1
            await trio.sleep(faults.busy_wait)
            raise WireError(Reason.BUSY, "refused by the peer")
        assert self._blobs is not None
        size = self._blobs.size(cid)
        if size is None:
            raise WireError(Reason.NOT_FOUND, "refused by the peer")
        if size > limit:
            raise WireError(Reason.TOO_LARGE, "refused by the peer")
        data = self._blobs.get(cid)
        if data is None:
            raise WireError(Reason.NOT_FOUND, "refused by the peer")
        return data

    # -- the DHT ---------------------------------------------------------------------------

    async def dht_put(self, key: str, value: bytes, timeout: float) -> bool:
        await trio.lowlevel.checkpoint()
        return self.network.on_network(self.peer_id) and self.network.dht.put(key, value)

    async def dht_get(self, key: str, timeout: float) -> bytes | None:
        await trio.lowlevel.checkpoint()
        if not self.network.on_network(self.peer_id):
            return None
        return self.network.dht.get(key)

    async def provide(self, key: str, timeout: float) -> bool:
        await trio.lowlevel.checkpoint()
        if not self.network.on_network(self.peer_id):
            return False
        self.network.dht.provide(key, self.peer_id)
        return True

    async def find_providers(self, key: str, timeout: float) -> list[str]:
        """Providers of ``key`` other than this peer that it can reach now."""
        await trio.lowlevel.checkpoint()
        if not self.network.on_network(self.peer_id):
            return []
        return [p for p in self.network.dht.find_providers(key)
                if self.network.reachable(self.peer_id, p)]

    # -- connections -----------------------------------------------------------------------

    def connected(self, peer: str) -> bool:
        return self.network.reachable(self.peer_id, peer)

    async def ensure_connected(self, peer: str, addrs: list[str]) -> bool:
        await trio.lowlevel.checkpoint()
        return self.connected(peer)

    async def reconnect(self, peer: str, addrs: list[str]) -> bool:
        # Memory links do not go stale: there is no dead connection to drop.
        return await self.ensure_connected(peer, addrs)


if TYPE_CHECKING:  # both implement the ports, checked by mypy
    def _ports(t: MemoryTransport, e: MemoryExchange) -> tuple[Transport, Exchange]:
        return t, e
