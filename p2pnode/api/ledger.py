"""Admin API commands of the ledger (spec 07): ``ledger.summary``, ``ledger.balance``,
``ledger.root`` and ``ledger.proof``. A proof's JSON is what ``p2pnode ledger
verify-proof`` checks offline (:func:`check_proof`)."""

from __future__ import annotations

from typing import Any

from p2pnode.identity import b58decode, peer_id_str, public_key_from_peer_id
from p2pnode.ledger import merkle
from p2pnode.services.ledger import LedgerService


class LedgerArgsError(ValueError):
    pass


def account_of(peer: str) -> bytes:
    """A PeerID (base58) or a 64-hex-digit Ed25519 key."""
    if len(peer) == 64:
        try:
            return bytes.fromhex(peer)
        except ValueError:
            pass
    try:
        return public_key_from_peer_id(b58decode(peer))
    except Exception as e:
        raise LedgerArgsError(f"{peer!r} is neither a PeerID nor a 32-byte hex key") from e


def _epoch(ledger: LedgerService, args: dict[str, Any]) -> int:
    e = args.get("epoch")
    if e is None:
        return ledger.ledger.frozen
    if not isinstance(e, int) or isinstance(e, bool) or e < 0:
        raise LedgerArgsError("epoch must be a non-negative integer")
    return e


def _closed(ledger: LedgerService, e: int) -> tuple[bytes, int, int]:
    r = ledger.root(e)
    if r is None:
        raise LedgerArgsError(f"epoch {e} is not closed yet (newest closed: "
                              f"{ledger.ledger.frozen})")
    return r


def balance(ledger: LedgerService, account: bytes, args: dict[str, Any]) -> dict[str, Any]:
    e = _epoch(ledger, args)
    per_epoch: dict[int, int] = {}
    for (a, s), v in ledger.ledger.earned(e).items():
        if a == account:
            per_epoch[s] = v
    slashes = sum(1 for el in ledger.ledger.elements() if el.kind.value == "slash"
                  and el.account == account)
    return {"account": account.hex(), "peer_id": peer_id_str(account), "epoch": e,
            "cumulative": sum(per_epoch.values()),
            "by_epoch": {str(k): v for k, v in sorted(per_epoch.items())},
            "spent": ledger.ledger.spent(e).get(account, 0), "slashes": slashes}


def root(ledger: LedgerService, args: dict[str, Any]) -> dict[str, Any]:
    e = _epoch(ledger, args)
    r, count, accounts = _closed(ledger, e)
    return {"epoch": e, "root": r.hex(), "elements": count, "accounts": accounts}


def proof(ledger: LedgerService, account: bytes, args: dict[str, Any]) -> dict[str, Any]:
    e = _epoch(ledger, args)
    r, _, _ = _closed(ledger, e)
    tree = ledger.tree(e)
    i = tree.index(account)
    if i is None:
        raise LedgerArgsError(f"{peer_id_str(account)} has nothing in epoch {e}")
    path = tree.proof(account) or []
    amount = tree.amounts[i]
    return {"epoch": e, "account": account.hex(), "peer_id": peer_id_str(account),
            "cumulative": amount, "leaf": merkle.leaf(account, amount).hex(),
            "path": [p.hex() for p in path], "root": r.hex()}


def check_proof(d: Any) -> tuple[bool, str]:
    """Whether a proof's JSON (as ``ledger.proof`` gives it) proves its leaf; and why not."""
    try:
        account = bytes.fromhex(d["account"])
        amount = d["cumulative"]
        path = [bytes.fromhex(p) for p in d["path"]]
        r = bytes.fromhex(d["root"])
        leaf = bytes.fromhex(d["leaf"]) if "leaf" in d else None
    except (KeyError, TypeError, ValueError) as e:
        return False, f"not a proof: {e}"
    if not isinstance(amount, int) or isinstance(amount, bool):
        return False, "cumulative must be an integer"
    try:
        if leaf is not None and leaf != merkle.leaf(account, amount):
            return False, "the leaf is not keccak256(0x00 || account || amount)"
    except ValueError as e:
        return False, str(e)
    if not merkle.verify(r, account, amount, path):
        return False, "the path does not lead to the root"
    return True, "ok"


def ledger_handlers(node: Any) -> dict[str, Any]:
    def svc() -> LedgerService:
        if node.ledger is None:
            raise LedgerArgsError("the ledger is not running")
        return node.ledger  # type: ignore[no-any-return]

    def who(args: dict[str, Any]) -> bytes:
        peer = args.get("peer")
        return account_of(str(peer)) if peer else bytes(node.identity.public_key)

    async def summary(args: dict[str, Any]) -> Any:
        s = svc()
        return {**s.summary(), "roots": {str(e): r.hex() for e, r in
                                         s.roots_through(s.ledger.frozen).items()}}

    async def balance_(args: dict[str, Any]) -> Any:
        return balance(svc(), who(args), args)

    async def root_(args: dict[str, Any]) -> Any:
        return root(svc(), args)

    async def proof_(args: dict[str, Any]) -> Any:
        return proof(svc(), who(args), args)

    return {"ledger.summary": summary, "ledger.balance": balance_, "ledger.root": root_,
            "ledger.proof": proof_}


def chain_handlers(node: Any) -> dict[str, Any]:
    """``chain.status``, ``chain.anchors`` and ``chain.claim`` (spec 08, draft)."""
    import trio

    def svc() -> Any:
        if node.anchoring is None:
            raise LedgerArgsError("no chain is configured ([chain] backend)")
        return node.anchoring

    async def status(args: dict[str, Any]) -> Any:
        return svc().status()

    async def anchors(args: dict[str, Any]) -> Any:
        rows = await trio.to_thread.run_sync(svc().chain.anchors)
        return [{"epoch": a.epoch, "root": a.root.hex(), "count": a.count,
                 "anchorer": a.anchorer, "at": a.at, "tx": a.tx} for a in rows]

    async def claim(args: dict[str, Any]) -> Any:
        from p2pnode.chain.base import ChainError

        try:
            c = await svc().claim()
        except ChainError as e:
            return {"ok": False, "reason": e.reason.value, "detail": e.detail}
        return {"ok": True, "account": c.account.hex(), "payee": c.payee,
                "cumulative": c.cumulative, "paid": c.paid, "epoch": c.epoch, "tx": c.tx}

    return {"chain.status": status, "chain.anchors": anchors, "chain.claim": claim}
