"""Capability challenges between real nodes: each challenges the other's ad with a matmul
job addressed to it, attests the outcome and gossips it (spec 06 §6)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.helpers import running_nodes, wait_for


async def test_nodes_challenge_and_attest_each_other(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, 3, caps_challenge_interval_s=0.5) as nodes:
        await wait_for(lambda: all(n.caps_known() == 2 for n in nodes))

        def everyone_attested() -> bool:
            return all(n.challenge is not None and n.challenge.summary()["attested"] == 2
                       for n in nodes)

        await wait_for(everyone_attested, timeout=60)
        a, b = nodes[0], nodes[1]
        row = next(r for r in a.caps_rows() if r["peer_id"] == b.peer_id)
        assert row["attested"] == "attested"
        # Gossip: a holds attestations of b by both other nodes.
        await wait_for(lambda: row_ok(a, b.peer_id) == 2, timeout=30)
        # A challenge is a job for its target alone, and it left a receipt like any job.
        challenges = [j for j in a.market.jobs.values() if dict(j.spec.verify).get("target")]
        assert len(challenges) == 2 and all(j.terminal for j in challenges)
        assert a.store.receipt_count() == 2


def row_ok(node: object, peer: str) -> int:
    rows = node.caps_rows()  # type: ignore[attr-defined]
    return int(next(r for r in rows if r["peer_id"] == peer)["attestations"]["ok"])
