"""Kad-DHT glue: our job records as the one namespace the DHT serves (the limits live in
:mod:`p2pnode.net.kad`), and bounded DHT calls (py-libp2p's own calls have no overall
deadline)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from libp2p.kad_dht.kad_dht import KadDHT

from p2pnode.dhtpolicy import RecordCheck
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
    """Provider PeerInfos, de-duplicated (py-libp2p may return one peer several times)."""
    try:
        with trio.fail_after(timeout):
            infos = await dht.find_providers(key, 20)
    except (trio.TooSlowError, Exception):
        return []
    seen: dict[str, Any] = {}
    for info in infos:
        seen.setdefault(info.peer_id.to_base58(), info)
    return list(seen.values())
