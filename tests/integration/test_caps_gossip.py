"""Capability ads flow between real libp2p hosts on loopback."""

from __future__ import annotations

from pathlib import Path

from tests.integration.helpers import running_nodes, wait_for


async def test_three_nodes_learn_each_others_capabilities(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, 3) as nodes:
        await wait_for(lambda: all(n.caps_known() == 2 for n in nodes))
        ids = {n.peer_id for n in nodes}
        for n in nodes:
            rows = n.caps()
            assert {r["peer_id"] for r in rows} == ids
            other = next(r for r in rows if not r["self"])
            assert other["cpu"] == {"cores": 2, "threads": 4, "arch": "x86_64"}
            assert other["kinds"] == ["matmul", "wasm"]
            assert n.metrics.snapshot()["ads_rejected"] == {}
