"""Kad-DHT glue: our record validator behind py-libp2p's Validator interface, and bounded
DHT calls (py-libp2p's own calls have no overall deadline)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from libp2p.records.validator import Validator

from p2pnode.jobs.discovery import RECORD_NAMESPACE, validate_job_record
from p2pnode.wire.envelope import SignatureCache
from p2pnode.wire.reasons import Reason


class JobRecordValidator(Validator):  # type: ignore[misc]
    """Runs rules DHT-1 to DHT-6 (spec 04 §3.1) on every put and get of a ``/p2pjob/``
    record."""

    def __init__(self, net: str, now_ms: Callable[[], int],
                 on_reject: Callable[[Reason], None],
                 verified: SignatureCache | None = None) -> None:
        self.net = net
        self.verified = verified
        self.now_ms = now_ms
        self.on_reject = on_reject

    def validate(self, key: str, value: bytes) -> None:
        verdict, _ = validate_job_record(key, value, net=self.net, now_ms=self.now_ms(),
                                         verified=self.verified)
        if not verdict.ok:
            reason = verdict.reason  # type: ignore[union-attr]
            self.on_reject(reason)
            raise ValueError(f"job record rejected: {reason.value}")

    def select(self, key: str, values: list[bytes]) -> int:
        # Records are content-addressed: every valid value under a key is the same bytes.
        return 0


def register_job_records(dht: Any, net: str, now_ms: Callable[[], int],
                         on_reject: Callable[[Reason], None],
                         verified: SignatureCache | None = None) -> None:
    dht.register_validator(RECORD_NAMESPACE,
                           JobRecordValidator(net, now_ms, on_reject, verified))


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
