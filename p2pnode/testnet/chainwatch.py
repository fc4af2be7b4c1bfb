"""The testnet's view of the chain (spec 08, draft): a devchain shared by the nodes, made
by the launcher with every node as an anchorer; whether the anchored roots are the nodes'
own, and whether each node that earned something can claim it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from p2pnode.chain.base import Schedule
from p2pnode.chain.devchain import DevChain
from p2pnode.identity import load_identity
from p2pnode.testnet.model import NodeProc

CHAIN_FILE = "chain.db"


def fallback_for(epoch_len_s: int) -> int:
    return max(2, epoch_len_s // 2)


def make_devchain(root: Path, nodes: list[NodeProc], schedule: Schedule) -> Path:
    """The testnet's devchain, every node an anchorer in index order."""
    from p2pnode.config import KEY_FILE

    path = root / CHAIN_FILE
    first = load_identity(nodes[0].home / KEY_FILE)
    anchorers = [load_identity(n.home / KEY_FILE).public_key.hex() for n in nodes]
    DevChain.create(path, first, anchorers, schedule).close()
    return path


class ChainWatch:
    def __init__(self, path: Path, nodes: list[NodeProc]) -> None:
        from p2pnode.config import KEY_FILE

        self.nodes = nodes
        self.chain = DevChain(path, load_identity(nodes[0].home / KEY_FILE))
        self.claims: dict[int, dict[str, Any]] = {}

    def anchored(self) -> list[int]:
        return [a.epoch for a in self.chain.anchors()]

    def ready(self, summaries: dict[int, dict[str, Any]]) -> bool:
        """Two epochs anchored, the newest closed at every node."""
        epochs = self.anchored()
        return len(epochs) >= 2 and all(
            int(summaries.get(n.index, {}).get("closed", -1)) >= epochs[-1] for n in self.nodes)

    def claim_all(self) -> None:
        from p2pnode.api.client import call

        for n in self.nodes:
            try:
                self.claims[n.index] = call(n.home, "chain.claim", timeout=10.0)
            except Exception as e:  # a node that cannot answer did not claim
                self.claims[n.index] = {"ok": False, "reason": "unavailable", "detail": str(e)}

    def report(self, summaries: dict[int, dict[str, Any]]) -> dict[str, Any]:
        anchors = self.chain.anchors()
        matches = True
        for a in anchors:
            for n in self.nodes:
                roots = summaries.get(n.index, {}).get("roots", {})
                ours = roots.get(str(a.epoch))
                if ours is not None and ours != a.root.hex():
                    matches = False
        return {"backend": "devchain", "anchored_epochs": [a.epoch for a in anchors],
                "roots_match": bool(anchors) and matches,
                "claims_ok": sum(1 for c in self.claims.values() if c.get("ok")),
                "claims_refused": sorted({c.get("reason", "") for c in self.claims.values()
                                          if not c.get("ok")}),
                "blocks": self.chain.height() + 1, "verified": self.chain.verify()}
