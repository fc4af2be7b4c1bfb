"""Blob exchange, ``/p2pnode/<net>/blob/1``: fetch content-addressed bytes from a peer.

The normative text is spec/05-content.md: messages (CDDL in spec/schemas/blob.cddl), rules
BLOB-1 to BLOB-14, parameters and security considerations. In short:

::

    cid = h'1220' || sha2-256(content)          ; multihash sha2-256, 34 bytes (BLOB-1)

    BlobRequest = { "cid": bstr .size 34, "max": uint }             ; client -> server
    BlobResponse = BlobFound / BlobRefused                          ; server -> client
    BlobFound   = { "ok": true,  "size": uint }                     ; content follows
    BlobRefused = { "ok": false, "reason": tstr .size (1..32) }     ; a reason code
    BodyFrame = bstr .size (1..65536)           ; raw content, only after BlobFound

Every message is canonical CBOR in one frame (spec 01 §4.1: ``uvarint(len) || payload``);
body frames carry raw content bytes. The server refuses a bad request with its reason
(BLOB-2 to BLOB-4), answers ``not_found``, ``too_large`` or ``busy`` (BLOB-5, BLOB-6) or
sends the content (BLOB-7); the client checks the header, the size, every frame and the hash
before it uses a byte (BLOB-8 to BLOB-13).

This module is the sans-IO half: messages with ``encode``/``decode``, the pure decision
:func:`answer`, a request reader for servers and a response reader and
:class:`BlobReceiver` for clients. ``p2pnode/net/blob_protocol.py`` drives them over libp2p.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from p2pnode.wire import cbor
from p2pnode.wire.cid import CidHasher, check_cid
from p2pnode.wire.framing import FrameDecoder, encode_frame
from p2pnode.wire.reasons import Reason, WireError

# Parameters; their rationale is in spec/05-content.md §5.
CHUNK_SIZE = 65536
MAX_BLOB_SIZE = 64 << 20
MAX_REQUEST_SIZE = 64
MAX_HEADER_SIZE = 64
MAX_REASON_LEN = 32
REQUEST_TIMEOUT_S = 10.0
MAX_CONCURRENT_TRANSFERS = 8
MAX_TRANSFERS_PER_PEER = 4
BUSY_WAIT_S = 2.0
TRANSFER_TIMEOUT_S = 300.0
# BLOB-15: inbound streams of one peer open at once, of all peers, and the rate at which one
# peer may open new ones.
BLOB_STREAMS_PER_PEER = 16
MAX_BLOB_STREAMS = 64
BLOB_STREAM_RATE = 20.0
BLOB_STREAM_BURST = 40

_UINT64_MAX = (1 << 64) - 1
_REASONS = {r.value: r for r in Reason}


def _is_uint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _UINT64_MAX


def _check_keys(obj: Any, expected: frozenset[str], what: str) -> dict[Any, Any]:
    if not isinstance(obj, dict):
        raise WireError(Reason.BAD_FIELD, "%s is a map" % what)
    keys = set(obj)
    if keys - expected:
        raise WireError(Reason.UNKNOWN_FIELD, "%s fields %s" % (what, sorted(map(str, keys))))
    if keys != expected:
        raise WireError(Reason.BAD_FIELD, "%s lacks %s" % (what, sorted(expected - keys)))
    return obj


@dataclass(frozen=True, slots=True)
class BlobRequest:
    """``BlobRequest`` of the blob protocol (BLOB-2); ``max_size`` is ``"max"`` on the wire."""

    cid: bytes
    max_size: int

    _KEYS = frozenset({"cid", "max"})

    def __post_init__(self) -> None:
        check_cid(self.cid)
        if not _is_uint(self.max_size):
            raise WireError(Reason.BAD_FIELD, "max must be an unsigned 64-bit integer")

    def encode(self) -> bytes:
        return cbor.encode({"cid": self.cid, "max": self.max_size})

    @classmethod
    def decode(cls, payload: bytes) -> BlobRequest:
        obj = _check_keys(cbor.decode(payload, max_size=MAX_REQUEST_SIZE), cls._KEYS,
                          "request")
        return cls(cid=check_cid(obj["cid"]), max_size=obj["max"])


@dataclass(frozen=True, slots=True)
class BlobFound:
    """``BlobFound``: the server holds the blob; ``size`` content bytes follow (BLOB-7)."""

    size: int

    def __post_init__(self) -> None:
        if not _is_uint(self.size):
            raise WireError(Reason.BAD_FIELD, "size must be an unsigned 64-bit integer")

    def encode(self) -> bytes:
        return cbor.encode({"ok": True, "size": self.size})


@dataclass(frozen=True, slots=True)
class BlobRefused:
    """``BlobRefused``: no content follows; ``reason`` says why (BLOB-4 to BLOB-6)."""

    reason: Reason

    def encode(self) -> bytes:
        return cbor.encode({"ok": False, "reason": self.reason.value})


BlobResponse = BlobFound | BlobRefused
_FOUND_KEYS = frozenset({"ok", "size"})
_REFUSED_KEYS = frozenset({"ok", "reason"})


def decode_response(payload: bytes) -> BlobResponse:
    """Decode and check a ``BlobResponse`` frame (BLOB-8)."""
    obj = cbor.decode(payload, max_size=MAX_HEADER_SIZE)
    if not isinstance(obj, dict):
        raise WireError(Reason.BAD_FIELD, "response is a map")
    ok = obj.get("ok")
    if ok is True:
        obj = _check_keys(obj, _FOUND_KEYS, "BlobFound")
        return BlobFound(size=obj["size"])
    if ok is False:
        obj = _check_keys(obj, _REFUSED_KEYS, "BlobRefused")
        text = obj["reason"]
        if not isinstance(text, str) or not 0 < len(text) <= MAX_REASON_LEN:
            raise WireError(Reason.BAD_FIELD, "reason must be a short text string")
        reason = _REASONS.get(text)
        if reason is None:
            raise WireError(Reason.BAD_FIELD, "unknown reason %r" % text)
        return BlobRefused(reason)
    if "ok" not in obj:
        raise WireError(Reason.BAD_FIELD, "response lacks ok")
    raise WireError(Reason.BAD_FIELD, "ok must be a boolean")


def answer(request: BlobRequest, held_size: int | None) -> BlobResponse:
    """The server's answer to ``request`` given the size of the blob it holds (BLOB-5)."""
    if held_size is None:
        return BlobRefused(Reason.NOT_FOUND)
    if held_size > request.max_size:
        return BlobRefused(Reason.TOO_LARGE)
    return BlobFound(held_size)


