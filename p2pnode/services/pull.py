"""The worker's pull path (spec 04 DHT-10, WRK-5): find requesters that provide a
discovery key, ask each for its open jobs, fetch a job's spec and claim it.

A part of :class:`p2pnode.services.worker.WorkerService`, kept apart by concern; the claim
itself (take, seal, the answer) is the service's, shared with the offer path.
"""

from __future__ import annotations

from collections.abc import Callable

from p2pnode.identity import Identity, peer_id_str
from p2pnode.jobs import discovery
from p2pnode.jobs.messages import JobGet, JobList, JobQuery, decode
from p2pnode.jobs.model import T_LIST, SignedJob
from p2pnode.jobs.worker import Worker
from p2pnode.ports import Transport
from p2pnode.services.clock import LocalClock
from p2pnode.wire.envelope import SignatureCache
from p2pnode.wire.reasons import Reason, WireError

EXCHANGE_TIMEOUT_S = 10.0
DHT_TIMEOUT_S = 8.0


class PullPath:
    """What the pull path needs of the worker service, and the path itself."""

    identity: Identity
    machine: Worker
    transport: Transport
    clock: LocalClock
    net: str
    verified: SignatureCache
    on_reject: Callable[[Reason], None]

    async def _request(self, peer: str, payload: bytes, timeout: float) -> bytes | None:
        raise NotImplementedError

    def _take(self, sj: SignedJob) -> tuple[int | None, Reason | None]:
        raise NotImplementedError

    def _claim(self, sj: SignedJob, price: int) -> bytes:
        raise NotImplementedError

    async def _claim_answered(self, sj: SignedJob, data: bytes | None) -> bool:
        raise NotImplementedError

    async def discover_once(self) -> int:
        """One round of the pull path; returns how many providers the lookups found."""
        cap = self.machine.capacity
        keys = discovery.lookup_keys(self.net, sorted(cap.kinds), cap.resource_classes,
                                     self.clock.wall_ms())
        providers: list[str] = []
        for key in keys:
            for peer in await self.transport.find_providers(key, DHT_TIMEOUT_S):
                if peer not in providers and peer != self.transport.peer_id:
                    providers.append(peer)
        for peer in providers:
            if self.machine.free <= 0:
                break
            q = JobQuery(net=self.net, kinds=tuple(sorted(cap.kinds)),
                         resource_class=cap.resource_classes[-1],
                         ts=self.clock.wall_ms()).seal(self.identity)
            data = await self._request(peer, q, EXCHANGE_TIMEOUT_S)
            try:
                reply = decode(data, net=self.net, expected={T_LIST}) if data else None
            except WireError as err:
                self.on_reject(err.reason)
                continue
            if reply is None or peer_id_str(reply.signer) != peer:  # WRK-5
                continue
            assert isinstance(reply.msg, JobList)
            for job_id in reply.msg.jobs:
                if self.machine.free <= 0:
                    break
                if self.machine.wants(job_id, self.clock.now_ms()):
                    await self._try_claim(job_id, peer, reply.signer)
        return len(providers)

    async def _spec(self, job_id: bytes, provider: str) -> SignedJob | None:
        """The spec from the DHT record, else by ``job.get`` from the provider (WRK-5)."""
        key = discovery.job_record_key(job_id)
        sj = self._valid_record(key, await self.transport.dht_get(key, DHT_TIMEOUT_S))
        if sj is None:  # the DHT did not have it (yet), or had garbage: ask the provider
            get = JobGet(net=self.net, job=job_id).seal(self.identity)
            sj = self._valid_record(key, await self._request(provider, get,
                                                             EXCHANGE_TIMEOUT_S))
        return sj

    def _valid_record(self, key: str, raw: bytes | None) -> SignedJob | None:
        """DHT-1 to DHT-6 on a record, whichever way it came; failures are counted."""
        if raw is None:
            return None
        verdict, sj = discovery.validate_job_record(key, raw, net=self.net,
                                                    now_ms=self.clock.wall_ms(),
                                                    verified=self.verified)
        if sj is None:
            self.on_reject(verdict.reason)  # type: ignore[union-attr]
        return sj

    async def _try_claim(self, job_id: bytes, provider: str, provider_key: bytes) -> bool:
        sj = await self._spec(job_id, provider)
        if sj is None:
            return False
        why = self.machine.listing_problem(sj, provider_key, provider_key)
        if why is not None:
            self.on_reject(why)
            return False
        price, _why = self._take(sj)
        if price is None:
            return False
        data = await self._request(provider, self._claim(sj, price), EXCHANGE_TIMEOUT_S)
        return await self._claim_answered(sj, data)
