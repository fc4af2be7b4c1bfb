"""blob/1 between two real libp2p hosts on 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from p2pnode.blobs.store import TMP_DIR, BlobStore
from p2pnode.net.blob_protocol import (
    blob_protocol_id,
    fetch_blob,
    fetch_blob_to_store,
    make_blob_handler,
    register_blob_protocol,
)
from p2pnode.wire.cid import cid_of
from p2pnode.wire.reasons import Reason, WireError
from tests.blobs.helpers import NET, peer_of, two_hosts

LIMIT_S = 30


def stores(tmp: Path) -> tuple[BlobStore, BlobStore]:
    return (BlobStore(tmp / "server", tmp / "server.db"),
            BlobStore(tmp / "client", tmp / "client.db"))


async def test_fetch_large_tiny_and_empty_blobs(tmp_path: Path) -> None:
    served, _ = stores(tmp_path)
    big = os.urandom(5 << 20)
    tiny = b"x"
    cids = [served.put(b) for b in (big, tiny, b"")]
    rejects: list[Reason] = []
    with trio.fail_after(LIMIT_S):
        async with two_hosts() as (server, client):
            handler = register_blob_protocol(server.host, served, NET, rejects.append)
            got = [await fetch_blob(client.host, peer_of(server), c, net=NET) for c in cids]
            # The peer id also works in its text form.
            again = await fetch_blob(client.host, server.peer_id, cids[1], net=NET)
    assert got == [big, tiny, b""] and again == tiny
    assert handler.served == 4 and handler.active == 0
    assert handler.bytes_served == len(big) + 2 * len(tiny)
    assert rejects == []


async def test_fetch_into_a_store(tmp_path: Path) -> None:
    served, fetched = stores(tmp_path)
    data = os.urandom(3 * 65536 + 5)
    cid = served.put(data)
    with trio.fail_after(LIMIT_S):
        async with two_hosts() as (server, client):
            handler = register_blob_protocol(server.host, served, NET)
            assert await fetch_blob_to_store(client.host, peer_of(server), cid, fetched,
                                             net=NET) == cid
            # Held now: a second call does not ask the peer again.
            await fetch_blob_to_store(client.host, peer_of(server), cid, fetched, net=NET)
    assert fetched.get(cid) == data and fetched.verify(cid)
    assert handler.served == 1
    assert list((fetched.root / TMP_DIR).iterdir()) == []


async def test_not_found_and_too_large(tmp_path: Path) -> None:
    served, _ = stores(tmp_path)
    cid = served.put(b"a" * 1000)
    missing = cid_of(b"nobody has this")
    with trio.fail_after(LIMIT_S):
        async with two_hosts() as (server, client):
            handler = register_blob_protocol(server.host, served, NET)
            with pytest.raises(WireError) as e:
                await fetch_blob(client.host, peer_of(server), missing, net=NET)
            assert e.value.reason is Reason.NOT_FOUND
            with pytest.raises(WireError) as e:
                await fetch_blob(client.host, peer_of(server), cid, net=NET, max_size=999)
            assert e.value.reason is Reason.TOO_LARGE
            small = BlobStore(tmp_path / "small", tmp_path / "small.db", max_blob_size=999)
            with pytest.raises(WireError) as e:
                await fetch_blob_to_store(client.host, peer_of(server), cid, small, net=NET)
            assert e.value.reason is Reason.TOO_LARGE
            assert await fetch_blob(client.host, peer_of(server), cid, net=NET,
                                    max_size=1000) == b"a" * 1000
    assert not small.has(cid) and handler.served == 1


async def test_a_peer_without_the_protocol_is_not_found(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT_S):
        async with two_hosts() as (server, client):
            with pytest.raises(WireError) as e:
                await fetch_blob(client.host, peer_of(server), cid_of(b"x"), net=NET)
            assert e.value.reason is Reason.NOT_FOUND
            # A handler for this network does not answer another network's protocol id.
            served, _ = stores(tmp_path)
            cid = served.put(b"x")
            register_blob_protocol(server.host, served, NET)
            with pytest.raises(WireError) as e:
                await fetch_blob(client.host, peer_of(server), cid, net="othernet")
            assert e.value.reason is Reason.NOT_FOUND
            assert await fetch_blob(client.host, peer_of(server), cid, net=NET) == b"x"


async def test_concurrent_fetches(tmp_path: Path) -> None:
    served, _ = stores(tmp_path)
    blobs = [os.urandom(200_000 + i) for i in range(12)]
    cids = [served.put(b) for b in blobs]
    results: dict[int, bytes] = {}
    with trio.fail_after(LIMIT_S):
        async with two_hosts() as (server, client):
            # More fetches than the server's slots for one peer: the rest wait their turn.
            handler = make_blob_handler(served, max_per_peer=2, busy_wait=LIMIT_S)
            server.host.set_stream_handler(blob_protocol_id(NET), handler)

            async def one(i: int) -> None:
                results[i] = await fetch_blob(client.host, peer_of(server), cids[i], net=NET)

            async with trio.open_nursery() as nursery:
                for i in range(len(cids)):
                    nursery.start_soon(one, i)
    assert [results[i] for i in range(len(blobs))] == blobs
    assert handler.served == len(blobs) and handler.active == 0