def body_frames(content: bytes | bytearray | memoryview) -> bytes:
    """``content`` as full body frames of ``CHUNK_SIZE`` bytes and one shorter last frame.

    Callers that send a blob piecewise pass pieces whose length is a multiple of
    ``CHUNK_SIZE`` (all but the last), so the frames on the wire are the same.
    """
    view = memoryview(content)
    return b"".join(
        encode_frame(bytes(view[i : i + CHUNK_SIZE])) for i in range(0, len(view), CHUNK_SIZE)
    )


class BlobRequestReader:
    """Server side: feed stream bytes, get the one request (BLOB-2, BLOB-3)."""

    def __init__(self) -> None:
        self._decoder = FrameDecoder(MAX_REQUEST_SIZE)
        self._eof = False

    def receive_data(self, data: bytes) -> None:
        self._decoder.feed(data)

    def receive_eof(self) -> None:
        self._eof = True

    def next_request(self) -> BlobRequest | None:
        """The request once complete; None while more bytes are needed."""
        frame = self._decoder.next_frame()
        if frame is None:
            if self._eof:
                raise WireError(Reason.TRUNCATED, "stream ended before the request")
            return None
        if self._decoder.buffered:
            raise WireError(Reason.TRAILING_BYTES, "bytes after the request frame")
        return BlobRequest.decode(frame)


