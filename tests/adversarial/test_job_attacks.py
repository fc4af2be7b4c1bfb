"""A hostile peer against the job market of real nodes (spec 04 §5, §9).

Each attack is refused with its reason code, or dropped without an answer where answering
would cost the victim a signature (XCH-2, XCH-3, XCH-12); either way it is counted in the
victim's metrics, and the market keeps working for honest peers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import trio
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.records.validator import Validator
from libp2p.tools.anyio_service import background_trio_service

from p2pnode.identity import Identity
from p2pnode.jobs import discovery, tensors
from p2pnode.jobs.market import JobState
from p2pnode.jobs.model import (
    NONCE_SIZE,
    T_CLAIM,
    T_LEASE,
    T_OFFER,
    T_REFUSE,
    T_RESULT,
    JobSpec,
    Requirements,
    SignedJob,
    open_message,
    seal_message,
)
from p2pnode.net.job_protocol import job_protocol_id, open_exchange, request
from p2pnode.node import Node
from p2pnode.wire.framing import encode_frame, encode_uvarint
from p2pnode.wire.reasons import Reason
from tests.adversarial.attacker import attacker_against, read_all
from tests.integration.helpers import running_nodes, wait_for

NET = "testnet"
OUT = b"\x12\x20" + b"\x55" * 32


def rejected(node: Node, reason: Reason) -> int:
    return int(node.metrics.messages_rejected.labels(topic="job", reason=reason.value)
               ._value.get())


def matmul_inputs(n: int = 8) -> dict[str, bytes]:
    seed = os.urandom(8)
    return {"a": tensors.encode_matrix(tensors.random_int8_matrix(n, n, seed + b"a")),
            "b": tensors.encode_matrix(tensors.random_int8_matrix(n, n, seed + b"b"))}


async def unanswered(host: Any, peer_id: str, payload: bytes) -> bool:
    """Send ``payload`` raw as the first bytes of a /job/1 stream; whether the other side
    ended the stream without sending a byte."""
    stream = await host.new_stream(ID.from_base58(peer_id), [job_protocol_id(NET)])
    await stream.write(payload)
    with trio.fail_after(15):
        return await read_all(stream) == b""


def refusal(reply: bytes) -> str:
    msg = open_message(reply, net=NET)
    assert msg.t == T_REFUSE, msg.t
    return str(msg.body["reason"])


async def test_results_and_claims_the_requester_must_refuse(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, 2) as (req, worker):
        await wait_for(lambda: req.caps_known() == 1 and worker.caps_known() == 1)
        job = await req.market.requester.submit("matmul", matmul_inputs(), {}, Requirements(),
                                             lease_s=10)
        await wait_for(lambda: job.terminal, timeout=30)
        assert job.state is JobState.COMPLETED
        async with attacker_against(req) as atk:
            ident = atk.identity
            # (a) a result for a lease the attacker does not hold
            res = seal_message(ident, T_RESULT, {
                "net": NET, "job": job.id, "lease": 1, "output": OUT, "size": 10,
                "proof": {}, "meta": {}, "ts": req.now_ms()})
            assert refusal(await request(atk.host, req.peer_id, NET, res)) == "not_leaseholder"
            assert rejected(req, Reason.NOT_LEASEHOLDER) == 1
            # (b) a claim signed by someone other than the connection's peer: dropped
            # unanswered, as a refusal would be a signature for a forgery (XCH-3)
            other = Identity.generate()
            claim = seal_message(other, T_CLAIM, {"net": NET, "job": job.id, "price": 0,
                                                  "ts": req.now_ms()})
            assert await unanswered(atk.host, req.peer_id, encode_frame(claim))
            assert rejected(req, Reason.SIGNER_MISMATCH) == 1
            # (c) a claim for a job the requester never had
            claim = seal_message(ident, T_CLAIM, {"net": NET, "job": OUT, "price": 0,
                                                  "ts": req.now_ms()})
            assert refusal(await request(atk.host, req.peer_id, NET, claim)) == "unknown_job"
            # (d) garbage, and a frame longer than any job message may be: no answer
            for payload, reason in ((encode_frame(b"\x1c garbage"), Reason.MALFORMED),
                                    (encode_uvarint(1 << 20) + b"x" * 100, Reason.TOO_LARGE)):
                assert await unanswered(atk.host, req.peer_id, payload)
                await wait_for(lambda r=reason: rejected(req, r) >= 1)  # type: ignore[misc]
        # the market still serves honest peers
        again = await req.market.requester.submit("matmul", matmul_inputs(), {}, Requirements(),
                                             lease_s=10)
        await wait_for(lambda: again.terminal, timeout=30)
        assert again.state is JobState.COMPLETED


async def test_worker_refuses_forged_offers_and_leases(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, 1) as (worker,), attacker_against(worker) as atk:
        now = worker.now_ms()
        spec = JobSpec(net=NET, kind="matmul", inputs=(), params=(), req=Requirements(),
                       max_price=10_000, created=now, deadline=now + 60_000, lease_s=10,
                       redundancy=1, nonce=os.urandom(NONCE_SIZE))
        # (a) an offer of a job signed by somebody else
        foreign = spec.seal(Identity.generate())
        offer = seal_message(atk.identity, T_OFFER, {"net": NET, "spec": foreign,
                                                     "ts": now})
        assert refusal(await request(atk.host, worker.peer_id, NET, offer)) == \
                "signer_mismatch"
        assert rejected(worker, Reason.SIGNER_MISMATCH) == 1
        # (b) a genuine offer, then a lease signed by a key that is not the requester's
        own = spec.seal(atk.identity)
        sj = SignedJob.open(own)
        framed = await open_exchange(atk.host, worker.peer_id, NET)
        await framed.send(seal_message(atk.identity, T_OFFER, {"net": NET, "spec": own,
                                                               "ts": now}))
        claim = open_message(await framed.receive(10), net=NET)
        assert claim.t == T_CLAIM and claim.job == sj.id
        assert worker.market.worker.machine.free == worker.config.jobs_concurrency - 1
        forged = seal_message(Identity.generate(), T_LEASE, {
            "net": NET, "job": sj.id, "worker": worker.identity.public_key, "lease": 1,
            "expires": now + 10_000, "price": 0})
        await framed.send(forged)
        await framed.close()
        await wait_for(lambda: rejected(worker, Reason.SIGNER_MISMATCH) == 2)
        # the slot it reserved is free again and no work was started
        await wait_for(lambda: worker.market.worker.machine.free == worker.config.jobs_concurrency)
        assert sj.id not in worker.market.worker.machine.work


class _Permissive(Validator):  # type: ignore[misc]
    def validate(self, key: str, value: bytes) -> None:
        return None

    def select(self, key: str, values: list[bytes]) -> int:
        return 0


async def test_dht_refuses_a_job_record_whose_id_does_not_match(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, 1) as (victim,), attacker_against(victim) as atk:
        dht = KadDHT(atk.host, DHTMode.SERVER)
        dht.register_validator(discovery.RECORD_NAMESPACE, _Permissive())
        now = victim.now_ms()
        spec = JobSpec(net=NET, kind="wasm", inputs=(), params=(), req=Requirements(),
                       max_price=1, created=now, deadline=now + 60_000, lease_s=10,
                       redundancy=1, nonce=os.urandom(NONCE_SIZE))
        raw = spec.seal(atk.identity)
        wrong_key = discovery.job_record_key(b"\x12\x20" + b"\x01" * 32)
        right_key = discovery.job_record_key(SignedJob.open(raw).id)
        async with background_trio_service(dht):
            victim_id = ID.from_base58(victim.peer_id)
            stored = await dht.value_store._store_at_peer(victim_id, wrong_key.encode(),
                                                          raw)
            assert not stored
            assert rejected(victim, Reason.ID_MISMATCH) == 1
            assert victim.stack.dht.value_store.get(wrong_key.encode()) is None
            # the same record under its true key is accepted
            assert await dht.value_store._store_at_peer(victim_id, right_key.encode(), raw)
            with trio.fail_after(5):
                got = await victim.stack.dht.get_value(right_key)
            assert got == raw


TEN_YEARS_MS = 3652 * 86_400_000


def future_spec(now: int, kind: str = "wasm") -> JobSpec:
    """A job dated ten years ahead: JOB-4 holds, so only JOB-11 stops it."""
    created = now + TEN_YEARS_MS
    return JobSpec(net=NET, kind=kind, inputs=(), params=(), req=Requirements(),
                   max_price=10_000, created=created, deadline=created + 60_000, lease_s=10,
                   redundancy=1, nonce=os.urandom(NONCE_SIZE))


async def test_dht_refuses_a_job_record_created_years_ahead(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, 1) as (victim,), attacker_against(victim) as atk:
        dht = KadDHT(atk.host, DHTMode.SERVER)
        dht.register_validator(discovery.RECORD_NAMESPACE, _Permissive())
        raw = future_spec(victim.now_ms()).seal(atk.identity)
        key = discovery.job_record_key(SignedJob.open(raw).id)
        async with background_trio_service(dht):
            victim_id = ID.from_base58(victim.peer_id)
            assert not await dht.value_store._store_at_peer(victim_id, key.encode(), raw)
            assert rejected(victim, Reason.CLOCK_SKEW) == 1
            assert victim.stack.dht.value_store.get(key.encode()) is None


async def test_worker_refuses_an_offer_created_years_ahead(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, 1) as (worker,), attacker_against(worker) as atk:
        now = worker.now_ms()
        raw = future_spec(now, kind="matmul").seal(atk.identity)
        offer = seal_message(atk.identity, T_OFFER, {"net": NET, "spec": raw, "ts": now})
        assert refusal(await request(atk.host, worker.peer_id, NET, offer)) == "clock_skew"
        assert worker.market.worker.machine.free == worker.config.jobs_concurrency
        assert SignedJob.open(raw).id not in worker.market.worker.machine.work
