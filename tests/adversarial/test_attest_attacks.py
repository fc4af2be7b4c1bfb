"""A hostile peer on the attestation topic: forged, self-serving and flooded attestations
are refused with reasons and counted, the table stays bounded, and none of them changes
how this node ranks a worker (spec 06 CHL-4, CHL-5)."""

from __future__ import annotations

from pathlib import Path

import trio

from p2pnode.identity import Identity
from p2pnode.net.host import attest_topic
from p2pnode.node import Node
from p2pnode.proofs.challenge import MAX_CHALLENGERS, Attestation
from p2pnode.services.challenge import ATTEST_BURST
from p2pnode.wire.reasons import Reason
from tests.adversarial.attacker import attacker_against
from tests.integration.helpers import running_nodes, wait_for

TEST_TIMEOUT_S = 90


def refused(node: Node, reason: Reason) -> int:
    return int(node.metrics.messages_rejected.labels(topic="attest", reason=reason.value)
               ._value.get())


async def test_hostile_attestations_are_refused_and_bounded(tmp_path: Path) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with running_nodes(tmp_path, 2) as nodes:
            victim, honest = nodes
            await wait_for(lambda: all(n.caps_known() == 1 for n in nodes))
            net = victim.config.network
            assert victim.challenge is not None
            async with attacker_against(victim, topic=attest_topic(net)) as attacker:
                now = victim.market.requester.clock.wall_ms()

                def bad(subject: bytes, **kw: object) -> bytes:
                    a = Attestation(net=net, subject=subject, seq=1, ok=False, n=256, ms=0,
                                    ts=now)
                    fields = {**a.to_body(), **kw}
                    return Attestation(**fields).seal(attacker.identity)  # type: ignore[arg-type]

                await attacker.publish(bad(attacker.identity.public_key))  # about itself
                await wait_for(lambda: refused(victim, Reason.SIGNER_MISMATCH) == 1)
                await attacker.publish(bad(honest.identity.public_key, net="other"))
                await wait_for(lambda: refused(victim, Reason.WRONG_NETWORK) == 1)
                # Fresh keys, each "failing" the honest node: kept at most MAX_CHALLENGERS
                # deep, and never making it "failed" for the victim (CHL-5).
                for i in range(MAX_CHALLENGERS + 4):
                    a = Attestation(net=net, subject=honest.identity.public_key, seq=1,
                                    ok=False, n=256, ms=0, ts=now + i)
                    await attacker.publish(a.seal(Identity.generate()))
                subject = honest.identity.public_key
                await wait_for(lambda: len(victim.challenge.attests.of(subject))
                               == MAX_CHALLENGERS)
                assert victim.challenge.status(subject) == "never"
                # A flood: beyond the forwarder's burst, attestations are not even decoded.
                for _ in range(3 * ATTEST_BURST):
                    await attacker.publish(b"\xff")
                await wait_for(lambda: refused(victim, Reason.RATE_LIMITED) >= ATTEST_BURST)
                assert victim.status()["peer_id"] == victim.peer_id
