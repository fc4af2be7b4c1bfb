"""The reference's answers for the ledger vectors (spec/07-ledger.md); see cases/ledger.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import islice
from typing import Any

from conformance.model import Outcome
from p2pnode.ledger import merkle, reconcile, riblt
from p2pnode.ledger.elements import Element, Kind, open_element
from p2pnode.ledger.state import Ledger, Params
from p2pnode.wire.reasons import Reason, WireError

Files = Mapping[str, Any]
Handler = Callable[[Files, Mapping[str, Any]], Outcome]


def _element(f: Files, p: Mapping[str, Any]) -> Outcome:
    try:
        el = open_element(f["element.cbor"], net=p["net"], now_ms=p["now_ms"])
    except WireError as e:
        return Outcome("reject", e.reason.value)
    return Outcome("valid", outputs={"element.json": {
        "id": el.id.hex(), "kind": el.kind.value, "account": el.account.hex(),
        "payer": el.payer.hex(), "amount": el.amount, "ts": el.ts, "job": el.job.hex()}})


def _settle(f: Files, p: Mapping[str, Any]) -> Outcome:
    params = Params(epoch_len_ms=p["epoch_len_ms"], grace_ms=p["grace_ms"])
    ledger = Ledger(params, frozen=p["frozen"])
    el = Element(id=bytes(34), kind=Kind.CREDIT, account=bytes(32), payer=bytes(32), amount=0,
                 ts=p["ts"], job=b"", raw=b"")
    if p["held"] is not None:
        ledger.restore(el, p["held"])
    s = ledger.add(el, p["arrival_ms"], p["claim"])
    return Outcome("valid", outputs={"settle.json": {
        "epoch": params.epoch(p["ts"]), "settle": s,
        "first_open": params.first_open(p["arrival_ms"])}})


def _balances(f: Files, p: Mapping[str, Any]) -> Outcome:
    ledger = Ledger()
    for entry in f["elements.json"]:
        try:
            el = open_element(bytes.fromhex(entry["element"]), net=p["net"], now_ms=p["now_ms"])
        except WireError as e:
            return Outcome("reject", e.reason.value)
        ledger.restore(el, entry["settle"])
    through = p["through"]
    credited = {(el.account, s) for el, s in ledger.held.values()
                if el.kind is Kind.CREDIT and s <= through}
    earned = ledger.earned(through)
    return Outcome("valid", outputs={
        "balances.json": {a.hex(): str(v) for a, v in ledger.balances(through).items()},
        "earned.json": {f"{a.hex()}/{s}": str(earned.get((a, s), 0)) for a, s in credited},
        "root.txt": ledger.tree(through).root.hex()})


def _root(f: Files, p: Mapping[str, Any]) -> Outcome:
    tree = merkle.build({bytes.fromhex(a): int(v) for a, v in p["balances"]})
    proofs = {a: tree.proof(a) or [] for a in tree.accounts}
    return Outcome("valid", outputs={
        "root.txt": tree.root.hex(),
        "leaves.json": [{"account": a.hex(), "leaf": leaf.hex()}
                        for a, leaf in zip(tree.accounts, tree.levels[0], strict=True)],
        "proofs.json": {a.hex(): [h.hex() for h in path] for a, path in proofs.items()}})


def _verify(f: Files, p: Mapping[str, Any]) -> Outcome:
    ok = merkle.verify(bytes.fromhex(p["root"]), bytes.fromhex(p["account"]), int(p["amount"]),
                       [bytes.fromhex(h) for h in p["path"]])
    return Outcome("valid") if ok else Outcome("reject", Reason.BAD_PROOF.value)


def _symbols(f: Files, p: Mapping[str, Any]) -> Outcome:
    keys = [bytes.fromhex(k) for k in p["keys"]]
    syms = riblt.reference_encode(keys, p["start"], p["stop"])
    enc = riblt.Encoder(keys)
    enc.extend(p["start"])
    if enc.extend(p["stop"]) != syms:  # the vectorized encoder agrees, or nothing is written
        raise AssertionError("riblt.Encoder differs from riblt.reference_encode")
    out = [syms.symbol(i) for i in range(len(syms))]
    return Outcome("valid", outputs={
        "symbols.json": [{"sum": s.hex(), "chk": str(c), "count": n} for s, c, n in out],
        "sym.bin": syms.to_bytes(),
        "indices.json": {k.hex(): list(islice(riblt.indices(k, riblt.MAX_INDEX + 1), 12))
                         for k in keys}})


def _session(f: Files, p: Mapping[str, Any]) -> Outcome:
    r = reconcile.run_session([bytes.fromhex(k) for k in p["keys_i"]],
                              [bytes.fromhex(k) for k in p["keys_r"]])
    return Outcome("valid", outputs={
        "transcript.json": [{"dir": d, "cbor": m.hex()} for d, m in r.transcript],
        "result.json": {"missing": [k.hex() for k in r.missing],
                        "extra": [k.hex() for k in r.extra], "rounds": r.rounds,
                        "bytes_i2r": r.bytes_i2r, "bytes_r2i": r.bytes_r2i}})


def _sync_message(f: Files, p: Mapping[str, Any]) -> Outcome:
    """A fresh machine of ``role`` (an initiator has sent its hello) is fed the ``prefix``,
    which it must accept, then ``message.cbor``; ``replies.json``: what it answers."""
    keys = [bytes.fromhex(k) for k in p["keys"]]
    machine: reconcile.Initiator | reconcile.Responder
    if p["role"] == "initiator":
        machine = reconcile.Initiator(keys)
        machine.start()
    else:
        machine = reconcile.Responder(keys)
    for m in p["prefix"]:
        machine.receive(bytes.fromhex(m))
    try:
        replies = machine.receive(f["message.cbor"])
    except WireError as e:
        return Outcome("reject", e.reason.value)
    return Outcome("valid", outputs={"replies.json": [r.hex() for r in replies]})


HANDLERS: dict[str, Handler] = {
    "ledger/element": _element,
    "ledger/settle": _settle,
    "ledger/balances": _balances,
    "ledger/root": _root,
    "ledger/verify": _verify,
    "ledger/symbols": _symbols,
    "ledger/session": _session,
    "ledger/sync_message": _sync_message,
}
