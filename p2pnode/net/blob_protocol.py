"""The libp2p shell of ``/p2pnode/<net>/blob/1`` (rules in spec/05-content.md).

Server: :class:`BlobHandler` (``make_blob_handler``) for ``host.set_stream_handler``.
Client: :func:`fetch_blob` (content in memory) and :func:`fetch_blob_to_store`.

Both read the stream as fast as it delivers: Yamux in py-libp2p 0.8 resets a stream whose
writer waited more than ~5 s for the reader to open its window, so no side stops reading
to do slow work mid-transfer (disk reads of large blobs run in a worker thread; the
client's fsync runs after the last byte arrived).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO

import trio
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF, StreamError
from libp2p.peer.id import ID

from p2pnode.blobs.protocol import (
    BLOB_STREAM_BURST,
    BLOB_STREAM_RATE,
    BLOB_STREAMS_PER_PEER,
    BUSY_WAIT_S,
    CHUNK_SIZE,
    MAX_BLOB_SIZE,
    MAX_BLOB_STREAMS,
    MAX_CONCURRENT_TRANSFERS,
    MAX_TRANSFERS_PER_PEER,
    REQUEST_TIMEOUT_S,
    TRANSFER_TIMEOUT_S,
    BlobFound,
    BlobRefused,
    BlobRequest,
    BlobRequestReader,
    BlobResponse,
    BlobResponseReader,
    ChunkReceived,
    Refused,
    TransferComplete,
    answer,
    body_frames,
)
from p2pnode.blobs.store import BlobStore
from p2pnode.log import event
from p2pnode.net.limits import Clock, StreamLimiter, stream_peer
from p2pnode.ratelimit import StreamLimits
from p2pnode.wire.framing import encode_frame
from p2pnode.wire.reasons import Reason, WireError

log = logging.getLogger("p2pnode.net.blob")

# Yamux buffers at most one window (256 KiB) per stream; one read takes all of it.
READ_SIZE = 256 * 1024
# The server reads and sends a blob in pieces of 16 body frames (1 MiB) ...
SEND_BATCH = 16 * CHUNK_SIZE
# ... and moves those reads to a worker thread for blobs larger than this.
THREAD_READ_MIN = 4 * CHUNK_SIZE
FETCH_TIMEOUT_S = 120.0
# Closing or resetting a stream after a transfer never waits longer than this.
CLEANUP_TIMEOUT_S = 2.0

RejectCounter = Callable[[Reason], None]
BLOB_STREAM_LIMITS = StreamLimits(per_peer=BLOB_STREAMS_PER_PEER, total=MAX_BLOB_STREAMS,
                                  rate=BLOB_STREAM_RATE, burst=BLOB_STREAM_BURST)


STREAM_OPEN_TIMEOUT_S = 5.0


class NoStream(WireError):
    """No stream to the peer could be opened: a transport failure, not the peer's answer."""


def blob_protocol_id(net: str) -> TProtocol:
    return TProtocol(f"/p2pnode/{net}/blob/1")


async def _close(stream: Any, *, reset: bool) -> None:
    """Close (or reset) ``stream`` even inside a cancelled scope; never raises."""
    with trio.CancelScope(deadline=trio.current_time() + CLEANUP_TIMEOUT_S, shield=True):
        try:
            await (stream.reset() if reset else stream.close())
        except Exception:  # the peer may have reset it first; nothing left to do
            pass


async def _read(stream: Any) -> bytes:
    """Up to READ_SIZE bytes; b"" at the end of the stream; WireError(TRUNCATED) on reset."""
    try:
        return bytes(await stream.read(READ_SIZE))
    except StreamEOF:
        return b""
    except StreamError as e:
        raise WireError(Reason.TRUNCATED, f"stream failed: {type(e).__name__}") from e


async def _write(stream: Any, data: bytes) -> None:
    try:
        await stream.write(data)
    except StreamError as e:
        raise WireError(Reason.TRUNCATED, f"stream failed: {type(e).__name__}") from e


# -- server ----------------------------------------------------------------------------------


