"""The testnet's view of the ledger (spec 07): whether every node holds the same elements
and the same root for every closed epoch, asked of each node's admin API."""

from __future__ import annotations

import time
from typing import Any

from p2pnode.testnet.model import NodeProc

POLL_S = 2.0


def grace_for(epoch_len_s: int) -> int:
    """A testnet's grace period: a quarter of a short epoch, at most the default 30 s."""
    return max(1, min(30, epoch_len_s // 4))


class LedgerWatch:
    def __init__(self, nodes: list[NodeProc]) -> None:
        self.nodes = nodes
        self.summaries: dict[int, dict[str, Any]] = {}
        self._last = 0.0

    def poll(self, force: bool = False) -> None:
        from p2pnode.api.client import call

        if not force and time.monotonic() - self._last < POLL_S:
            return
        self._last = time.monotonic()
        for n in self.nodes:
            try:
                self.summaries[n.index] = call(n.home, "ledger.summary", timeout=5.0)
            except Exception:  # a node that does not answer is not converged
                self.summaries.pop(n.index, None)

    def report(self, receipts_made: int) -> dict[str, Any]:
        """``converged``: every node answered, with one element set holding at least the
        receipts the requesters made, and each closed the epoch of its newest settled
        element; ``roots_agree``: every epoch all nodes closed has one root."""
        s = [self.summaries.get(n.index) for n in self.nodes]
        got = [x for x in s if x is not None]
        fingerprints = {x["fingerprint"] for x in got}
        receipts = max((int(x["receipts"]) for x in got), default=0)
        closed_all = all(x["closed"] >= x.get("last_settled", -1) for x in got)
        converged = (len(got) == len(self.nodes) and len(fingerprints) == 1
                     and receipts >= receipts_made and closed_all)
        common: set[str] | None = None
        for x in got:
            keys = set(x["roots"])
            common = keys if common is None else common & keys
        epochs = sorted(common or set(), key=int)
        agree = bool(got) and all(len({x["roots"][e] for x in got}) == 1 for e in epochs)
        return {"converged": converged, "epochs_closed": len(epochs), "roots_agree": agree,
                "receipts": receipts,
                "late_receipts": max((int(x["late"]) for x in got), default=0),
                "elements": max((int(x["elements"]) for x in got), default=0),
                "first_epoch": int(epochs[0]) if epochs else None,
                "last_epoch": int(epochs[-1]) if epochs else None}
