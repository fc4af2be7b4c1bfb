"""A hostile raw py-libp2p host against the DHT server of real nodes (spec 03 §5.2, §5.3).

Garbage records are refused and never served, idle streams cost the victim a bounded number
of handlers for a bounded time, and a flood of provider records stays under its bound;
throughout, an honest peer still uses the victim's DHT.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import multiaddr
import trio
from libp2p.host.exceptions import StreamFailure
from libp2p.identity.identify_push.identify_push import ID_PUSH as IDENTIFY_PUSH
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.kad_dht.pb.kademlia_pb2 import Record
from libp2p.network.stream.exceptions import StreamError
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.records.validator import NamespacedValidator
from libp2p.tools.anyio_service import background_trio_service

from p2pnode.dhtpolicy import KadLimits
from p2pnode.identity import Identity
from p2pnode.jobs import discovery
from p2pnode.jobs.model import NONCE_SIZE, JobSpec, Requirements, SignedJob
from p2pnode.net.host import build_host, kad_protocol_id
from p2pnode.net.kad import BoundedProviderStore, BoundedValueStore, KadSettings
from p2pnode.node import Node
from p2pnode.ratelimit import StreamLimits
from tests.adversarial.attacker import LOOPBACK, node_addr, read_all
from tests.integration.helpers import running_nodes, wait_for

NET = "testnet"
IDLE_S = 4.0
SETTINGS = KadSettings(
    limits=KadLimits(max_providers_per_peer=4),
    streams=StreamLimits(per_peer=8, total=128, rate=50.0, burst=100),
    idle_s=IDLE_S, max_s=30.0, service_idle_s=IDLE_S)


def dht_nodes(tmp: Path, n: int) -> AbstractAsyncContextManager[list[Node]]:
    """``n`` nodes with SETTINGS; every node after the first bootstraps from the first."""
    return running_nodes(tmp, n, node_kw={"kad": SETTINGS})


@dataclass
class Hostile:
    identity: Identity
    host: Any
    dht: KadDHT

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id


@asynccontextmanager
async def hostile_dht(victim: Node) -> AsyncIterator[Hostile]:
    """A raw host with a DHT that validates nothing (every key is its own namespace), dialled
    to ``victim``."""
    identity = Identity.generate()
    host = build_host(identity)
    dht = KadDHT(host, DHTMode.SERVER,
                 validator=NamespacedValidator({}, strict_validation=False),
                 validator_changed=True)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(host.run([multiaddr.Multiaddr(LOOPBACK)]))
        await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(node_addr(victim))))
        await stack.enter_async_context(background_trio_service(dht))
        yield Hostile(identity, host, dht)


def job_record(identity: Identity, now_ms: int) -> tuple[str, bytes]:
    spec = JobSpec(net=NET, kind="wasm", inputs=(), params=(), req=Requirements(),
                   max_price=1, created=now_ms, deadline=now_ms + 60_000, lease_s=10,
                   redundancy=1, nonce=os.urandom(NONCE_SIZE))
    raw = spec.seal(identity)
    return discovery.job_record_key(SignedJob.open(raw).id), raw


def refused(node: Node, op: str, reason: str) -> int:
    assert node.kad_metrics is not None
    return int(node.kad_metrics.records_refused.labels(op=op, reason=reason)._value.get())


def streams(node: Node, kind: str, protocol: str) -> int:
    assert node.kad_metrics is not None
    counter = getattr(node.kad_metrics, f"streams_{kind}")
    return int(counter.labels(protocol=protocol)._value.get())


def open_streams(node: Node, protocol: str) -> float | None:
    return node.metrics.registry.get_sample_value("p2pnode_streams_open",
                                                  {"protocol": protocol})


async def served_by(asker: Node, victim: Node, key: bytes) -> bytes | None:
    """What ``victim`` answers a GET_VALUE of ``key`` from ``asker`` with."""
    assert asker.stack is not None
    got = await asker.stack.dht.value_store._get_from_peer(ID.from_base58(victim.peer_id), key)
    return bytes(got) if got is not None else None


async def test_garbage_records_are_neither_stored_nor_served(tmp_path: Path) -> None:
    async with dht_nodes(tmp_path, 2) as (victim, honest), hostile_dht(victim) as atk:
        assert victim.stack is not None
        store = victim.stack.dht.value_store
        assert isinstance(store, BoundedValueStore)
        victim_id = ID.from_base58(victim.peer_id)
        good_key, good = job_record(atk.identity, victim.now_ms())
        garbage = [
            (b"/job/x", good), (b"/caps/x", b"\x00" * 64), (b"bare-key", b"garbage"),
            (b"/pk/x", b"garbage"), (b"/ipns/x", b"garbage"),
            (good_key.encode(), b"not a job spec"),
            (good_key.encode(), good + b"\x00" * 20_000),
        ]
        for key, value in garbage:
            with trio.fail_after(10):
                assert not await atk.dht.value_store._store_at_peer(victim_id, key, value)
        assert refused(victim, "check", "bad_field") == 5
        assert refused(victim, "check", "too_large") == 1
        assert store.store == {} and len(store.book) == 0
        for key, _ in garbage:
            assert await served_by(honest, victim, key) is None
        # A valid job record from the same peer is taken and served: the refusals above
        # are about the records, not about the peer.
        assert await atk.dht.value_store._store_at_peer(victim_id, good_key.encode(), good)
        assert await served_by(honest, victim, good_key.encode()) == good

        # Garbage that got into the store anyway (an older version, a bug) is not served
        # and is dropped when asked for.
        record = Record()
        record.key, record.value = b"/caps/y", b"garbage"
        store.book.put(b"/caps/y", 20, victim.clock() + 3600)
        store.store[b"/caps/y"] = (record, victim.clock() + 3600)
        assert await served_by(honest, victim, b"/caps/y") is None
        assert refused(victim, "serve", "bad_field") == 1
        assert b"/caps/y" not in store.store


async def test_idle_dht_streams_do_not_stop_an_honest_lookup(tmp_path: Path) -> None:
    async with dht_nodes(tmp_path, 2) as (victim, honest), hostile_dht(victim) as atk:
        assert victim.stack is not None and honest.stack is not None
        pid = kad_protocol_id(NET)
        victim_id = ID.from_base58(victim.peer_id)
        idle = []
        with trio.fail_after(20):
            for _ in range(50):
                try:
                    idle.append(await atk.host.new_stream(victim_id, [pid]))
                except StreamFailure:  # reset as soon as negotiated: over the bound
                    pass
            await wait_for(lambda: streams(victim, "refused", "kad") == 42)
        assert open_streams(victim, "kad") == 8

        # While the victim holds 8 idle streams of the attacker, an honest peer stores a
        # job record at it and reads it back, and finds its providers.
        key, raw = job_record(honest.identity, honest.now_ms())
        with trio.fail_after(IDLE_S):
            await honest.stack.dht.put_value(key, raw)
            assert await served_by(honest, victim, key.encode()) == raw
            assert await honest.stack.dht.value_store._store_at_peer(
                victim_id, key.encode(), raw)
            # the honest streams end; the attacker's 8 are still held
            await wait_for(lambda: open_streams(victim, "kad") == 8)

        # The idle streams are reset once their read deadline passes.
        with trio.fail_after(IDLE_S + 10):
            await wait_for(lambda: streams(victim, "timed_out", "kad") == 8)
            for stream in idle:
                assert await read_all(stream) == b""
            # (the honest node's own lookups may hold a stream for a moment)
            await wait_for(lambda: open_streams(victim, "kad") == 0)


async def test_a_provider_flood_from_one_peer_stays_under_its_bound(tmp_path: Path) -> None:
    async with dht_nodes(tmp_path, 2) as (victim, honest), hostile_dht(victim) as atk:
        assert victim.stack is not None and honest.stack is not None
        victim_id = ID.from_base58(victim.peer_id)
        providers = victim.stack.dht.provider_store
        assert isinstance(providers, BoundedProviderStore)
        honest_key = b"\x12\x20" + b"\x01" * 32
        with trio.fail_after(10):
            assert await honest.stack.dht.provider_store._send_add_provider(
                victim_id, honest_key)
            await wait_for(lambda: providers.book.keys_of(honest.peer_id) == 1)
        flood = [b"\x12\x20" + os.urandom(32) for _ in range(30)]
        with trio.fail_after(20):
            for key in flood:
                await atk.dht.provider_store._send_add_provider(victim_id, key)
            # py-libp2p's own ADD_PROVIDER limit (10 per 10 s) lets 10 through; ours
            # keeps the peer's newest 4.
            await wait_for(lambda: victim.kad_metrics is not None and int(
                victim.kad_metrics.evictions.labels(store="providers")._value.get()) >= 6)
        assert providers.book.keys_of(atk.peer_id) == 4
        held = [k for k in flood if atk.peer_id in
                {str(p.peer_id) for p in providers.get_providers(k)}]
        assert len(held) == 4
        assert [str(p.peer_id) for p in providers.get_providers(honest_key)] == [honest.peer_id]


async def test_idle_identify_push_streams_are_bounded_and_timed_out(tmp_path: Path) -> None:
    # (ping needs nothing of ours: py-libp2p serves at most 2 ping streams per peer and
    # closes one idle for 10 s.)
    async with dht_nodes(tmp_path, 1) as (victim,), hostile_dht(victim) as atk:
        victim_id = ID.from_base58(victim.peer_id)
        held = []
        with trio.fail_after(20):
            for _ in range(10):
                try:
                    stream = await atk.host.new_stream(victim_id, [IDENTIFY_PUSH])
                    # py-libp2p may negotiate lazily, with the first write: send the
                    # first byte of a length prefix and no more.
                    await stream.write(b"\x80")
                    held.append(stream)
                except (StreamFailure, StreamError):
                    pass
            await wait_for(lambda: streams(victim, "refused", "identify_push") == 6)
        assert open_streams(victim, "identify_push") == 4
        with trio.fail_after(IDLE_S + 10):
            await wait_for(lambda: streams(victim, "timed_out", "identify_push") == 4)
        assert open_streams(victim, "identify_push") == 0


async def test_our_own_provided_keys_are_forgotten_after_the_provider_ttl(
        tmp_path: Path) -> None:
    """py-libp2p keeps every key a node ever provided and republishes them all daily; with
    discovery keys changing every minute that would grow without end (KAD-4)."""
    async with dht_nodes(tmp_path, 2) as (node, _peer):
        assert node.stack is not None
        providers = node.stack.dht.provider_store
        assert isinstance(providers, BoundedProviderStore)
        now = [1_000_000.0]
        providers.now = lambda: now[0]
        old, fresh = b"\x12\x20" + b"\x02" * 32, b"\x12\x20" + b"\x03" * 32
        with trio.fail_after(20):  # (whether a peer took the records does not matter here)
            await providers.provide(old)
            now[0] += providers.provide_ttl_s / 2
            await providers.provide(fresh)
        assert {old, fresh} <= providers.providing_keys
        now[0] += providers.provide_ttl_s / 2 + 1
        providers.cleanup_expired()
        assert old not in providers.providing_keys and old not in providers._last_republish
        assert fresh in providers.providing_keys
