"""The testnet's view of the chain (spec 08, draft): a devchain shared by the nodes, made
by the launcher with every node as an anchorer; whether the anchored roots are the nodes'
own, and whether each node that earned something can claim it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from p2pnode.chain.base import Chain, Schedule
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
    def __init__(self, chain: Chain, nodes: list[NodeProc]) -> None:
        self.nodes = nodes
        self.chain = chain
        self.claims: dict[int, dict[str, Any]] = {}

    @classmethod
    def devchain(cls, path: Path, nodes: list[NodeProc]) -> ChainWatch:
        from p2pnode.config import KEY_FILE

        return cls(DevChain(path, load_identity(nodes[0].home / KEY_FILE)), nodes)

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
        out: dict[str, Any] = {
            "backend": self.chain.name, "anchored_epochs": [a.epoch for a in anchors],
            "roots_match": bool(anchors) and matches,
            "claims_ok": sum(1 for c in self.claims.values() if c.get("ok")),
            "claims_refused": sorted({c.get("reason", "") for c in self.claims.values()
                                      if not c.get("ok")}),
            "paid": sum(int(c.get("paid", 0)) for c in self.claims.values() if c.get("ok"))}
        if isinstance(self.chain, DevChain):
            out.update(blocks=self.chain.height() + 1, verified=self.chain.verify())
        return out


class EvmNetwork:
    """A local JSON-RPC node (anvil) with the contract deployed for a testnet: every node's
    payout address an anchorer (the first 8) and funded for gas; stopped by ``close``."""

    def __init__(self, nodes: list[NodeProc], schedule: Schedule) -> None:
        from web3 import Web3
        from web3.types import Wei

        from p2pnode.chain.anvil import Anvil
        from p2pnode.chain.binding import address_of, payout_key
        from p2pnode.chain.evm import EvmChain, deploy

        self.anvil = Anvil()
        self.anvil.__enter__()
        try:
            w3 = self.anvil.w3()
            dev = self.anvil.accounts()[0]
            payees = [Web3.to_checksum_address(address_of(payout_key(n.home))) for n in nodes]
            for p in payees:  # gas for their anchors and claims
                w3.eth.send_transaction({"from": dev, "to": p, "value": Wei(10**19)})
            self.address = deploy(w3, dev, payees[:8], schedule, fund_wei=10**20)
            self.url = self.anvil.url
            self.chain = EvmChain(w3, self.address, dev)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.anvil.__exit__(None, None, None)
