"""A hostile peer on the fraud topic: garbage, forged proofs against an honest worker and a
flood are refused with reasons, counted, never relayed, and bar nobody (spec 06 §3)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import trio

from conformance.cases.proofs import A_BLOB, B_BLOB, SPEC
from p2pnode.identity import Identity
from p2pnode.jobs import tensors
from p2pnode.jobs.executors.matmul import matmul_exact_cpu
from p2pnode.jobs.messages import JobResult
from p2pnode.net.host import fraud_topic
from p2pnode.node import Node
from p2pnode.proofs import fraud, matmul, rows
from p2pnode.services.fraud import FRAUD_BURST
from p2pnode.wire.cid import cid_of
from p2pnode.wire.reasons import Reason
from tests.adversarial.attacker import attacker_against
from tests.integration.helpers import running_nodes, wait_for

TEST_TIMEOUT_S = 90


def refused(node: Node, reason: Reason) -> int:
    return int(node.metrics.messages_rejected.labels(topic="fraud", reason=reason.value)
               ._value.get())


def framed_honest_worker(net: str, honest: Identity, reporter: Identity, now_ms: int) -> bytes:
    """A well-formed proof that an honest worker's correct row 0 is wrong: the spec,
    inputs and signatures all check out, only the arithmetic does not (FRD-6)."""
    spec_raw = dataclasses.replace(SPEC, net=net).seal(Identity.generate())
    c = matmul_exact_cpu(tensors.decode_matrix(A_BLOB, 1 << 20),
                         tensors.decode_matrix(B_BLOB, 1 << 20))
    blob = tensors.encode_matrix(c)
    result = JobResult(net=net, job=cid_of(spec_raw), lease=1, output=cid_of(blob),
                       size=len(blob), ts=now_ms, proof=matmul.commitment(c)).seal(honest)
    # Row 0 as it truly is, with its true path: a proof of nothing.
    return fraud.build(reporter, net, spec_raw, result, A_BLOB, B_BLOB, 0,
                       matmul.row_bytes(c, 0), rows.path(matmul.leaves(c), 0), now_ms)


async def test_forged_and_flooded_fraud_proofs_bar_nobody(tmp_path: Path) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with running_nodes(tmp_path, 2) as nodes:
            victim, other = nodes
            await wait_for(lambda: all(n.caps_known() == 1 for n in nodes))
            topic = fraud_topic(victim.config.network)
            honest = other.identity
            async with attacker_against(victim, topic=topic) as attacker:
                now = victim.market.requester.clock.wall_ms()
                await attacker.publish(b"\xff\x00garbage")
                await wait_for(lambda: refused(victim, Reason.INDEFINITE_LENGTH) == 1)
                framed = framed_honest_worker(victim.config.network, honest,
                                              attacker.identity, now)
                await attacker.publish(framed)
                await wait_for(lambda: refused(victim, Reason.BAD_PROOF) == 1)
                assert victim.fraud is not None and victim.fraud.taken == 0
                assert not victim.market.requester.machine.bars.barred(
                    honest.public_key, victim.market.requester.clock.now_ms())
                # Nothing was relayed: the other node never saw a proof.
                assert other.fraud is not None and other.fraud.taken == 0
                assert refused(other, Reason.INDEFINITE_LENGTH) == 0
                assert refused(other, Reason.BAD_PROOF) == 0
                # A flood: beyond the forwarder's burst, proofs are not even decoded.
                for _ in range(3 * FRAUD_BURST):
                    await attacker.publish(framed)
                await wait_for(lambda: refused(victim, Reason.RATE_LIMITED) >= FRAUD_BURST)
                assert refused(victim, Reason.BAD_PROOF) <= 1 + FRAUD_BURST
                # The node keeps serving: its status still answers and ads still flow.
                assert victim.status()["peer_id"] == victim.peer_id
                await wait_for(lambda: victim.caps_known() >= 1)
