"""Floods of cheap streams against real nodes (spec 04 XCH-2, XCH-3, XCH-12; spec 05
BLOB-15).

A flood must cost the victim no signatures and no more than a bounded number of open
streams per peer; every dropped stream is counted, and honest peers are still served.
Nothing here asserts how fast anything happens.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import trio
from libp2p.host.exceptions import StreamFailure
from libp2p.network.stream.exceptions import StreamError
from libp2p.peer.id import ID

from p2pnode.blobs.protocol import BLOB_STREAMS_PER_PEER
from p2pnode.identity import Identity
from p2pnode.jobs import tensors
from p2pnode.jobs.market import JobState
from p2pnode.jobs.model import T_CLAIM, T_SPEC, Requirements, seal_message
from p2pnode.net.blob_protocol import blob_protocol_id, fetch_blob
from p2pnode.net.job_protocol import JOB_STREAM_BURST, JOB_STREAMS_PER_PEER, job_protocol_id
from p2pnode.node import Node
from p2pnode.wire import cbor, envelope
from p2pnode.wire.framing import encode_frame
from p2pnode.wire.reasons import Reason
from tests.adversarial.attacker import attacker_against, read_all
from tests.integration.helpers import running_nodes, wait_for

NET = "testnet"
FLOOD = 200
EXTRA = 8  # streams beyond a per-peer bound
HOLD_S = 30  # bound on how long a test waits for the victim to end a stream


def rejected(node: Node, topic: str, reason: Reason) -> int:
    return int(node.metrics.messages_rejected.labels(topic=topic, reason=reason.value)
               ._value.get())


def rejected_total(node: Node, topic: str) -> int:
    return sum(rejected(node, topic, r) for r in Reason)


def matmul_inputs(n: int = 8) -> dict[str, bytes]:
    seed = os.urandom(8)
    return {"a": tensors.encode_matrix(tensors.random_int8_matrix(n, n, seed + b"a")),
            "b": tensors.encode_matrix(tensors.random_int8_matrix(n, n, seed + b"b"))}


async def open_stream(host: Any, peer_id: str, protocol: Any) -> Any | None:
    """A new stream, or None if the victim reset it while the protocol was being agreed (a
    stream over a limit is reset as soon as the victim's handler sees it)."""
    try:
        return await host.new_stream(ID.from_base58(peer_id), [protocol])
    except StreamFailure:
        return None


async def send_first(host: Any, peer_id: str, payload: bytes) -> bytes:
    """Open a /job/1 stream, write ``payload`` raw, return all the victim sent back."""
    stream = await open_stream(host, peer_id, job_protocol_id(NET))
    if stream is None:
        return b""
    try:
        await stream.write(payload)
    except StreamError:  # the victim reset the stream before we wrote (XCH-12)
        pass
    with trio.fail_after(HOLD_S):
        return await read_all(stream)


def garbage(i: int, atk: Identity, now: int) -> bytes:
    """First frames that do not open (JOB-9) or are not the sender's own (XCH-3)."""
    claim = {"net": NET, "job": b"\x12\x20" + bytes(32), "price": 0, "ts": now}
    sealed = cbor.decode(seal_message(atk, T_CLAIM, claim))
    match i % 5:
        case 0:
            return encode_frame(os.urandom(48))
        case 1:  # a signature bit flipped
            return encode_frame(cbor.encode({**sealed, "s": bytes([sealed["s"][0] ^ 1])
                                             + sealed["s"][1:]}))
        case 2:
            return encode_frame(seal_message(atk, T_CLAIM, {**claim, "net": "othernet"}))
        case 3:  # a well-formed claim signed by a key that is not the stream's peer
            return encode_frame(seal_message(Identity.generate(), T_CLAIM, claim))
        case _:  # a signed job.spec: never a stream message
            return encode_frame(envelope.seal(atk, T_SPEC, 1, {"net": NET}))


async def test_first_frames_that_do_not_open_get_no_answer(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, 2) as (victim, worker):
        await wait_for(lambda: victim.caps_known() == 1 and worker.caps_known() == 1)
        async with attacker_against(victim) as atk:
            now = victim.now_ms()
            for i in range(FLOOD):
                # Not one byte back: no job.refuse, so no signature spent on garbage.
                assert await send_first(atk.host, victim.peer_id,
                                        garbage(i, atk.identity, now)) == b""
            await wait_for(lambda: rejected_total(victim, "job") == FLOOD)
            # Each stream is counted once, under its reason or as over the rate (XCH-12);
            # the first JOB_STREAM_BURST streams are within the rate and were opened.
            limited = rejected(victim, "job", Reason.RATE_LIMITED)
            assert FLOOD - limited >= JOB_STREAM_BURST
            assert rejected(victim, "job", Reason.SIGNER_MISMATCH) >= 1
            assert rejected(victim, "job", Reason.BAD_SIGNATURE) >= 1
            assert rejected(victim, "job", Reason.WRONG_NETWORK) >= 1
            assert rejected(victim, "job", Reason.UNKNOWN_TYPE) >= 1
        # an honest worker's claim is still served
        job = await victim.market.requester.submit("matmul", matmul_inputs(), {},
                                                   Requirements(), lease_s=10)
        await wait_for(lambda: job.terminal, timeout=30)
        assert job.state is JobState.COMPLETED


async def hold_streams(host: Any, peer_id: str, protocol: Any, n: int,
                       ended: list[bytes], nursery: trio.Nursery) -> list[Any]:
    """Open ``n`` streams that send nothing; each one's reader appends what it got when the
    victim ends the stream."""
    streams = []
    for _ in range(n):
        stream = await open_stream(host, peer_id, protocol)
        if stream is None:
            ended.append(b"")
            continue
        streams.append(stream)

        async def reader(s: Any = stream) -> None:
            ended.append(await read_all(s))

        nursery.start_soon(reader)
    return streams


async def test_concurrent_job_streams_of_one_peer_are_bounded(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, 2) as (victim, worker):
        await wait_for(lambda: victim.caps_known() == 1 and worker.caps_known() == 1)
        async with attacker_against(victim) as atk, trio.open_nursery() as nursery:
            ended: list[bytes] = []
            streams = await hold_streams(atk.host, victim.peer_id, job_protocol_id(NET),
                                         JOB_STREAMS_PER_PEER + EXTRA, ended, nursery)
            # The streams over the bound are reset unread; the others wait for a frame.
            await wait_for(lambda: rejected(victim, "job", Reason.RATE_LIMITED) == EXTRA)
            await wait_for(lambda: len(ended) >= EXTRA)
            assert ended[:EXTRA] == [b""] * EXTRA
            # Another peer is served meanwhile: a worker claims, runs and returns a job.
            job = await victim.market.requester.submit("matmul", matmul_inputs(), {},
                                                       Requirements(), lease_s=10)
            await wait_for(lambda: job.terminal, timeout=30)
            assert job.state is JobState.COMPLETED
            for s in streams:
                await s.reset()
            nursery.cancel_scope.cancel()  # a local reset does not wake a pending read
        assert rejected(victim, "job", Reason.RATE_LIMITED) == EXTRA


async def test_concurrent_blob_streams_of_one_peer_are_bounded(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, 2) as (victim, honest):
        content = os.urandom(100_000)
        cid = victim.blobs.put(content)
        async with attacker_against(victim) as atk, trio.open_nursery() as nursery:
            ended: list[bytes] = []
            streams = await hold_streams(atk.host, victim.peer_id, blob_protocol_id(NET),
                                         BLOB_STREAMS_PER_PEER + EXTRA, ended, nursery)
            await wait_for(lambda: rejected(victim, "blob", Reason.RATE_LIMITED) == EXTRA)
            await wait_for(lambda: len(ended) >= EXTRA)
            assert ended[:EXTRA] == [b""] * EXTRA
            # Another peer still fetches while the attacker holds its streams.
            with trio.fail_after(HOLD_S):
                got = await fetch_blob(honest.stack.host, victim.peer_id, cid, net=NET)
            assert got == content
            for s in streams:
                await s.reset()
            nursery.cancel_scope.cancel()  # a local reset does not wake a pending read
        assert rejected(victim, "blob", Reason.RATE_LIMITED) == EXTRA
