"""Kad-DHT glue: our job records as the one namespace the DHT serves (the limits live in
:mod:`p2pnode.net.kad`), and bounded DHT calls (py-libp2p's own calls have no overall
deadline), with our own provider lookup (KAD-10)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import trio
from libp2p.kad_dht.kad_dht import KadDHT, _encode_key
from libp2p.peer.id import ID

from p2pnode.dhtpolicy import (
    LOOKUP_MAX_QUERIES,
    LOOKUP_QUERY_TIMEOUT_S,
    ProviderLookup,
    RecordCheck,
)
from p2pnode.jobs.discovery import RECORD_NAMESPACE, validate_job_record
from p2pnode.net.kad import KadMetrics, KadSettings, harden_dht
from p2pnode.wire.envelope import SignatureCache
from p2pnode.wire.reasons import Reason, Verdict


def job_record_check(net: str, verified: SignatureCache | None = None) -> RecordCheck:
    """Rules DHT-1 to DHT-6 (spec 04 §3.1) as the ``/p2pjob/`` namespace's check for
    :class:`p2pnode.dhtpolicy.KadPolicy`: a valid record lives until the job's deadline.
    With ``verified`` (ENV-12) the checks of one record on put, store and serve cost one
    signature verification."""

    def check(key: str, value: bytes, now: float) -> tuple[Verdict, float | None]:
        verdict, job = validate_job_record(key, value, net=net, now_ms=int(now * 1000),
                                           verified=verified)
        if job is None:
            return verdict, None
        return verdict, job.spec.deadline / 1000

    return check


def harden(dht: KadDHT, net: str, now: Callable[[], float], metrics: KadMetrics,
           on_reject: Callable[[Reason], None], settings: KadSettings | None = None,
           verified: SignatureCache | None = None) -> None:
    """Serve ``/p2pjob/`` records only, within the limits of spec 03 §5.2 and §5.3;
    ``on_reject`` counts the reason of every job record that fails DHT-1 to DHT-6."""
    harden_dht(dht, namespaces={RECORD_NAMESPACE: job_record_check(net, verified)},
               now=now, metrics=metrics, on_refuse=on_reject, settings=settings)


async def put_value(dht: Any, key: str, value: bytes, timeout: float) -> bool:
    try:
        with trio.fail_after(timeout):
            await dht.put_value(key, value)
        return True
    except (trio.TooSlowError, Exception):
        return False


async def get_value(dht: Any, key: str, timeout: float) -> bytes | None:
    try:
        with trio.fail_after(timeout):
            v = await dht.get_value(key)
        return bytes(v) if v is not None else None
    except (trio.TooSlowError, Exception):
        return None


async def provide(dht: Any, key: str, timeout: float) -> bool:
    try:
        with trio.fail_after(timeout):
            return bool(await dht.provide(key))
    except (trio.TooSlowError, Exception):
        return False


async def find_providers(dht: Any, key: str, timeout: float) -> list[Any]:
    """Provider PeerInfos, de-duplicated: the provider records the node holds for the key
    if it holds any of other peers, else a lookup of a few of the closest peers (KAD-10)."""
    kb = _encode_key(key)
    me = dht.host.get_id()
    # (a requester holds its own record of the key: others' are what a lookup is for)
    infos: list[Any] = [i for i in dht.provider_store.get_providers(kb) if i.peer_id != me]
    if not infos:
        with trio.move_on_after(timeout):
            infos = await _lookup_providers(dht, kb)
    seen: dict[str, Any] = {}
    for info in infos:
        seen.setdefault(info.peer_id.to_base58(), info)
    return list(seen.values())


async def _lookup_providers(dht: Any, kb: bytes) -> list[Any]:
    target = hashlib.sha256(kb).digest()
    t = int.from_bytes(target, "big")

    def distance(peer: ID) -> int:
        return t ^ int.from_bytes(hashlib.sha256(peer.to_bytes()).digest(), "big")

    me = dht.host.get_id()
    lookup: ProviderLookup[ID] = ProviderLookup(
        dht.routing_table.find_local_closest_peers(kb, LOOKUP_MAX_QUERIES), distance, me=me)
    store = dht.provider_store

    async def ask(peer: ID) -> None:
        answer: tuple[list[Any], list[ID]] = ([], [])
        with trio.move_on_after(LOOKUP_QUERY_TIMEOUT_S):
            answer = await store._get_providers_from_peer_with_closers(peer, kb)
        providers, closer = answer
        # py-libp2p answers ([], []) for a failed query too; a peer that answers names
        # closer peers unless it knows nobody, so an empty answer counts as a failure.
        if providers or closer:
            lookup.on_answer(peer, providers, closer)
        else:
            lookup.on_failure(peer)

    while not lookup.done:
        batch = lookup.next_batch()
        if not batch:
            break
        async with trio.open_nursery() as nursery:
            for peer in batch:
                nursery.start_soon(ask, peer)
    return list(lookup.providers)
