"""The reference's answers for the chain vectors (spec/08-chain.md); see cases/chain.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conformance.model import Outcome
from p2pnode.chain.announce import open_announce
from p2pnode.chain.base import Schedule, anchor_refusal, claim_refusal
from p2pnode.chain.binding import open_binding
from p2pnode.wire.reasons import WireError

Files = Mapping[str, Any]
Params = Mapping[str, Any]


def _anchor(f: Files, p: Params) -> Outcome:
    s = p["schedule"]
    why = anchor_refusal(p["epoch"], bytes.fromhex(p["root"]),
                         held=bytes.fromhex(p["held"]) if p["held"] else None,
                         newest=p["newest"], sender=p["sender"], now_s=p["now_s"],
                         anchorers=p["anchorers"],
                         schedule=Schedule(s["epoch_len_s"], s["grace_s"], s["fallback_s"]))
    n = len(p["anchorers"])
    return Outcome("valid", outputs={"refusal.json": {
        "refused": why.value if why else None, "designated": p["anchorers"][p["epoch"] % n]}})


def _claim(f: Files, p: Params) -> Outcome:
    cumulative, claimed = int(p["cumulative"]), int(p["claimed"])
    why = claim_refusal(bytes.fromhex(p["account"]), cumulative,
                        [bytes.fromhex(h) for h in p["proof"]],
                        newest=bytes.fromhex(p["root"]) if p["root"] else None,
                        claimed=claimed, bound=p["bound"])
    return Outcome("valid", outputs={"claim.json": {
        "refused": why.value if why else None,
        "paid": "0" if why else str(cumulative - claimed)}})


def _bind(f: Files, p: Params) -> Outcome:
    try:
        b = open_binding(f["bind.cbor"], net=p["net"], chain=p["chain"])
    except WireError as e:
        return Outcome("reject", e.reason.value)
    return Outcome("valid", outputs={"bound.json": {
        "account": b.account.hex(), "payee": b.binding.payee.hex(), "chain": b.binding.chain}})


def _announce(f: Files, p: Params) -> Outcome:
    try:
        a = open_announce(f["announce.cbor"], net=p["net"], current=p["current"],
                          closed=p["closed"])
    except WireError as e:
        return Outcome("reject", e.reason.value)
    return Outcome("valid", outputs={"announced.json": {
        "signer": a.signer.hex(), "epoch": a.body.epoch, "root": a.body.root.hex(),
        "count": a.body.count}})


HANDLERS = {
    "chain/anchor": _anchor,
    "chain/claim": _claim,
    "chain/bind": _bind,
    "chain/announce": _announce,
}
