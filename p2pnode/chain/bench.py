"""``p2pnode bench chain``: the gas of anchors and claims on a real EVM (py-evm in this
process, the committed RewardAnchor contract), and anchors per second on devchain.

    anchor_gas              a steady-state anchor (the first one also creates the slots)
    claims                  per tree of 2^10, 2^17 and 2^20 accounts (built by the ledger's
                            merkle.build): its depth and the gas of one account's claim
    devchain_anchors_per_s  anchors of consecutive epochs on a fresh devchain file

Published figures to compare: a Merkle check ~134 gas per level + 115 (solady); Balancer's
distributor claim ~63k gas. Gas is deterministic; the times are this machine's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from p2pnode.chain.base import Schedule
from p2pnode.ledger import merkle

SIZES = (1 << 10, 1 << 17, 1 << 20)
SCHEDULE = Schedule(epoch_len_s=20, grace_s=5, fallback_s=10)


def _gas(w3: Any, tx: str) -> int:
    return int(w3.eth.get_transaction_receipt(tx)["gasUsed"])


def evm_figures(sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    from p2pnode.chain.evm import EvmChain, deploy
    from p2pnode.chain.pyevm import fresh_chain, set_next_block_time

    w3, backend = fresh_chain(accounts=4)
    accounts = [str(a) for a in w3.eth.accounts]
    address = deploy(w3, accounts[0], accounts[:1], SCHEDULE, fund_wei=10**21)
    chain = EvmChain(w3, address, accounts[0])
    claimer = EvmChain(w3, address, accounts[1])
    epoch = 10
    set_next_block_time(backend, SCHEDULE.closes_at(epoch))
    first = _gas(w3, chain.anchor(epoch, b"\x01" * 32, 1).tx)
    steady: list[int] = []
    claims = []
    for n in sizes:
        balances = {hashlib.sha256(b"bench %d %d" % (n, i)).digest(): 1000 + i
                    for i in range(n)}
        tree = merkle.build(balances)
        account = tree.accounts[len(tree.accounts) // 3]
        proof = tree.proof(account) or []
        epoch += 1
        set_next_block_time(backend, SCHEDULE.closes_at(epoch))
        steady.append(_gas(w3, chain.anchor(epoch, tree.root, n).tx))
        chain.bind(account, accounts[2])  # a payee the chain has seen
        c = claimer.claim(account, balances[account], proof)
        claims.append({"accounts": n, "depth": len(proof), "claim_gas": _gas(w3, c.tx)})
    return {"anchor_gas": max(steady), "anchor_gas_first": first, "claims": claims}


def devchain_rate(seconds: float = 2.0, most: int = 2000) -> dict[str, Any]:
    from p2pnode.chain.devchain import DevChain
    from p2pnode.identity import Identity

    me = Identity(hashlib.sha256(b"bench devchain").digest())
    with tempfile.TemporaryDirectory() as d:
        chain = DevChain.create(Path(d) / "chain.db", me, [me.public_key.hex()],
                                Schedule(1, 0, 1), clock=lambda: 10**9)
        t = time.perf_counter()
        n = 0
        while n < most and time.perf_counter() - t < seconds:
            chain.anchor(n, hashlib.sha256(b"%d" % n).digest(), n)
            n += 1
        dt = time.perf_counter() - t
        verified = chain.verify()
        chain.close()
    return {"devchain_anchors_per_s": round(n / dt, 1), "devchain_blocks": verified}


def run(sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    out = evm_figures(sizes)
    out.update(devchain_rate())
    return out


def main_args(a: argparse.Namespace) -> int:
    sizes = tuple(1 << int(x) for x in a.depths.split(",")) if a.depths else SIZES
    out = run(sizes)
    if a.json:
        print(json.dumps(out))
        return 0
    print(f"anchor              {out['anchor_gas']} gas (the first: {out['anchor_gas_first']})")
    for c in out["claims"]:
        print(f"claim               {c['claim_gas']} gas, proof of depth {c['depth']} "
              f"({c['accounts']} accounts)")
    print(f"devchain            {out['devchain_anchors_per_s']} anchors/s")
    return 0
