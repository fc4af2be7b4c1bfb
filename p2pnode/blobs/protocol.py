"""Blob exchange, ``/p2pnode/<net>/blob/1``: fetch content-addressed bytes from a peer.

Purpose
-------
Job inputs and results travel as blobs named by their content id, so a receiver checks
what it got against the name it asked for and no peer can substitute other bytes. A peer
that holds a blob serves it to any peer that asks; the protocol carries no signatures.

Content id
----------
::

    cid = h'1220' || sha2-256(content)          ; multihash sha2-256, 34 bytes

Messages
--------
Every message is canonical CBOR (spec 01 §2) in one length-prefixed frame (spec 01 §5:
``uvarint(len) || payload``). Body frames carry raw content bytes, not CBOR.

::

    BlobRequest = {                             ; client -> server, one frame
        "cid": bstr .size 34,                   ; starts with h'1220'
        "max": uint,                            ; largest size the client accepts, bytes
    }

    BlobResponse = BlobFound / BlobRefused      ; server -> client, one frame
    BlobFound   = { "ok": true,  "size": uint } ; the content follows
    BlobRefused = { "ok": false, "reason": tstr .size (1..32) }   ; a reason code

    BlobBody = *BodyFrame                       ; only after BlobFound
    BodyFrame = bstr .size (1..65536)           ; raw content, framed as above

Rules
-----
1. The client opens a stream with protocol id ``/p2pnode/<net>/blob/1``, sends one
   ``BlobRequest`` frame and SHOULD then close its write side. It MUST NOT send more.
2. The server MUST refuse a request frame longer than ``MAX_REQUEST_SIZE`` as soon as its
   length prefix is read (``too_large``), and a request that is not complete within
   ``REQUEST_TIMEOUT`` (the stream is reset; counted as ``truncated``). Bytes after the
   request frame are refused (``trailing_bytes``).
3. A request with a field other than ``cid`` and ``max`` is refused (``unknown_field``);
   a missing field, a ``max`` that is not an unsigned integer, or a ``cid`` that is not
   34 bytes starting with ``h'1220'`` is refused (``bad_field``); input that is not
   canonical CBOR is refused with the codec's reason (spec 01).
4. The server answers a refused request with ``BlobRefused`` carrying that reason when the
   stream still allows it, then closes the stream; it MUST NOT stop serving other streams.
5. A server that does not hold ``cid`` answers ``BlobRefused("not_found")``. A server that
   holds it with ``size > max`` answers ``BlobRefused("too_large")`` and sends no content.
   A server SHOULD bound its transfers to ``MAX_TRANSFERS_PER_PEER`` per requesting peer
   and ``MAX_CONCURRENT_TRANSFERS`` in all; a request over either bound MAY wait up to
   ``BUSY_WAIT`` for a slot and is then answered ``BlobRefused("busy")``. Clients SHOULD
   run at most ``MAX_TRANSFERS_PER_PEER`` fetches from one peer at a time.
6. Otherwise the server answers ``BlobFound(size)`` followed by the content in body frames
   of 1 to ``CHUNK_SIZE`` bytes whose lengths sum to exactly ``size`` (a blob of size 0
   has no body frame), then closes its write side. Senders SHOULD fill every body frame
   but the last.
7. The client MUST check, failing the fetch with the reason named:
   a. the response frame is at most ``MAX_HEADER_SIZE`` bytes and is a valid
      ``BlobResponse`` with no other fields (``too_large``, ``unknown_field``,
      ``bad_field``, or the codec's reason); a ``reason`` that is not a reason code of
      spec 01 is ``bad_field``;
   b. ``size <= max`` on ``BlobFound``, before it reads any content (``too_large``);
   c. every body frame is at most ``CHUNK_SIZE`` bytes, decided from its length prefix
      (``too_large``) and not empty (``bad_field``);
   d. the content never exceeds ``size``: a frame that goes past it, or bytes received
      after the last one, fail the fetch (``too_large``);
   e. the stream does not end or reset before ``size`` bytes arrived (``truncated``);
   f. ``sha2-256`` of the content equals the digest in ``cid`` (``hash_mismatch``).
   Content MUST NOT be used or stored as the blob before check f passed.
8. A ``BlobRefused`` is a failed fetch with the server's reason. The client bounds the
   whole fetch by its own deadline; the reference client raises ``trio.TooSlowError``
   when it passes (a slow peer is not proven faulty, a peer failing rule 7 is).

Parameters
----------
=========================  =========  ============================================
name                       default    rationale
=========================  =========  ============================================
CHUNK_SIZE                 65536      one Yamux data frame; keeps the reader prompt
MAX_BLOB_SIZE              64 MiB     default store and client limit (``max``)
MAX_REQUEST_SIZE           64 bytes   a request encodes to at most 54 bytes
MAX_HEADER_SIZE            64 bytes   a response header encodes to at most 46 bytes
MAX_REASON_LEN             32 bytes   longest reason code with room to spare
REQUEST_TIMEOUT            10 s       a request is one small frame
MAX_CONCURRENT_TRANSFERS   8          bounds the disk and bandwidth one server spends
MAX_TRANSFERS_PER_PEER     4          one peer cannot take every slot
BUSY_WAIT                  2 s        short queue before ``busy``
TRANSFER_TIMEOUT           300 s      server-side bound on one transfer
=========================  =========  ============================================

Security considerations
-----------------------
- The content id is the only trust anchor: a server can lie about anything else, so the
  client checks size on every frame and the hash at the end (rule 7). Partial content is
  discarded, never stored under the cid.
- ``max`` lets the client refuse a large blob before any content flows; the per-frame
  check bounds its memory to ``size`` even if the server keeps sending.
- A server spends one request frame of read buffer, one file handle and
  ``CHUNK_SIZE``-sized reads per transfer, with a concurrency bound; slow or silent
  clients are cut off by ``REQUEST_TIMEOUT`` and by the muxer's flow-control timeout. A
  client that reads just fast enough to keep a transfer alive holds a slot up to
  ``TRANSFER_TIMEOUT``; the per-peer bound keeps one peer from holding them all.
- The protocol reveals which blobs a peer holds to anyone who asks by cid; blobs are
  public job material and must not carry secrets.

This module is the sans-IO half: messages with ``encode``/``decode``, the pure decision
:func:`answer`, a request reader for servers and a response reader and
:class:`BlobReceiver` for clients. ``p2pnode/net/blob_protocol.py`` drives them over libp2p.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from p2pnode.blobs.cid import CidHasher, check_cid
from p2pnode.wire import cbor
from p2pnode.wire.framing import FrameDecoder, encode_frame
from p2pnode.wire.reasons import Reason, WireError

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
    """``BlobRequest`` of the blob protocol (rule 1); ``max_size`` is ``"max"`` on the wire."""

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
    """``BlobFound``: the server holds the blob; ``size`` content bytes follow (rule 6)."""

    size: int

    def __post_init__(self) -> None:
        if not _is_uint(self.size):
            raise WireError(Reason.BAD_FIELD, "size must be an unsigned 64-bit integer")

    def encode(self) -> bytes:
        return cbor.encode({"ok": True, "size": self.size})


@dataclass(frozen=True, slots=True)
class BlobRefused:
    """``BlobRefused``: no content follows; ``reason`` says why (rules 4 and 5)."""

    reason: Reason

    def encode(self) -> bytes:
        return cbor.encode({"ok": False, "reason": self.reason.value})


BlobResponse = BlobFound | BlobRefused
_FOUND_KEYS = frozenset({"ok", "size"})
_REFUSED_KEYS = frozenset({"ok", "reason"})


def decode_response(payload: bytes) -> BlobResponse:
    """Decode and check a ``BlobResponse`` frame (rule 7a)."""
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
    """The server's answer to ``request`` given the size of the blob it holds (rule 5)."""
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
    """Server side: feed stream bytes, get the one request (rules 1 to 3)."""

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
    """Checks the content of one transfer against its cid (rule 7b, 7d, 7e, 7f).

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
    """Client side: feed stream bytes in, pull checked events out (rule 7).

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
