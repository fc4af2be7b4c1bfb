"""The ledger between real nodes (spec 07): receipts of real jobs reach every ledger by
gossip, a node that was not there catches up by /sync/1, epochs close with equal roots,
and a proof from one node checks against another's root."""

from __future__ import annotations

from pathlib import Path

import trio

from p2pnode.api.ledger import check_proof, ledger_handlers
from p2pnode.jobs.market import JobState
from p2pnode.jobs.model import Requirements
from p2pnode.ledger import merkle
from p2pnode.node import Node
from tests.integration.helpers import running_nodes, start_node, wait_for

EPOCHS = {"ledger_epoch_len_s": 2, "ledger_grace_s": 1}


def _ledgers(nodes: list[Node]) -> list[bytes]:
    return [n.ledger.ledger.fingerprint() for n in nodes if n.ledger is not None]


async def test_receipts_reach_every_ledger_and_roots_agree(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, 3, **EPOCHS) as nodes:
        await wait_for(lambda: all(n.caps_known() == 2 for n in nodes))
        req = nodes[0]
        jobs = [await req.market.requester.submit(
            "wasm", _sum_inputs(i), {},
            Requirements(), lease_s=10) for i in range(4)]
        await wait_for(lambda: all(j.terminal for j in jobs), timeout=40)
        assert all(j.state is JobState.COMPLETED for j in jobs)
        # Every receipt is in every ledger (gossip), as a credit to its worker.
        await wait_for(lambda: all(len(n.ledger.ledger) == 4 for n in nodes), timeout=20)
        assert len(set(_ledgers(nodes))) == 1
        # A late joiner gets the whole set by reconciliation.
        async with trio.open_nursery() as nursery:
            late = await start_node(nursery, tmp_path, nodes, **EPOCHS)
            await wait_for(lambda: late.ledger is not None and len(late.ledger.ledger) == 4,
                           timeout=30)
            last = max(el.ts for el in late.ledger.ledger.elements()) // 2000
            await wait_for(lambda: all(n.ledger.ledger.frozen >= last for n in nodes),
                           timeout=30)
            roots = [n.ledger.root(last) for n in nodes]
            assert len({r[0] for r in roots if r}) == 1 and None not in roots
            # Balances are derived: the workers' cumulative amounts sum to the prices paid.
            paid = sum(le.price for j in jobs for le in j.leases.values()
                       if le.state.value == "accepted")
            assert sum(nodes[1].ledger.ledger.balances(last).values()) == paid
            # A proof built by one node checks against another node's root.
            worker = next(iter(nodes[2].ledger.ledger.balances(last)))
            handlers = ledger_handlers(nodes[1])
            proof = await handlers["ledger.proof"]({"epoch": last, "peer": worker.hex()})
            ok, why = check_proof(proof)
            assert ok, why
            assert bytes.fromhex(proof["root"]) == nodes[2].ledger.root(last)[0]
            forged = {**proof, "cumulative": proof["cumulative"] + 1}
            forged.pop("leaf")
            assert not check_proof(forged)[0]
            assert merkle.verify(bytes.fromhex(proof["root"]), worker, proof["cumulative"],
                                 [bytes.fromhex(p) for p in proof["path"]])
            nursery.cancel_scope.cancel()


def _sum_inputs(i: int) -> dict[str, bytes]:
    from p2pnode.jobs.wasm_examples import example_module

    return {"module": example_module("sum"), "input": bytes([i, 1, 2, 3])}
