"""Cases for anchoring and claims (spec/08-chain.md).

``anchor``: whether an anchor is refused, and why (ANC-1, ANC-2), from parameters alone;
yields ``refusal.json``. ``claim``: whether a claim is refused and what it pays (CLM-1,
CLM-2), with proofs of trees built here from the ledger's leaf and node rules (LGR-12);
yields ``claim.json``. ``bind``: open the payout binding ``bind.cbor`` (BND-1).
``announce``: open the anchor announcement ``announce.cbor`` for a receiver whose current
epoch is ``current`` and newest closed one ``closed`` (ANC-4).

The outcomes are stated here from the rules' text; the reference must agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from conformance.cases.common import ALICE, BOB, NET, key
from conformance.model import Case, Inputs, reject, valid
from p2pnode.chain.announce import T_ANNOUNCE, AnchorAnnounce
from p2pnode.chain.binding import T_BIND, PayoutBinding
from p2pnode.ledger import merkle
from p2pnode.wire import cbor, envelope
from p2pnode.wire.reasons import Reason

ANCHORERS = [key(n).public_key.hex() for n in ("alice", "bob", "carol")]
L, G, F = 3600, 30, 300  # the schedule, seconds
E = 472_222  # an epoch: designated = anchorers[E % 3]
CLOSE = (E + 1) * L + G
ROOT = bytes(range(1, 33)).hex()


def _anchor(name: str, desc: str, *, refused: str | None, sender: int, now: int,
            epoch: int = E, root: str = ROOT, held: str | None = None,
            newest: int | None = None, rules: tuple[str, ...] = ("ANC-1",)) -> Case:
    return Case(name, Inputs({}, {
        "epoch": epoch, "root": root, "held": held, "newest": newest,
        "sender": ANCHORERS[sender] if sender < 3 else key("dave").public_key.hex(),
        "now_s": now, "anchorers": ANCHORERS,
        "schedule": {"epoch_len_s": L, "grace_s": G, "fallback_s": F}}),
        valid({"refusal.json": {"refused": refused,
                                "designated": ANCHORERS[epoch % 3]}}), desc, rules)


def anchor() -> Iterator[Case]:
    d = E % 3  # the designated anchorer's index
    yield _anchor("designated_at_close", "the designated anchorer as the epoch closes",
                  refused=None, sender=d, now=CLOSE)
    yield _anchor("designated_early", "the designated anchorer 1 s before the close",
                  refused="not_anchorer", sender=d, now=CLOSE - 1)
    yield _anchor("fallback_1_early", "the first fallback before its wait",
                  refused="not_anchorer", sender=(d + 1) % 3, now=CLOSE + F - 1)
    yield _anchor("fallback_1_due", "the first fallback after F", refused=None,
                  sender=(d + 1) % 3, now=CLOSE + F)
    yield _anchor("fallback_2_early", "the second fallback after F only",
                  refused="not_anchorer", sender=(d + 2) % 3, now=CLOSE + F)
    yield _anchor("fallback_2_due", "the second fallback after 2F", refused=None,
                  sender=(d + 2) % 3, now=CLOSE + 2 * F)
    yield _anchor("not_in_the_rotation", "a key that is no anchorer, long after",
                  refused="not_anchorer", sender=3, now=CLOSE + 100 * F)
    yield _anchor("second_root", "an epoch that has a root", refused="root_exists",
                  sender=d, now=CLOSE, held=bytes(32).hex()[:-2] + "07", rules=("ANC-2",))
    yield _anchor("stale", "an epoch before the newest anchored one", refused="stale_epoch",
                  sender=d, now=CLOSE, newest=E + 2, rules=("ANC-2",))
    yield _anchor("skipping", "an epoch after the newest anchored one, skipping two",
                  refused=None, sender=d, now=CLOSE, newest=E - 3, rules=("ANC-2",))
    yield _anchor("zero_root", "32 zero bytes, checked first", refused="zero_root",
                  sender=3, now=0, root=bytes(32).hex(), held=ROOT, rules=("ANC-2",))
    yield _anchor("order_root_before_rotation", "a second root sent by a non-anchorer: "
                  "root_exists, checked before the rotation", refused="root_exists",
                  sender=3, now=0, held=ROOT, rules=("ANC-2",))


def _tree() -> tuple[merkle.Tree, list[bytes]]:
    accounts = [bytes([i + 1]) * 32 for i in range(5)]
    return merkle.build({a: 100 * (i + 1) for i, a in enumerate(accounts)}), accounts


def _claim(name: str, desc: str, *, account: bytes, cumulative: int, proof: list[bytes],
           root: bytes | None, claimed: int = 0, bound: bool = True,
           refused: str | None, rules: tuple[str, ...] = ("CLM-1",)) -> Case:
    paid = 0 if refused else cumulative - claimed
    return Case(name, Inputs({}, {
        "root": root.hex() if root else None, "account": account.hex(),
        "cumulative": str(cumulative), "proof": [p.hex() for p in proof],
        "claimed": str(claimed), "bound": bound}),
        valid({"claim.json": {"refused": refused, "paid": str(paid)}}), desc, rules)


def claim() -> Iterator[Case]:
    tree, accounts = _tree()
    a, b = accounts[1], accounts[3]
    pa, pb = tree.proof(a) or [], tree.proof(b) or []
    yield _claim("pays_all", "a first claim pays the whole cumulative amount", account=a,
                 cumulative=200, proof=pa, root=tree.root, refused=None,
                 rules=("CLM-1", "CLM-2"))
    yield _claim("pays_the_difference", "paid 150 before: pays 50", account=a,
                 cumulative=200, proof=pa, root=tree.root, claimed=150, refused=None,
                 rules=("CLM-2",))
    yield _claim("replay", "paid 200 already", account=a, cumulative=200, proof=pa,
                 root=tree.root, claimed=200, refused="nothing_to_claim")
    yield _claim("lower", "paid more than the claim", account=a, cumulative=200, proof=pa,
                 root=tree.root, claimed=300, refused="nothing_to_claim")
    yield _claim("wrong_amount", "199 for a leaf of 200", account=a, cumulative=199,
                 proof=pa, root=tree.root, refused="bad_proof")
    yield _claim("above", "201 for a leaf of 200", account=a, cumulative=201, proof=pa,
                 root=tree.root, refused="bad_proof")
    yield _claim("wrong_proof", "another account's path", account=a, cumulative=200,
                 proof=pb, root=tree.root, refused="bad_proof")
    yield _claim("short_proof", "the path without its last sibling", account=a,
                 cumulative=200, proof=pa[:-1], root=tree.root, refused="bad_proof")
    older, _ = merkle.build({a: 100}), None
    yield _claim("older_root", "a proof of an older tree against the newest root",
                 account=a, cumulative=100, proof=older.proof(a) or [], root=tree.root,
                 refused="bad_proof")
    yield _claim("no_root", "before any anchor", account=a, cumulative=200, proof=pa,
                 root=None, refused="no_root")
    yield _claim("unbound", "a valid claim of an account with no payee", account=b,
                 cumulative=400, proof=pb, root=tree.root, bound=False, refused="unbound")
    yield _claim("proof_before_payee", "a bad proof of an unbound account: bad_proof first",
                 account=b, cumulative=1, proof=pb, root=tree.root, bound=False,
                 refused="bad_proof")


def _bind_body(**change: Any) -> dict[str, Any]:
    body = PayoutBinding(net=NET, chain=31337, payee=bytes(range(20)), ts=1).to_body()
    body.update(change)
    return body


def bind() -> Iterator[Case]:
    params = {"net": NET, "chain": 31337}
    ok = envelope.seal(ALICE, T_BIND, 1, _bind_body())
    yield Case("valid", Inputs({"bind.cbor": ok}, params), valid({"bound.json": {
        "account": ALICE.public_key.hex(), "payee": bytes(range(20)).hex(), "chain": 31337}}),
        "alice binds her account to a payee on chain 31337", ("BND-1",))
    for name, change, reason, desc in (
            ("other_network", {"net": "othernet"}, Reason.WRONG_NETWORK, "another network"),
            ("other_chain", {"chain": 1}, Reason.BAD_FIELD, "another chain"),
            ("zero_payee", {"payee": bytes(20)}, Reason.BAD_FIELD, "the zero address"),
            ("short_payee", {"payee": bytes(range(1, 20))}, Reason.BAD_FIELD,
             "a 20-byte payee only"),
            ("extra_key", {"memo": "x"}, Reason.UNKNOWN_FIELD, "a key PayoutBinding lacks")):
        data = envelope.seal(BOB, T_BIND, 1, _bind_body(**change))
        yield Case(name, Inputs({"bind.cbor": data}, params), reject(reason), desc, ("BND-1",))
    env = cbor.decode(ok)
    env["s"] = bytes(64)
    yield Case("forged", Inputs({"bind.cbor": cbor.encode(env)}, params),
               reject(Reason.BAD_SIGNATURE), "a signature that is not alice's", ("BND-1",))


def _announce_body(**change: Any) -> dict[str, Any]:
    body = AnchorAnnounce(net=NET, epoch=E, root=bytes(range(32)), count=9, ts=1).to_body()
    body.update(change)
    return body


def announce() -> Iterator[Case]:
    params = {"net": NET, "current": E + 1, "closed": E}
    ok = envelope.seal(ALICE, T_ANNOUNCE, 1, _announce_body())
    yield Case("valid", Inputs({"announce.cbor": ok}, params), valid({"announced.json": {
        "signer": ALICE.public_key.hex(), "epoch": E, "root": bytes(range(32)).hex(),
        "count": 9}}), "alice announces the root she fixed for epoch E", ("ANC-4",))
    for name, change, reason, desc in (
            ("other_network", {"net": "othernet"}, Reason.WRONG_NETWORK, "another network"),
            ("future_epoch", {"epoch": E + 2}, Reason.CLOCK_SKEW,
             "an epoch after the receiver's current one"),
            ("long_closed", {"epoch": E - 17}, Reason.EXPIRED,
             "17 epochs before the receiver's newest closed one"),
            ("short_root", {"root": bytes(31)}, Reason.BAD_FIELD, "a 31-byte root"),
            ("extra_key", {"memo": 1}, Reason.UNKNOWN_FIELD, "a key AnchorAnnounce lacks")):
        data = envelope.seal(BOB, T_ANNOUNCE, 1, _announce_body(**change))
        yield Case(name, Inputs({"announce.cbor": data}, params), reject(reason), desc,
                   ("ANC-4",))
    edge = envelope.seal(BOB, T_ANNOUNCE, 1, _announce_body(epoch=E - 16))
    yield Case("sixteen_back", Inputs({"announce.cbor": edge}, params), valid({
        "announced.json": {"signer": BOB.public_key.hex(), "epoch": E - 16,
                           "root": bytes(range(32)).hex(), "count": 9}}),
        "16 epochs before the newest closed one: still kept", ("ANC-4",))


HANDLERS: dict[str, Callable[[], Iterator[Case]]] = {
    "anchor": anchor,
    "claim": claim,
    "bind": bind,
    "announce": announce,
}
