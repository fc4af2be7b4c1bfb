"""The in-memory Transport: exchanges as frames, blob fetches with the wire's reasons, the
shared DHT, and cutting peers off."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pnode.blobs.store import BlobStore
from p2pnode.identity import Identity
from p2pnode.jobs.model import MAX_FRAME
from p2pnode.ports import Exchange, TransportError
from p2pnode.services.memory import MemoryNetwork, MemoryTransport
from p2pnode.wire.cid import cid_of
from p2pnode.wire.reasons import Reason, WireError


async def _in_loop(fn: Callable[..., Any], *args: Any, **_options: Any) -> Any:
    await trio.lowlevel.checkpoint()
    return fn(*args)


@pytest.fixture(autouse=True)
def no_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # The autojump clock would jump past a fetch's timeout while a thread commits a blob.
    monkeypatch.setattr(trio.to_thread, "run_sync", _in_loop)


class Peer:
    def __init__(self, net: MemoryNetwork, seed: int, home: Path) -> None:
        self.identity = Identity(bytes([seed]) * 32)
        self.rejects: list[Reason] = []
        self.t: MemoryTransport = net.transport(self.identity.peer_id,
                                                self.identity.public_key,
                                                on_reject=self.rejects.append)
        self.blobs = BlobStore(home / f"b{seed}", home / f"b{seed}.db")
        self.t.serve_blobs(self.blobs)
        self.seen: list[tuple[bytes, bytes]] = []

    @property
    def id(self) -> str:
        return self.t.peer_id

    async def echo(self, ex: Exchange, remote: bytes, first: bytes) -> None:
        self.seen.append((remote, first))
        await ex.send(b"echo:" + first)
        while True:
            await ex.send(b"echo:" + await ex.receive(60))


@pytest.fixture
def net() -> MemoryNetwork:
    return MemoryNetwork()


@pytest.fixture
def peers(net: MemoryNetwork, tmp_path: Path) -> Iterator[list[Peer]]:
    ps = [Peer(net, i + 1, tmp_path) for i in range(3)]
    for p in ps:
        p.t.serve_jobs(p.echo)
    yield ps
    for p in ps:
        p.blobs.close()


@asynccontextmanager
async def online(*ps: Peer) -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        for p in ps:
            await nursery.start(p.t.run)
        yield nursery
        nursery.cancel_scope.cancel()


async def test_an_exchange_carries_frames_and_names_the_opener(peers: list[Peer]) -> None:
    a, b, _ = peers
    async with online(a, b):
        ex = await a.t.open_job(b.id)
        await ex.send(b"hello")
        assert await ex.receive(5) == b"echo:hello"
        await ex.send(b"")
        assert await ex.receive(5) == b"echo:"
        await ex.close()
        assert b.seen == [(a.identity.public_key, b"hello")]
        assert a.t.connected(b.id) and await a.t.ensure_connected(b.id, [])


async def test_a_frame_over_the_limit_is_refused_by_the_reader(peers: list[Peer]) -> None:
    a, b, _ = peers
    async with online(a, b):
        ex = await a.t.open_job(b.id)
        await ex.send(b"x" * (MAX_FRAME + 1))
        with pytest.raises(WireError) as e:
            await ex.receive(5)
        assert e.value.reason is Reason.TRUNCATED  # the server dropped the exchange
        assert b.rejects == [Reason.TOO_LARGE] and b.seen == []


async def test_no_exchange_with_a_peer_that_is_unknown_stopped_or_cut_off(
        net: MemoryNetwork, peers: list[Peer]) -> None:
    a, b, c = peers
    async with online(a, b):
        with pytest.raises(TransportError):
            await a.t.open_job(Identity(b"\x09" * 32).peer_id)
        with pytest.raises(TransportError):
            await a.t.open_job(c.id)  # not running
        with pytest.raises(TransportError):
            await a.t.open_job(a.id)
        net.disconnect(b.id)
        assert not a.t.connected(b.id)
        with pytest.raises(TransportError):
            await a.t.open_job(b.id)
        net.reconnect(b.id)
        ex = await a.t.open_job(b.id)
        await ex.send(b"back")
        assert await ex.receive(5) == b"echo:back"


async def test_cutting_a_peer_off_resets_its_exchanges(
        net: MemoryNetwork, peers: list[Peer]) -> None:
    a, b, _ = peers
    reasons: list[Reason] = []
    async with online(a, b) as nursery:
        ex = await a.t.open_job(b.id)
        await ex.send(b"1")
        assert await ex.receive(5) == b"echo:1"

        async def reader() -> None:
            with pytest.raises(WireError) as e:
                await ex.receive(60)
            reasons.append(e.value.reason)

        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        net.disconnect(b.id)
        await trio.testing.wait_all_tasks_blocked()
        assert reasons == [Reason.TRUNCATED]
        with pytest.raises(WireError):
            await ex.send(b"2")


async def test_stopping_a_peer_resets_its_exchanges(peers: list[Peer]) -> None:
    a, b, _ = peers
    async with online(a):
        async with trio.open_nursery() as b_nursery:
            await b_nursery.start(b.t.run)
            ex = await a.t.open_job(b.id)
            await ex.send(b"1")
            assert await ex.receive(5) == b"echo:1"
            b_nursery.cancel_scope.cancel()
        assert not b.t.online
        with pytest.raises(WireError):
            await ex.receive(5)
        with pytest.raises(TransportError):
            await a.t.open_job(b.id)


async def test_a_partition_separates_groups_until_healed(
        net: MemoryNetwork, peers: list[Peer]) -> None:
    a, b, c = peers
    async with online(a, b, c):
        net.partition([a.id], [b.id])
        assert not a.t.connected(b.id) and a.t.connected(c.id) and b.t.connected(c.id)
        with pytest.raises(TransportError):
            await a.t.open_job(b.id)
        net.heal()
        ex = await a.t.open_job(b.id)
        await ex.send(b"x")
        assert await ex.receive(5) == b"echo:x"


async def test_blob_fetch_copies_hash_checked_content(peers: list[Peer]) -> None:
    a, b, _ = peers
    data = bytes(range(256)) * 1000  # several chunks
    cid = b.blobs.put(data)
    async with online(a, b):
        await a.t.fetch_blob(b.id, cid, a.blobs, max_size=1 << 20, timeout=5)
        assert a.blobs.get(cid) == data
        await a.t.fetch_blob(b.id, cid, a.blobs, max_size=1, timeout=5)  # held: no fetch
        assert b.t.blob_faults.served == 1


@pytest.mark.parametrize(("setup", "reason"), [
    ("missing", Reason.NOT_FOUND),
    ("small_limit", Reason.TOO_LARGE),
    ("corrupt", Reason.HASH_MISMATCH),
    ("break", Reason.TRUNCATED),
    ("cut_off", Reason.NOT_FOUND),
])
async def test_blob_fetch_fails_with_the_wire_reason_and_stores_nothing(
        net: MemoryNetwork, peers: list[Peer], setup: str, reason: Reason) -> None:
    a, b, _ = peers
    data = b"content" * 40_000
    cid = cid_of(data) if setup == "missing" else b.blobs.put(data)
    max_size = 100 if setup == "small_limit" else 1 << 20
    if setup == "corrupt":
        b.t.blob_faults.fail = Reason.HASH_MISMATCH
    if setup == "break":
        b.t.blob_faults.fail = Reason.TRUNCATED
    async with online(a, b):
        if setup == "cut_off":
            net.disconnect(b.id)
        with pytest.raises(WireError) as e:
            await a.t.fetch_blob(b.id, cid, a.blobs, max_size=max_size, timeout=5)
        assert e.value.reason is reason
        assert not a.blobs.has(cid) and a.blobs.count() == 0


async def test_a_busy_blob_server_answers_busy_then_serves(
        peers: list[Peer], autojump_clock: trio.testing.MockClock) -> None:
    a, b, _ = peers
    cid = b.blobs.put(b"payload")
    b.t.blob_faults.busy = 2
    async with online(a, b):
        for _ in range(2):
            with pytest.raises(WireError) as e:
                await a.t.fetch_blob(b.id, cid, a.blobs, max_size=1 << 20, timeout=60)
            assert e.value.reason is Reason.BUSY
        await a.t.fetch_blob(b.id, cid, a.blobs, max_size=1 << 20, timeout=60)
        assert a.blobs.get(cid) == b"payload"
        assert b.t.blob_faults.busy_answers == 2 and b.t.blob_faults.served == 1


async def test_a_stalled_blob_server_runs_into_the_timeout(
        peers: list[Peer], autojump_clock: trio.testing.MockClock) -> None:
    a, b, _ = peers
    cid = b.blobs.put(b"payload")
    b.t.blob_faults.stall = True
    async with online(a, b):
        with pytest.raises(trio.TooSlowError):
            await a.t.fetch_blob(b.id, cid, a.blobs, max_size=1 << 20, timeout=60)
        assert b.t.blob_faults.stalled == 1 and not a.blobs.has(cid)


async def test_cutting_a_peer_off_resets_its_blob_transfers(
        net: MemoryNetwork, peers: list[Peer]) -> None:
    a, b, _ = peers
    cid = b.blobs.put(b"payload")
    b.t.blob_faults.stall = True
    reasons: list[Reason] = []
    async with online(a, b) as nursery:

        async def fetch() -> None:
            with pytest.raises(WireError) as e:
                await a.t.fetch_blob(b.id, cid, a.blobs, max_size=1 << 20, timeout=60)
            reasons.append(e.value.reason)

        nursery.start_soon(fetch)
        await trio.testing.wait_all_tasks_blocked()
        net.disconnect(a.id)
        await trio.testing.wait_all_tasks_blocked()
        assert reasons == [Reason.TRUNCATED] and not a.blobs.has(cid)


async def test_the_dht_is_shared_and_reaches_only_peers_on_the_network(
        net: MemoryNetwork, peers: list[Peer]) -> None:
    a, b, c = peers
    async with online(a, b, c):
        assert await a.t.dht_put("/k", b"v", 1)
        assert await b.t.dht_get("/k", 1) == b"v" and await b.t.dht_get("/other", 1) is None
        assert await a.t.provide("key", 1) and await b.t.provide("key", 1)
        assert await c.t.find_providers("key", 1) == [a.id, b.id]
        assert await a.t.find_providers("key", 1) == [b.id]  # never itself
        net.disconnect(b.id)
        assert await c.t.find_providers("key", 1) == [a.id]
        assert not await b.t.dht_put("/k", b"w", 1) and await b.t.dht_get("/k", 1) is None
        assert net.dht.values["/k"] == b"v"


def test_an_endpoint_belongs_to_its_key(net: MemoryNetwork) -> None:
    a, b = Identity(b"\x01" * 32), Identity(b"\x02" * 32)
    with pytest.raises(ValueError):
        net.transport(a.peer_id, b.public_key)