class BlobHandler:
    """Serves blobs from a :class:`BlobStore` on inbound blob/1 streams (BLOB-2 to BLOB-7).

    An instance is the async stream handler: ``host.set_stream_handler(pid, handler)``.
    A stream over ``stream_limits`` is reset unread (BLOB-15) and counted as
    ``rate_limited``; ``clock`` (monotonic seconds, default trio's) drives those limits.
    Requests that break the protocol are counted with ``metrics_reject(reason)``; answers
    such as not_found, too_large and busy are normal and not counted. No exception leaves
    the handler: py-libp2p runs it in the connection's nursery, where one would close the
    connection.
    """

    def __init__(
        self,
        store: BlobStore,
        metrics_reject: RejectCounter | None = None,
        *,
        max_concurrent: int = MAX_CONCURRENT_TRANSFERS,
        max_per_peer: int = MAX_TRANSFERS_PER_PEER,
        request_timeout: float = REQUEST_TIMEOUT_S,
        busy_wait: float = BUSY_WAIT_S,
        transfer_timeout: float = TRANSFER_TIMEOUT_S,
        stream_limits: StreamLimits = BLOB_STREAM_LIMITS,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.streams = StreamLimiter(stream_limits, clock)
        self._reject = metrics_reject
        self._slots = trio.Semaphore(max_concurrent)
        self.max_per_peer = max_per_peer
        # peer -> [its slots, streams using them]; dropped when the last one ends
        self._per_peer: dict[str, list[Any]] = {}
        self.request_timeout = request_timeout
        self.busy_wait = busy_wait
        self.transfer_timeout = transfer_timeout
        self.active = 0
        """Transfers in progress (a gauge for metrics)."""
        self.served = 0
        """Transfers completed since start."""
        self.bytes_served = 0

    async def __call__(self, stream: Any) -> None:
        if not await self.streams.serve(stream, self._guarded):
            self._count(Reason.RATE_LIMITED)
            event(log, "blob.stream.limited", logging.DEBUG, peer=stream_peer(stream))

    async def _guarded(self, stream: Any) -> None:
        try:
            await self._handle(stream)
        except Exception as e:  # see the class docstring
            event(log, "blob.serve.failed", logging.DEBUG, error=f"{type(e).__name__}: {e}")
            await _close(stream, reset=True)

    def _count(self, reason: Reason) -> None:
        if self._reject is not None:
            self._reject(reason)

    async def _handle(self, stream: Any) -> None:
        reader = BlobRequestReader()
        request: BlobRequest | None = None
        try:
            with trio.fail_after(self.request_timeout):
                while request is None:
                    request = reader.next_request()
                    if request is None:
                        data = await _read(stream)
                        if data:
                            reader.receive_data(data)
                        else:
                            reader.receive_eof()
        except trio.TooSlowError:
            self._count(Reason.TRUNCATED)
            event(log, "blob.request.timeout", logging.DEBUG)
            await _close(stream, reset=True)
            return
        except WireError as e:
            self._count(e.reason)
            event(log, "blob.request.rejected", logging.DEBUG, reason=e.reason.value,
                  detail=e.detail)
            await self._respond_and_close(stream, BlobRefused(e.reason))
            return
        await self._serve(stream, request)

    async def _respond_and_close(self, stream: Any, response: BlobResponse) -> None:
        with trio.move_on_after(self.request_timeout):
            with contextlib.suppress(WireError):
                await _write(stream, encode_frame(response.encode()))
        await _close(stream, reset=False)

    async def _serve(self, stream: Any, request: BlobRequest) -> None:
        f = self.store.open(request.cid)
        if f is None:
            await self._respond_and_close(stream, answer(request, None))
            return
        with f:
            # The size of the open file, not of the index row: it is what we can send.
            size = os.fstat(f.fileno()).st_size
            response = answer(request, size)
            if not isinstance(response, BlobFound):
                await self._respond_and_close(stream, response)
                return
            async with self._slot(stream_peer(stream)) as acquired:
                if not acquired:
                    await self._respond_and_close(stream, BlobRefused(Reason.BUSY))
                    return
                self.active += 1
                try:
                    with trio.fail_after(self.transfer_timeout):
                        await self._send(stream, f, response)
                finally:
                    self.active -= 1
        self.served += 1
        self.bytes_served += size
        await _close(stream, reset=False)

    @contextlib.asynccontextmanager
    async def _slot(self, peer: str) -> AsyncIterator[bool]:
        """A transfer slot of ``peer`` and one of the server, waiting up to ``busy_wait``
        for both; yields whether it got them."""
        entry = self._per_peer.get(peer)
        if entry is None:
            entry = self._per_peer[peer] = [trio.Semaphore(self.max_per_peer), 0]
        peer_slots: trio.Semaphore = entry[0]
        entry[1] += 1
        got_peer = got_server = False
        try:
            with trio.move_on_after(self.busy_wait):
                await peer_slots.acquire()
                got_peer = True
                await self._slots.acquire()
                got_server = True
            yield got_server
        finally:
            if got_server:
                self._slots.release()
            if got_peer:
                peer_slots.release()
            entry[1] -= 1
            if not entry[1]:
                del self._per_peer[peer]

    async def _send(self, stream: Any, f: BinaryIO, found: BlobFound) -> None:
        await _write(stream, encode_frame(found.encode()))
        sent = 0
        while sent < found.size:
            want = min(SEND_BATCH, found.size - sent)
            if found.size >= THREAD_READ_MIN:
                piece = await trio.to_thread.run_sync(f.read, want)
            else:
                piece = f.read(want)
            if len(piece) != want:
                raise OSError("blob file shorter than announced")
            await _write(stream, body_frames(piece))
            sent += want


def make_blob_handler(
    store: BlobStore,
    metrics_reject: RejectCounter | None = None,
    *,
    max_concurrent: int = MAX_CONCURRENT_TRANSFERS,
    max_per_peer: int = MAX_TRANSFERS_PER_PEER,
    request_timeout: float = REQUEST_TIMEOUT_S,
    busy_wait: float = BUSY_WAIT_S,
    transfer_timeout: float = TRANSFER_TIMEOUT_S,
    stream_limits: StreamLimits = BLOB_STREAM_LIMITS,
    clock: Clock | None = None,
) -> BlobHandler:
    """The stream handler of blob/1 for ``host.set_stream_handler``; see BlobHandler."""
    return BlobHandler(store, metrics_reject, max_concurrent=max_concurrent,
                       max_per_peer=max_per_peer, request_timeout=request_timeout,
                       busy_wait=busy_wait, transfer_timeout=transfer_timeout,
                       stream_limits=stream_limits, clock=clock)


def register_blob_protocol(
    host: Any, store: BlobStore, net: str, metrics_reject: RejectCounter | None = None
) -> BlobHandler:
    """Serve ``store`` on ``host`` as ``/p2pnode/<net>/blob/1``; return the handler."""
    handler = make_blob_handler(store, metrics_reject)
    host.set_stream_handler(blob_protocol_id(net), handler)
    return handler


# -- client ----------------------------------------------------------------------------------


def _peer(peer_id: ID | str) -> ID:
    return ID.from_base58(peer_id) if isinstance(peer_id, str) else peer_id


async def _fetch(
    host: Any,
    peer_id: ID | str,
    cid: bytes,
    *,
    net: str,
    max_size: int,
    timeout: float,
    sink: Callable[[bytes], object],
) -> None:
    """Run one fetch, handing each size-checked chunk to ``sink``; returns once the whole
    content has arrived and hashes to ``cid``. See :func:`fetch_blob` for the errors."""
    request = BlobRequest(cid, max_size)
    reader = BlobResponseReader(cid, max_size)
    pid = _peer(peer_id)
    stream: Any = None
    clean = False
    try:
        with trio.fail_after(timeout):
            try:
                # A connection that cannot even open a stream quickly is dead (a peer that
                # restarted leaves one behind): say so, rather than wait out the fetch.
                with trio.fail_after(min(timeout, STREAM_OPEN_TIMEOUT_S)):
                    stream = await host.new_stream(pid, [blob_protocol_id(net)])
            except (Exception, trio.TooSlowError) as e:  # not connected, dead, unsupported
                raise NoStream(
                    Reason.NOT_FOUND, f"no blob stream to the peer: {type(e).__name__}: {e}"
                ) from e
            await _write(stream, encode_frame(request.encode()))
            with contextlib.suppress(Exception):  # a broken stream shows on the next read
                await stream.close_write()
            while True:
                ev = reader.next_event()
                if ev is None:
                    data = await _read(stream)
                    if data:
                        reader.receive_data(data)
                    else:
                        reader.receive_eof()
                elif isinstance(ev, ChunkReceived):
                    sink(ev.data)
                elif isinstance(ev, Refused):
                    clean = True
                    raise WireError(ev.reason, "refused by the peer")
                elif isinstance(ev, TransferComplete):
                    clean = True
                    return
    finally:
        if stream is not None:
            await _close(stream, reset=not clean)


async def fetch_blob(
    host: Any,
    peer_id: ID | str,
    cid: bytes,
    *,
    net: str,
    max_size: int = MAX_BLOB_SIZE,
    timeout: float = FETCH_TIMEOUT_S,
) -> bytes:
    """Fetch the blob ``cid`` from ``peer_id``; return its content, hash-checked.

    Raises ``WireError`` with the reason on every failure the peer can cause: its refusal
    (``not_found``, ``too_large``, ``busy``, ...), a response that breaks BLOB-8 to BLOB-13
    (``too_large``, ``bad_field``, ``truncated``, ``hash_mismatch``, codec reasons), and
    ``not_found`` also when no blob/1 stream can be opened to the peer. Raises
    ``trio.TooSlowError`` when the whole fetch takes longer than ``timeout`` seconds.
    """
    parts: list[bytes] = []
    await _fetch(host, peer_id, cid, net=net, max_size=max_size, timeout=timeout,
                 sink=parts.append)
    return b"".join(parts)


async def fetch_blob_to_store(
    host: Any,
    peer_id: ID | str,
    cid: bytes,
    store: BlobStore,
    *,
    net: str,
    max_size: int | None = None,
    timeout: float = FETCH_TIMEOUT_S,
) -> bytes:
    """Fetch ``cid`` into ``store`` chunk by chunk (never the whole blob in memory); return
    ``cid`` once it is durably stored. A blob already held is not fetched again.

    ``max_size`` defaults to, and is capped by, the store's limit. Errors as
    :func:`fetch_blob`; on any error nothing is stored.
    """
    if store.has(cid):
        return cid
    limit = store.max_blob_size if max_size is None else min(max_size, store.max_blob_size)
    writer = store.writer(expected_cid=cid)
    try:
        await _fetch(host, peer_id, cid, net=net, max_size=limit, timeout=timeout,
                     sink=writer.write)
        # After the stream is done: the fsync may take long and no reader waits on it.
        return await trio.to_thread.run_sync(writer.commit)
    finally:
        writer.abort()