class BlobReceiver:
    """Checks the content of one transfer against its cid (BLOB-9, BLOB-11 to BLOB-13).

    ``announce(size)`` with the size from ``BlobFound``, ``feed`` every piece of content
    in order, ``finish()`` when the content is complete. Each check raises WireError.
    """

    def __init__(self, cid: bytes, max_size: int) -> None:
        self.cid = check_cid(cid)
        self.max_size = max_size
        self.size: int | None = None
        self.received = 0
        self._hasher = CidHasher()

    def announce(self, size: int) -> None:
        if self.size is not None:
            raise RuntimeError("size already announced")
        if size > self.max_size:
            raise WireError(Reason.TOO_LARGE, "announced %d > max %d" % (size, self.max_size))
        self.size = size

    @property
    def remaining(self) -> int:
        if self.size is None:
            raise RuntimeError("size not announced")
        return self.size - self.received

    @property
    def complete(self) -> bool:
        return self.size is not None and self.received == self.size

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        n = len(chunk)
        if n > self.remaining:
            raise WireError(
                Reason.TOO_LARGE,
                "%d bytes past the announced size %s" % (n - self.remaining, self.size),
            )
        self._hasher.update(chunk)
        self.received += n

    def finish(self) -> None:
        if self.remaining:
            raise WireError(Reason.TRUNCATED, "%d of %s bytes" % (self.received, self.size))
        if self._hasher.cid() != self.cid:
            raise WireError(Reason.HASH_MISMATCH, "content does not hash to the cid")


# -- client: response reader as events (the sans-IO half of fetch) -----------------------


@dataclass(frozen=True, slots=True)
class HeaderReceived:
    """The server answered ``BlobFound``; ``size`` content bytes follow."""

    size: int


@dataclass(frozen=True, slots=True)
class Refused:
    """The server answered ``BlobRefused``; the transfer is over."""

    reason: Reason


@dataclass(frozen=True, slots=True)
class ChunkReceived:
    """One body frame, already size-checked; not hash-checked until TransferComplete."""

    data: bytes


@dataclass(frozen=True, slots=True)
class TransferComplete:
    """All ``size`` bytes arrived and hash to the cid: the content is the blob."""


ResponseEvent = HeaderReceived | Refused | ChunkReceived | TransferComplete


class _State(Enum):
    HEADER = "header"
    BODY = "body"
    DONE = "done"
    FAILED = "failed"


class BlobResponseReader:
    """Client side: feed stream bytes in, pull checked events out (BLOB-8 to BLOB-14).

    ``receive_data(b)`` with what the stream gave, ``receive_eof()`` when it ended, and
    ``next_event()`` until it returns None (more bytes needed). After a WireError the
    reader is spent; after ``Refused`` or ``TransferComplete`` the transfer is over.
    """

    def __init__(self, cid: bytes, max_size: int) -> None:
        self.receiver = BlobReceiver(cid, max_size)
        self._decoder = FrameDecoder(MAX_HEADER_SIZE)
        self._state = _State.HEADER
        self._eof = False

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    def receive_data(self, data: bytes) -> None:
        if self._state in (_State.DONE, _State.FAILED):
            if data and self._state is _State.DONE:
                self._fail()
                raise WireError(Reason.TOO_LARGE, "bytes after the transfer")
            return
        self._decoder.feed(data)

    def receive_eof(self) -> None:
        self._eof = True

    def next_event(self) -> ResponseEvent | None:
        if self._state is _State.FAILED:
            raise RuntimeError("the transfer already failed")
        if self._state is _State.DONE:
            return None
        try:
            return self._step()
        except WireError:
            self._fail()
            raise

    def _fail(self) -> None:
        self._state = _State.FAILED

    def _step(self) -> ResponseEvent | None:
        if self._state is _State.BODY and self.receiver.complete:
            return self._complete()
        frame = self._decoder.next_frame()
        if frame is None:
            if self._eof:
                raise WireError(
                    Reason.TRUNCATED,
                    "stream ended before the header" if self._state is _State.HEADER
                    else "stream ended after %d of %s bytes" % (self.receiver.received,
                                                                self.receiver.size),
                )
            return None
        if self._state is _State.HEADER:
            response = decode_response(frame)
            if isinstance(response, BlobRefused):
                self._state = _State.DONE
                return Refused(response.reason)
            self.receiver.announce(response.size)
            self._decoder.max_frame = CHUNK_SIZE
            self._state = _State.BODY
            return HeaderReceived(response.size)
        if not frame:
            raise WireError(Reason.BAD_FIELD, "empty body frame")
        self.receiver.feed(frame)
        return ChunkReceived(frame)

    def _complete(self) -> TransferComplete:
        if self._decoder.buffered:
            raise WireError(Reason.TOO_LARGE, "bytes after the announced size")
        self.receiver.finish()
        self._state = _State.DONE
        return TransferComplete()
