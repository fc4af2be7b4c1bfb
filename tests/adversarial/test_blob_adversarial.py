"""blob/1 against misbehaving peers, over real libp2p hosts on 127.0.0.1.

A malicious server is a raw stream handler written here; a malicious client is a raw stream
opened against the real handler. The honest side must fail the transfer with the reason of
BLOB-8 to BLOB-13 (client) or reject, count and keep serving (server) (spec 05).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from libp2p.network.stream.exceptions import StreamError

from p2pnode.blobs.protocol import (
    CHUNK_SIZE,
    BlobFound,
    BlobRefused,
    BlobRequest,
    BlobRequestReader,
    body_frames,
    decode_response,
)
from p2pnode.blobs.store import TMP_DIR, BlobStore
from p2pnode.net.blob_protocol import (
    blob_protocol_id,
    fetch_blob,
    fetch_blob_to_store,
    make_blob_handler,
)
from p2pnode.net.host import NetStack
from p2pnode.wire import cbor
from p2pnode.wire.cid import cid_of
from p2pnode.wire.framing import FrameDecoder, encode_frame, encode_uvarint
from p2pnode.wire.reasons import Reason, WireError
from tests.blobs.helpers import NET, peer_of, two_hosts

LIMIT_S = 30
REAL = b"the real content"
CID = cid_of(REAL)

Script = Callable[[Any, BlobRequest], Awaitable[None]]


def serve_evil(server: NetStack, script: Script) -> list[BaseException]:
    """Answer blob/1 with ``script`` after reading the request; return its errors."""
    errors: list[BaseException] = []

    async def handler(stream: Any) -> None:
        reader = BlobRequestReader()
        try:
            while (req := reader.next_request()) is None:
                reader.receive_data(await stream.read(1024))
            await script(stream, req)
        except Exception as e:  # kept out of libp2p's nursery; the test may inspect it
            errors.append(e)

    server.host.set_stream_handler(blob_protocol_id(NET), handler)
    return errors


async def fetch_error(client: NetStack, server: NetStack, **kw: Any) -> Reason:
    with pytest.raises(WireError) as e:
        await fetch_blob(client.host, peer_of(server), CID, net=NET, **kw)
    return e.value.reason


def header(size: int) -> bytes:
    return encode_frame(BlobFound(size).encode())


# -- malicious servers -------------------------------------------------------------------


async def test_content_that_does_not_hash_to_the_cid(tmp_path: Path) -> None:
    fake = b"the fake content"
    big_fake = os.urandom(3 * CHUNK_SIZE + 1)

    async def lie(stream: Any, req: BlobRequest) -> None:
        body = fake if req.max_size == 1000 else big_fake
        await stream.write(header(len(body)) + body_frames(body))
        await stream.close()

    store = BlobStore(tmp_path / "c", tmp_path / "c.db")
    with trio.fail_after(LIMIT_S):
        async with two_hosts() as (server, client):
            serve_evil(server, lie)
            assert await fetch_error(client, server, max_size=1000) is Reason.HASH_MISMATCH
            assert await fetch_error(client, server) is Reason.HASH_MISMATCH
            with pytest.raises(WireError) as e:
                await fetch_blob_to_store(client.host, peer_of(server), CID, store, net=NET)
            assert e.value.reason is Reason.HASH_MISMATCH
    assert store.count() == 0 and list((store.root / TMP_DIR).iterdir()) == []


@pytest.mark.parametrize(
    "body",
    [
        encode_frame(REAL + b"!"),  # one frame longer than announced
        encode_frame(REAL[:5]) + encode_frame(REAL[5:] + b"!"),  # the second crosses it
        encode_uvarint(CHUNK_SIZE + 1),  # a frame longer than any body frame may be
    ],
    ids=["long-frame", "crossing-frame", "oversized-prefix"],
)
async def test_more_content_than_announced(body: bytes) -> None:
    async def oversend(stream: Any, req: BlobRequest) -> None:
        await stream.write(header(len(REAL)) + body)
        await stream.close()

    with trio.fail_after(LIMIT_S):
        async with two_hosts() as (server, client):
            serve_evil(server, oversend)
            assert await fetch_error(client, server) is Reason.TOO_LARGE


async def test_an_announced_size_over_max_fails_on_the_header_alone() -> None:
    go_on = trio.Event()
    body_refused = trio.Event()

    async def announce_huge(stream: Any, req: BlobRequest) -> None:
        await stream.write(header(req.max_size + 1))
        await go_on.wait()  # no content is sent before the client gave up
        try:
            await stream.write(os.urandom(1 << 20))
        except StreamError:
            body_refused.set()

    with trio.fail_after(LIMIT_S):
        async with two_hosts() as (server, client):
            serve_evil(server, announce_huge)
            # A client that waited for content would hit its timeout instead.
            assert await fetch_error(client, server, max_size=100,
                                     timeout=LIMIT_S) is Reason.TOO_LARGE
            go_on.set()
            await body_refused.wait()  # the client reset the stream


@pytest.mark.parametrize("sent", [b"", header(len(REAL)) + encode_frame(REAL[:4])],
                         ids=["before-header", "mid-body"])
async def test_a_stalling_server_times_the_client_out(sent: bytes) -> None:
    release = trio.Event()

    async def stall(stream: Any, req: BlobRequest) -> None:
        if sent:
            await stream.write(sent)
        await release.wait()

    with trio.fail_after(LIMIT_S):
        async with two_hosts() as (server, client):
            serve_evil(server, stall)
            with pytest.raises(trio.TooSlowError):
                await fetch_blob(client.host, peer_of(server), CID, net=NET, timeout=0.5)
            release.set()


async def test_a_server_that_ends_early_or_resets() -> None:
    endings = iter(["close", "reset"])

    async def short(stream: Any, req: BlobRequest) -> None:
        await stream.write(header(len(REAL)) + encode_frame(REAL[:4]))
        await (stream.close() if next(endings) == "close" else stream.reset())

    with trio.fail_after(LIMIT_S):
        async with two_hosts() as (server, client):
            serve_evil(server, short)
            assert await fetch_error(client, server) is Reason.TRUNCATED
            assert await fetch_error(client, server) is Reason.TRUNCATED


async def test_a_malformed_response() -> None:
    responses = iter([
        encode_frame(cbor.encode({"ok": True, "size": 3, "more": 1})),
        encode_frame(cbor.encode({"ok": False, "reason": "made_up"})),
        encode_frame(b"\x1c"),
    ])

    async def garble(stream: Any, req: BlobRequest) -> None:
        await stream.write(next(responses))
        await stream.close()

    with trio.fail_after(LIMIT_S):
        async with two_hosts() as (server, client):
            serve_evil(server, garble)
            assert await fetch_error(client, server) is Reason.UNKNOWN_FIELD
            assert await fetch_error(client, server) is Reason.BAD_FIELD
            assert await fetch_error(client, server) is Reason.MALFORMED


# -- malicious clients -------------------------------------------------------------------


async def raw_exchange(client: NetStack, server: NetStack, payload: bytes) -> bytes:
    """Open blob/1, send ``payload`` as is, return all the server sent until it ended."""
    stream = await client.host.new_stream(peer_of(server), [blob_protocol_id(NET)])
    if payload:
        await stream.write(payload)
    got = b""
    try:
        while chunk := await stream.read(65536):
            got += chunk
    except StreamError:  # EOF or reset: the server is done with us
        pass
    return got


def refusal(data: bytes) -> Reason:
    dec = FrameDecoder(64)
    dec.feed(data)
    frame = dec.next_frame()
    assert frame is not None and dec.buffered == 0
    response = decode_response(frame)
    assert isinstance(response, BlobRefused)
    return response.reason


async def test_bad_requests_are_refused_counted_and_the_server_keeps_serving(
    tmp_path: Path,
) -> None:
    store = BlobStore(tmp_path / "s", tmp_path / "s.db")
    cid = store.put(REAL)
    good = encode_frame(BlobRequest(cid, 100).encode())
    cases = [
        (encode_frame(b"\x1c"), Reason.MALFORMED),
        (encode_uvarint(1 << 20), Reason.TOO_LARGE),
        (encode_frame(cbor.encode({"cid": cid, "max": 1, "please": True})),
         Reason.UNKNOWN_FIELD),
        (encode_frame(cbor.encode({"cid": cid[:-1], "max": 1})), Reason.BAD_FIELD),
        (good + b"\x00", Reason.TRAILING_BYTES),
    ]
    rejects: list[Reason] = []
    with trio.fail_after(LIMIT_S):
        async with two_hosts() as (server, client):
            handler = make_blob_handler(store, rejects.append, request_timeout=0.5)
            server.host.set_stream_handler(blob_protocol_id(NET), handler)
            for payload, reason in cases:
                assert refusal(await raw_exchange(client, server, payload)) is reason
            # Silent: no request at all. The server gives up on it and resets the stream.
            assert await raw_exchange(client, server, b"") == b""
            assert await fetch_blob(client.host, peer_of(server), cid, net=NET) == REAL
    assert rejects == [r for _, r in cases] + [Reason.TRUNCATED]
    assert handler.served == 1 and handler.active == 0


@pytest.mark.parametrize(("max_concurrent", "max_per_peer"), [(1, 8), (8, 1)],
                         ids=["all-slots", "peer-slots"])
async def test_a_client_that_stops_reading_holds_its_slots_only(
    tmp_path: Path, max_concurrent: int, max_per_peer: int
) -> None:
    store = BlobStore(tmp_path / "s", tmp_path / "s.db")
    big = store.put(os.urandom(4 << 20))
    small = store.put(REAL)
    with trio.fail_after(LIMIT_S):
        async with two_hosts() as (server, client):
            handler = make_blob_handler(store, max_concurrent=max_concurrent,
                                        max_per_peer=max_per_peer, busy_wait=0.2)
            server.host.set_stream_handler(blob_protocol_id(NET), handler)
            hog = await client.host.new_stream(peer_of(server), [blob_protocol_id(NET)])
            await hog.write(encode_frame(BlobRequest(big, 8 << 20).encode()))
            while handler.active != 1:  # it never reads, so the server blocks mid-transfer
                await trio.sleep(0.01)
            with pytest.raises(WireError) as e:
                await fetch_blob(client.host, peer_of(server), small, net=NET)
            assert e.value.reason is Reason.BUSY
            # Refusals that need no transfer do not wait for a slot.
            with pytest.raises(WireError) as e:
                await fetch_blob(client.host, peer_of(server), cid_of(b"?"), net=NET)
            assert e.value.reason is Reason.NOT_FOUND
            await hog.reset()
            while handler.active:
                await trio.sleep(0.01)
            assert await fetch_blob(client.host, peer_of(server), small, net=NET) == REAL
    assert handler.served == 1
