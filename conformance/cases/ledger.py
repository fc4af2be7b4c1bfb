"""Cases for the reward ledger and its reconciliation (spec/07-ledger.md).

``element``: open the ledger element ``element.cbor`` with ``net`` and ``now_ms`` (LGR-1 to
LGR-5); yields ``element.json``.
``settle``: the settlement epoch of one element (LGR-6 to LGR-8), from parameters alone.
``balances``: what the elements of ``elements.json``, each with its settlement epoch, pay
through epoch ``through`` (LGR-9, LGR-10) and the root of it (LGR-12).
``root``: the root, leaves and proofs of a list of balances (LGR-12, LGR-13); ``verify``:
whether a proof holds (LGR-14).
``symbols``: the coded symbols of a set of keys (RCN-2 to RCN-4); ``session``: a whole
reconciliation between two sets (RCN-5 to RCN-7); ``sync_message``: one sync message fed to
an initiator or a responder after a prefix of the session (RCN-5 to RCN-7).

The outputs of ``element``, ``settle``, ``balances``, ``root``, ``symbols`` and ``verify`` are
computed here from the rules' text (keccak-256 from pycryptodome, splitmix64 written out),
not by the reference; the reference must agree.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from Crypto.Hash import keccak

from conformance.cases.common import ALICE, BOB, CAROL, NET, NOW_MS, key
from conformance.cases.proofs import (
    JOB_ID,
    RESULT_TS,
    WRONG,
    _fraud_body,
    _path,
    _result,
    _rows_of,
)
from conformance.model import Case, Expected, Inputs, reject, valid
from p2pnode.identity import Identity
from p2pnode.ledger import elements, reconcile, samples
from p2pnode.proofs.bars import BAR_MS
from p2pnode.proofs.fraud import T_FRAUD
from p2pnode.proofs.receipts import Receipt
from p2pnode.wire import cbor, envelope
from p2pnode.wire.cid import cid_of
from p2pnode.wire.reasons import Reason

DAVE = key("dave")
EPOCH_LEN = 3_600_000  # the default L and G (spec 07 §3)
GRACE = 30_000
E = NOW_MS // EPOCH_LEN  # the epoch of the receiver's clock


# -- elements (LGR-1 .. LGR-5) -------------------------------------------------------------


def _job(nonce: int = 1, requester: Identity = ALICE, ts: int = NOW_MS - 1000) -> bytes:
    return samples.job(requester, NET, ts, nonce)


def _receipt(job_id: bytes, *, signer: Identity = ALICE, worker: bytes = BOB.public_key,
             price: int = 900, ts: int = NOW_MS - 1000, net: str = NET) -> bytes:
    return Receipt(net=net, job=job_id, lease=1, worker=worker, output=cid_of(b"output"),
                   price=price, verified="structural", ts=ts).seal(signer)


def _credit(job_raw: bytes | None = None, **receipt: Any) -> tuple[bytes, bytes, bytes]:
    """(element, receipt, job): a credit whose receipt names ``job_raw``."""
    j = _job() if job_raw is None else job_raw
    r = _receipt(cid_of(j), **receipt)
    return elements.credit(r, j), r, j


def _credit_json(r: bytes, j: bytes, *, account: bytes = BOB.public_key, amount: int = 900,
                 ts: int = NOW_MS - 1000) -> dict[str, Any]:
    return {"id": cid_of(r).hex(), "kind": "credit", "account": account.hex(),
            "payer": ALICE.public_key.hex(), "amount": amount, "ts": ts, "job": cid_of(j).hex()}


def _element(name: str, data: bytes, expected: Expected, desc: str, rules: tuple[str, ...],
             now_ms: int = NOW_MS) -> Case:
    return Case(name, Inputs({"element.cbor": data}, {"net": NET, "now_ms": now_ms}), expected,
                desc, rules)


def _flip_sig(env_raw: bytes) -> bytes:
    env = cbor.decode(env_raw)
    env["s"] = bytes([env["s"][0] ^ 1]) + env["s"][1:]
    return cbor.encode(env)


def _slash_of(body: dict[str, Any], reporter: Identity = CAROL) -> bytes:
    return elements.slash(envelope.seal(reporter, T_FRAUD, 1, body))


def element() -> Iterator[Case]:
    el, r, j = _credit()
    yield _element("credit", el, valid({"element.json": _credit_json(r, j)}),
                   "Alice's receipt paying Bob 900 for her job, with the job's envelope",
                   ("LGR-1", "LGR-2", "LGR-3", "LGR-4"))
    top = (1 << 34) - 1
    el, r, j = _credit(price=top)
    yield _element("price_at_the_limit", el, valid({"element.json": _credit_json(
        r, j, amount=top)}), "a price of 2^34 - 1", ("LGR-3",))
    el, _, _ = _credit(price=1 << 34)
    yield _element("price_over_the_limit", el, reject(Reason.LIMIT_EXCEEDED),
                   "a price of 2^34", ("LGR-3",))
    ahead = NOW_MS + 30_000
    el, r, j = _credit(ts=ahead)
    yield _element("ts_30000_ahead", el, valid({"element.json": _credit_json(r, j, ts=ahead)}),
                   "a receipt ts exactly 30 s ahead of the receiver's clock", ("LGR-4",))
    el, _, _ = _credit(ts=ahead + 1)
    yield _element("ts_30001_ahead", el, reject(Reason.CLOCK_SKEW),
                   "a receipt ts 30.001 s ahead", ("LGR-4",))
    old = 1_000
    el, r, j = _credit(ts=old)
    yield _element("ts_long_past", el, valid({"element.json": _credit_json(r, j, ts=old)}),
                   "a receipt from 1970: no lower bound", ("LGR-4",))
    j_test = samples.job(ALICE, "testnet", NOW_MS - 1000, 1)
    el, _, _ = _credit(j_test, net="testnet")
    yield _element("other_network", el, reject(Reason.WRONG_NETWORK),
                   "a credit of testnet received on devnet (RCP-2)", ("LGR-2",))
    el, r, j = _credit()
    yield _element("receipt_forged", elements.credit(_flip_sig(r), j),
                   reject(Reason.BAD_SIGNATURE), "a receipt whose signature does not verify",
                   ("LGR-2",))
    el, _, _ = _credit(signer=CAROL)
    yield _element("signed_by_another", el, reject(Reason.SIGNER_MISMATCH),
                   "Carol's receipt for Alice's job: a receipt counts only from the job's "
                   "requester (RCP-3)", ("LGR-2",))
    el, _, _ = _credit(worker=ALICE.public_key)
    yield _element("self_paid", el, reject(Reason.SIGNER_MISMATCH),
                   "a receipt paying its own signer (RCP-2)", ("LGR-2",))
    _, r, _ = _credit()
    yield _element("job_not_the_receipts", elements.credit(r, _job(nonce=2)),
                   reject(Reason.ID_MISMATCH),
                   "the job bytes are another job of Alice's than the receipt names", ("LGR-2",))
    for name, not_a_job, desc in (
            ("job_not_an_envelope", b"not a job.spec envelope",
             "job bytes that are no envelope, named by the receipt's job id"),
            ("job_of_another_type",
             _receipt(cid_of(b"x"), worker=CAROL.public_key),
             "a receipt envelope of Alice's in place of the job spec, named by the receipt")):
        el, _, _ = _credit(not_a_job)
        yield _element(name, el, reject(Reason.BAD_ENVELOPE), desc, ("LGR-2",))
    broken = _flip_sig(_job())
    el, r, j = _credit(broken)
    yield _element("job_signature_not_read", el, valid({"element.json": _credit_json(r, j)}),
                   "a job envelope whose own signature is broken: only its layout, hash and "
                   "key are read", ("LGR-2",))
    el, r, j = _credit()
    extra = cbor.encode({"receipt": r, "job": j, "memo": b"x"})
    yield _element("extra_key", extra, reject(Reason.UNKNOWN_FIELD),
                   "a credit with a key neither form has", ("LGR-1",))
    enc = cbor.encode
    reordered = b"\xa2" + enc("receipt") + enc(r) + enc("job") + enc(j)
    yield _element("keys_not_canonical", reordered, reject(Reason.NON_CANONICAL),
                   "a credit with receipt before job: not canonical CBOR (ENC-1 to ENC-12)",
                   ("LGR-1",))
    for name, value, desc in (
            ("empty_map", {}, "an empty map"),
            ("not_a_map", [r, j], "an array of the two envelopes"),
            ("only_job", {"job": j}, "a map with a job and no receipt"),
            ("credit_and_slash_keys", {"job": j, "fraud": r}, "the keys of both forms mixed"),
            ("receipt_not_bytes", {"receipt": "r", "job": j}, "a receipt that is text")):
        yield _element(name, enc(value), reject(Reason.BAD_FIELD), desc, ("LGR-1",))
    padded = elements.credit(r, j + bytes(elements.MAX_CREDIT_SIZE - len(el) + 1))
    assert len(padded) == elements.MAX_CREDIT_SIZE + 1
    yield _element("credit_too_large", padded, reject(Reason.TOO_LARGE),
                   "a credit of 8737 bytes, one more than 8736", ("LGR-1",))
    fraud_raw = envelope.seal(CAROL, T_FRAUD, 1, _fraud_body())
    slash_json = {"id": cid_of(fraud_raw).hex(), "kind": "slash",
                  "account": BOB.public_key.hex(), "payer": CAROL.public_key.hex(),
                  "amount": 0, "ts": RESULT_TS, "job": JOB_ID.hex()}
    yield _element("slash", elements.slash(fraud_raw), valid({"element.json": slash_json}),
                   "Carol's matmul.row fraud proof against Bob: a slash of Bob at his result's "
                   "ts", ("LGR-1", "LGR-4", "LGR-5"))
    yield _element("slash_bar_long_over", elements.slash(fraud_raw),
                   valid({"element.json": slash_json}),
                   "the same slash received 10 bars after the result: a slash does not expire",
                   ("LGR-5",), now_ms=RESULT_TS + 11 * BAR_MS)
    rows = _rows_of(WRONG)
    yield _element("slash_of_an_honest_row", _slash_of(_fraud_body(
        row=2, claimed=rows[2], path=_path(rows, 2))), reject(Reason.BAD_PROOF),
        "a fraud proof naming a right row: nothing proven (FRD-6)", ("LGR-5",))
    yield _element("slash_other_network", _slash_of(_fraud_body(net="testnet")),
                   reject(Reason.WRONG_NETWORK), "a fraud proof of testnet (FRD-1)", ("LGR-5",))
    yield _element("slash_garbage", elements.slash(b"garbage"), reject(Reason.TRUNCATED),
                   "fraud bytes that are no CBOR item: the fraud checker's first refusal",
                   ("LGR-5",))
    yield _element("slash_extra_key", cbor.encode({"fraud": fraud_raw, "ts": NOW_MS}),
                   reject(Reason.UNKNOWN_FIELD), "a slash with a key neither form has",
                   ("LGR-1",))


# -- settlement (LGR-6 .. LGR-8) -------------------------------------------------------------


def _settle(name: str, desc: str, *, ts: int, arrival: int, claim: int | None = None,
            frozen: int = -1, held: int | None = None, settle: int | None,
            epoch_len: int = EPOCH_LEN, grace: int = GRACE,
            rules: tuple[str, ...] = ("LGR-8",)) -> Case:
    own = ts // epoch_len
    first_open = max(0, (arrival - grace) // epoch_len)
    return Case(name, Inputs({}, {"epoch_len_ms": epoch_len, "grace_ms": grace, "ts": ts,
                                  "arrival_ms": arrival, "claim": claim, "frozen": frozen,
                                  "held": held}),
                valid({"settle.json": {"epoch": own, "settle": settle,
                                       "first_open": first_open}}), desc, rules)


def settle() -> Iterator[Case]:
    t0, L = E * EPOCH_LEN, EPOCH_LEN  # the spec's L
    close = (E + 1) * L + GRACE  # epoch E closes (LGR-7)
    ts = t0 + 100_000
    yield _settle("on_time", "gossip within its own epoch", ts=ts, arrival=ts + 500, settle=E,
                  rules=("LGR-6", "LGR-7", "LGR-8"))
    late_ts = (E + 1) * L - 1000
    yield _settle("in_the_grace_period", "arriving 1 ms before its epoch closes, in the "
                  "next epoch's first G: still its own epoch", ts=late_ts, arrival=close - 1,
                  settle=E, rules=("LGR-7", "LGR-8"))
    yield _settle("at_the_close", "arriving as its epoch closes: the first open epoch",
                  ts=late_ts, arrival=close, settle=E + 1, rules=("LGR-7", "LGR-8"))
    yield _settle("long_late", "arriving three epochs later: late, settled now", ts=ts,
                  arrival=t0 + 3 * L + 40_000, settle=E + 3)
    yield _settle("claim_lowers", "a sync item settled by its sender in E + 1, arriving in "
                  "E + 3: the claim, not the first open epoch", ts=ts,
                  arrival=t0 + 3 * L + 40_000, claim=E + 1, settle=E + 1)
    yield _settle("claim_below_own_epoch", "a claim of E - 2 for an element of E: its own "
                  "epoch", ts=ts, arrival=t0 + 3 * L, claim=E - 2, settle=E,
                  rules=("LGR-6", "LGR-8"))
    yield _settle("claim_capped_by_arrival", "a claim of E + 10 arriving in E + 1's grace "
                  "period: capped at epoch(now) = E + 1", ts=ts, arrival=(E + 1) * L + 10,
                  claim=E + 10, settle=E + 1)
    yield _settle("claim_in_grace", "a claim of E arriving in E + 1's grace period: E",
                  ts=ts, arrival=(E + 1) * L + 10, claim=E, settle=E)
    yield _settle("frozen_floor", "a claim of E arriving in E + 3 after the node fixed "
                  "E + 2's root: E + 3", ts=ts, arrival=t0 + 3 * L + 40_000, claim=E,
                  frozen=E + 2, settle=E + 3)
    yield _settle("frozen_lagging", "gossip arriving in E + 3 at a node whose newest fixed "
                  "root is E + 1's: the first open epoch", ts=ts, arrival=t0 + 3 * L + 40_000,
                  frozen=E + 1, settle=E + 3)
    yield _settle("held_lowered", "held settled in E + 3; a claim of E + 1 lowers it", ts=ts,
                  arrival=t0 + 3 * L + 40_000, claim=E + 1, held=E + 3, settle=E + 1)
    yield _settle("held_not_raised", "held settled in E; arriving again late by gossip: no "
                  "change", ts=ts, arrival=t0 + 3 * L + 40_000, held=E, settle=None)
    yield _settle("held_again_same", "held settled in E; arriving again on time: not added "
                  "again", ts=ts, arrival=ts + 500, held=E, settle=None)
    yield _settle("held_frozen", "held settled in E + 1, whose root is fixed; a claim of E: "
                  "not moved", ts=ts, arrival=t0 + 2 * L, claim=E, frozen=E + 1, held=E + 1,
                  settle=None)
    for name, t, own in (("ts_at_epoch_start", t0, E), ("ts_before_epoch_start", t0 - 1, E - 1),
                         ("ts_at_epoch_end", t0 + L - 1, E)):
        yield _settle(name, f"ts = E * L {t - t0:+d} ms: epoch E {own - E:+d}, arriving "
                      "1 s later", ts=t, arrival=t + 1000, settle=own, rules=("LGR-6", "LGR-8"))
    yield _settle("first_open_at_genesis", "ts 0 arriving at 1 s, before the first G: "
                  "first open epoch 0", ts=0, arrival=1000, settle=0, rules=("LGR-7", "LGR-8"))
    tl, tg = 20_000, 5_000
    te = NOW_MS // tl
    yield _settle("testnet_epochs", "L = 20 s, G = 5 s: an element of the previous epoch "
                  "arriving 4 s into this one", ts=te * tl - 1, arrival=te * tl + 4_000,
                  settle=te - 1, epoch_len=tl, grace=tg, rules=("LGR-6", "LGR-7", "LGR-8"))
    yield _settle("testnet_after_close", "L = 20 s, G = 5 s: the same 5 s in", ts=te * tl - 1,
                  arrival=te * tl + 5_000, settle=te, epoch_len=tl, grace=tg,
                  rules=("LGR-7", "LGR-8"))


# -- balances and roots (LGR-9, LGR-10, LGR-12 .. LGR-14) --------------------------------------


def _keccak(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def _leaf(account: bytes, amount: int) -> bytes:
    return _keccak(b"\x00" + account + amount.to_bytes(32, "big"))


def _node(x: bytes, y: bytes) -> bytes:
    return _keccak(min(x, y) + max(x, y))


def _tree(balances: dict[bytes, int]) -> tuple[bytes, list[bytes], dict[bytes, list[bytes]]]:
    """LGR-12, LGR-13 from the text: (root, leaves by account, proof of each account)."""
    accounts = sorted(a for a, v in balances.items() if v > 0)
    leaves = [_leaf(a, balances[a]) for a in accounts]
    proofs: dict[bytes, list[bytes]] = {a: [] for a in accounts}
    pos = {a: i for i, a in enumerate(accounts)}
    level = leaves
    while len(level) > 1:
        for a in accounts:
            i = pos[a]
            if i ^ 1 < len(level):
                proofs[a].append(level[i ^ 1])
            pos[a] = i // 2
        up = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = up + ([level[-1]] if len(level) % 2 else [])
    return (level[0] if level else bytes(32)), leaves, proofs


def _fold(account: bytes, amount: int, path: Sequence[bytes]) -> bytes:
    h = _leaf(account, amount)
    for p in path:
        h = _node(h, p)
    return h


# A worker's credits: (worker, price, settle epoch); a slash: (cheater, reporter, settle).
Credit = tuple[Identity, int, int]
Slash = tuple[Identity, Identity, int]


def _credit_bytes(worker: Identity, price: int, nonce: int) -> bytes:
    return samples.credit(ALICE, NET, worker.public_key, price, NOW_MS - 10 * EPOCH_LEN, nonce)


def _slash_bytes(cheater: Identity, reporter: Identity) -> bytes:
    return _slash_of(_fraud_body(result=_result(signer=cheater)), reporter)


def _balances_case(name: str, credits: Sequence[Credit], slashes: Sequence[Slash],
                   through: int, desc: str, rules: tuple[str, ...],
                   order: Callable[[list[Any]], list[Any]] = list) -> Case:
    entries = [{"element": _credit_bytes(w, price, n).hex(), "settle": s}
               for n, (w, price, s) in enumerate(credits)]
    entries += [{"element": _slash_bytes(c, r).hex(), "settle": s} for c, r, s in slashes]
    slashed = {(c.public_key, s) for c, _, s in slashes}
    earned: dict[tuple[bytes, int], int] = {}
    for w, price, s in credits:
        if s <= through:
            k = (w.public_key, s)
            earned[k] = earned.get(k, 0) + (0 if k in slashed else price)
    cumulative: dict[bytes, int] = {}
    for (a, _), v in earned.items():
        cumulative[a] = cumulative.get(a, 0) + v
    cumulative = {a: v for a, v in cumulative.items() if v > 0}
    root, _, _ = _tree(cumulative)
    return Case(name, Inputs({"elements.json": order(entries)},
                             {"net": NET, "now_ms": NOW_MS, "through": through}),
                valid({"balances.json": {a.hex(): str(v) for a, v in cumulative.items()},
                       "earned.json": {f"{a.hex()}/{s}": str(v)
                                       for (a, s), v in earned.items()},
                       "root.txt": root.hex()}), desc, rules)


FORFEIT: tuple[list[Credit], list[Slash]] = (
    [(BOB, 100, E - 3), (BOB, 200, E - 2), (BOB, 300, E - 1), (CAROL, 500, E - 2),
     (CAROL, 70, E - 1)],
    [(BOB, CAROL, E - 2)])


def balances() -> Iterator[Case]:
    yield _balances_case("one_credit", [(BOB, 900, E)], [], E, "one credit of 900 to Bob",
                         ("LGR-9", "LGR-10", "LGR-12"))
    yield _balances_case("cumulative", [(BOB, 100, E - 3), (BOB, 200, E - 2), (BOB, 50, E - 2),
                                        (BOB, 400, E), (DAVE, 7, E - 1)], [], E,
                         "Bob's credits in three epochs add up; Dave's apart",
                         ("LGR-9", "LGR-10", "LGR-12"))
    yield _balances_case("through_an_earlier_epoch", [(BOB, 100, E - 3), (BOB, 200, E - 2),
                                                      (BOB, 400, E)], [], E - 2,
                         "the same kind of credits through E - 2: E's is not yet counted",
                         ("LGR-10", "LGR-12"))
    yield _balances_case("slash_forfeits_its_epoch", *FORFEIT, E,
                         "a slash of Bob settled in E - 2 forfeits his 200 there, not his "
                         "100 and 300 elsewhere, nor Carol's", ("LGR-9", "LGR-10", "LGR-12"))
    yield _balances_case("two_slashes_one_epoch", [(BOB, 100, E - 1), (BOB, 200, E - 1),
                                                   (BOB, 40, E)],
                         [(BOB, CAROL, E - 1), (BOB, DAVE, E - 1)], E,
                         "two slashes of Bob (two reporters) in E - 1: the epoch's 300 is "
                         "forfeit once", ("LGR-9", "LGR-10"))
    yield _balances_case("slash_of_an_epoch_without_credits", [(BOB, 100, E - 1)],
                         [(BOB, CAROL, E)], E,
                         "a slash in an epoch where Bob earned nothing: it takes nothing "
                         "from earlier epochs", ("LGR-9", "LGR-10"))
    yield _balances_case("settled_after_through", [(BOB, 100, E - 1), (BOB, 200, E + 1),
                                                   (CAROL, 300, E - 1)],
                         [(CAROL, DAVE, E + 1)], E,
                         "a credit and a slash settled in E + 1, after through = E: neither "
                         "counts", ("LGR-9", "LGR-10", "LGR-12"))
    yield _balances_case("fully_slashed", [(BOB, 100, E)], [(BOB, CAROL, E)], E,
                         "Bob's only credit is forfeit: no leaf for him, the empty root",
                         ("LGR-9", "LGR-12"))
    yield _balances_case("no_elements", [], [], E, "no elements: the root is 32 zero bytes",
                         ("LGR-10", "LGR-12"))

    def shuffled_twice(entries: list[Any]) -> list[Any]:
        return entries[::-1] + entries[1::2] + entries[0::2]

    yield _balances_case("merged_in_any_order", *FORFEIT, E,
                         "the elements of slash_forfeits_its_epoch in another order, each "
                         "given twice: merge is union, the outputs are that case's",
                         ("LGR-9", "LGR-10", "LGR-12"), order=shuffled_twice)


def _accounts(n: int) -> list[bytes]:
    return [hashlib.sha256(b"p2pnode conformance account %d" % i).digest() for i in range(n)]


def _root_case(name: str, pairs: list[tuple[bytes, int]], desc: str,
               rules: tuple[str, ...] = ("LGR-12", "LGR-13")) -> Case:
    root, leaves, proofs = _tree(dict(pairs))
    accounts = sorted(a for a, v in pairs if v > 0)
    return Case(name, Inputs({}, {"balances": [[a.hex(), str(v)] for a, v in pairs]}),
                valid({"root.txt": root.hex(),
                       "leaves.json": [{"account": a.hex(), "leaf": lf.hex()}
                                       for a, lf in zip(accounts, leaves, strict=True)],
                       "proofs.json": {a.hex(): [p.hex() for p in ps]
                                       for a, ps in proofs.items()}}), desc, rules)


def root() -> Iterator[Case]:
    for n in (1, 2, 3, 5, 8):
        accts = _accounts(n)
        yield _root_case(f"accounts_{n}", [(a, 1000 * (i + 1)) for i, a in enumerate(sorted(
            accts))], f"{n} accounts, sorted" + (": odd nodes carried up unchanged"
                                                 if n in (3, 5) else ""))
    a = _accounts(3)
    yield _root_case("max_amount", [(a[0], 2**256 - 1), (a[1], 1)],
                     "an amount of 2^256 - 1 next to one of 1")
    yield _root_case("unsorted", [(x, 10 + i) for i, x in enumerate(sorted(_accounts(5))[::-1])],
                     "five accounts given in decreasing order: the leaves are sorted")
    yield _root_case("zero_amount_no_leaf", [(a[0], 5), (a[1], 0), (a[2], 9)],
                     "an account with 0 has no leaf", ("LGR-12",))


def _verify(name: str, r: bytes, account: bytes, amount: int, path: Sequence[bytes],
            ok: bool, desc: str) -> Case:
    return Case(name, Inputs({}, {"root": r.hex(), "account": account.hex(),
                                  "amount": str(amount), "path": [p.hex() for p in path]}),
                valid() if ok else reject(Reason.BAD_PROOF), desc, ("LGR-14",))


def verify() -> Iterator[Case]:
    accts = sorted(_accounts(5))
    bal = {a: 1000 * (i + 1) for i, a in enumerate(accts)}
    r, _, proofs = _tree(bal)
    a1, a4 = accts[1], accts[4]
    yield _verify("valid", r, a1, bal[a1], proofs[a1], True, "account 1 of 5: three siblings")
    yield _verify("valid_carried_leaf", r, a4, bal[a4], proofs[a4], True,
                  "account 4 of 5, carried up twice: one sibling")
    yield _verify("amount_plus_one", r, a1, bal[a1] + 1, proofs[a1], False,
                  "the amount one more than the leaf's")
    changed = list(proofs[a1])
    changed[1] = bytes([changed[1][0] ^ 1]) + changed[1][1:]
    yield _verify("sibling_changed", r, a1, bal[a1], changed, False, "one sibling altered")
    yield _verify("sibling_dropped", r, a1, bal[a1], proofs[a1][:-1], False,
                  "the last sibling left out")
    yield _verify("wrong_account", r, accts[2], bal[a1], proofs[a1], False,
                  "account 1's amount and proof for account 2")
    single = {accts[0]: 5}
    r1, _, _ = _tree(single)
    yield _verify("single_leaf_empty_path", r1, accts[0], 5, [], True,
                  "the root of one leaf is the leaf: the empty proof")
    long = [hashlib.sha256(b"sibling %d" % i).digest() for i in range(65)]
    yield _verify("path_of_64", _fold(a1, 7, long[:64]), a1, 7, long[:64], True,
                  "64 hashes that fold to the root")
    yield _verify("path_of_65", _fold(a1, 7, long), a1, 7, long, False,
                  "65 hashes that fold to the root: more than 64")
    short = [*long[:2], long[2][:31]]
    yield _verify("sibling_of_31_bytes", _fold(a1, 7, short), a1, 7, short, False,
                  "a sibling of 31 bytes, folded as it is to the root")


# -- coded symbols (RCN-2 .. RCN-4), from the rules' text ----------------------------------------

_M64 = (1 << 64) - 1


def _hashes(x: bytes) -> tuple[int, int]:
    """RCN-2: (check(x), seed(x))."""
    h = hashlib.sha256(b"p2pnode/sync/1" + x).digest()
    return int.from_bytes(h[:8], "little"), int.from_bytes(h[8:16], "little")


def _indices(x: bytes, stop: int) -> list[int]:
    """RCN-3: the indices of key ``x`` below ``stop``."""
    out, j, s = [], 0, _hashes(x)[1]
    while j < stop:
        out.append(j)
        s = (s + 0x9E3779B97F4A7C15) & _M64
        z = s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        z = z ^ (z >> 31)
        u = ((z >> 11) + 1) / 2.0**53
        g = max(1, math.ceil((j + 1.5) * (1 / math.sqrt(u) - 1)))
        j += g
        if j > 1 << 40:
            break
    return out


def _first_indices(x: bytes, n: int) -> list[int]:
    return _indices(x, (1 << 40) + 1)[:n]


def sync_keys(n: int, salt: str = "") -> list[bytes]:
    return [hashlib.sha256(b"p2pnode conformance sync key %s%d" % (salt.encode(), i)).digest()
            for i in range(n)]


def _symbols(keys: Sequence[bytes], start: int, stop: int) -> list[tuple[bytes, int, int]]:
    """RCN-4: symbols [start, stop) as (sum, chk, count)."""
    sums, chks, cnts = [0] * (stop - start), [0] * (stop - start), [0] * (stop - start)
    for x in keys:
        c = _hashes(x)[0]
        for i in _indices(x, stop):
            if i >= start:
                sums[i - start] ^= int.from_bytes(x, "big")
                chks[i - start] ^= c
                cnts[i - start] += 1
    return [(s.to_bytes(32, "big"), c, n) for s, c, n in zip(sums, chks, cnts, strict=True)]


def symbols() -> Iterator[Case]:
    for name, keys, start, stop, desc in (
            ("one_key", sync_keys(1), 0, 16, "one key: symbol 0 and a few more"),
            ("three_keys", sync_keys(3), 0, 32, "three keys"),
            ("fifty_keys", sync_keys(50), 0, 64, "fifty keys: symbol 0 counts 50"),
            ("fifty_keys_from_64", sync_keys(50), 64, 96, "the same keys, symbols 64 to 95"),
            ("three_keys_from_1000", sync_keys(3), 1000, 1010,
             "three keys, symbols 1000 to 1009: almost surely empty"),
            ("no_keys", [], 0, 4, "the empty set: zero symbols")):
        syms = _symbols(keys, start, stop)
        yield Case(name, Inputs({}, {"keys": [k.hex() for k in keys], "start": start,
                                     "stop": stop}),
                   valid({"symbols.json": [{"sum": s.hex(), "chk": str(c), "count": n}
                                           for s, c, n in syms],
                          "sym.bin": b"".join(s + c.to_bytes(8, "little") for s, c, _ in syms),
                          "indices.json": {k.hex(): _first_indices(k, 12) for k in keys}}),
                   desc, ("RCN-2", "RCN-3", "RCN-4"))


# -- sessions (RCN-5 .. RCN-7) -----------------------------------------------------------------


def session() -> Iterator[Case]:
    shared = sync_keys(20)
    for name, ki, kr, desc in (
            ("identical", shared, shared, "equal sets: sync.hello, sync.same, one round trip"),
            ("both_empty", [], [], "two empty sets: sync.same"),
            ("responder_has_more", shared, shared + sync_keys(5, "r"),
             "the responder holds 5 keys more: 5 wanted, have 0"),
            ("initiator_has_more", shared + sync_keys(5, "i"), shared,
             "the initiator holds 5 keys more: nothing wanted, have 5"),
            ("sixty_differences", sync_keys(10) + sync_keys(30, "i"),
             sync_keys(10) + sync_keys(30, "r"),
             "30 keys on each side only, equal sizes: a first batch of 32 and three sync.more"),
            ("initiator_empty", [], sync_keys(10, "r"), "the initiator holds nothing"),
            ("responder_empty", sync_keys(10, "i"), [], "the responder holds nothing")):
        yield Case(name, Inputs({}, {"keys_i": [k.hex() for k in ki],
                                     "keys_r": [k.hex() for k in kr]}), valid(), desc,
                   ("RCN-5", "RCN-6", "RCN-7"))


def _msg(**fields: Any) -> bytes:
    return cbor.encode(fields)


def _hello(keys: Sequence[bytes]) -> bytes:
    return _msg(t="sync.hello", n=len(keys), fp=reconcile.fingerprint(sorted(keys)))


def _sync(name: str, role: str, keys: Sequence[bytes], prefix: Sequence[bytes], message: bytes,
          expected: Expected, desc: str, rules: tuple[str, ...]) -> Case:
    return Case(name, Inputs({"message.cbor": message}, {
        "role": role, "keys": [k.hex() for k in keys], "prefix": [m.hex() for m in prefix]}),
        expected, desc, rules)


def _transcript(ki: Sequence[bytes], kr: Sequence[bytes], direction: str) -> list[bytes]:
    return [m for d, m in reconcile.run_session(ki, kr).transcript if d == direction]


def _symbols_msg(start: int, syms: list[tuple[bytes, int, int]]) -> bytes:
    """A sync.symbols of (sum as big-endian key bytes, chk, count) triples."""
    sym = b"".join(s + c.to_bytes(8, "little") for s, c, _ in syms)
    return _msg(t="sync.symbols", **{"from": start}, sym=sym, cnt=[n for *_, n in syms])


def sync_message() -> Iterator[Case]:
    ks = sync_keys(5)
    r_rules, i_rules = ("RCN-5",), ("RCN-5", "RCN-6")
    # -- the responder, fed the initiator's messages
    yield _sync("hello", "responder", ks, [], _hello(ks[:3]), valid(),
                "a hello of 3 keys to a responder of 5: the first 32 symbols", ("RCN-5",
                                                                                "RCN-6"))
    yield _sync("hello_same", "responder", ks, [], _hello(ks), valid(),
                "a hello of the same 5 keys: sync.same", r_rules)
    yield _sync("hello_same_n_other_fp", "responder", ks, [], _hello(ks[:4] + sync_keys(1, "x")),
                valid(), "the same n, another set: symbols, not sync.same", r_rules)
    yield _sync("unknown_type", "responder", ks, [], _msg(t="sync.bye"),
                reject(Reason.UNKNOWN_TYPE), "a t the chapter does not define", r_rules)
    yield _sync("more_before_hello", "responder", ks, [], _msg(t="sync.more", **{"from": 0},
                                                              count=32),
                reject(Reason.BAD_STATE), "a sync.more as the first message", r_rules)
    yield _sync("hello_twice", "responder", ks, [_hello(ks[:3])], _hello(ks[:3]),
                reject(Reason.BAD_STATE), "a second hello", r_rules)
    yield _sync("fp_of_15_bytes", "responder", ks, [],
                _msg(t="sync.hello", n=3, fp=bytes(15)), reject(Reason.BAD_FIELD),
                "a hello whose fp has 15 bytes", r_rules)
    for n, expected, desc in ((2**40 + 1, reject(Reason.BAD_FIELD), "n = 2^40 + 1"),
                              (-1, reject(Reason.BAD_FIELD), "n = -1")):
        yield _sync(f"hello_n_{'over' if n > 0 else 'negative'}", "responder", ks, [],
                    _msg(t="sync.hello", n=n, fp=bytes(16)), expected,
                    "a hello with " + desc, i_rules)
    yield _sync("hello_extra_key", "responder", ks, [],
                _msg(t="sync.hello", n=3, fp=bytes(16), v=1), reject(Reason.UNKNOWN_FIELD),
                "a hello with a key it does not have", r_rules)
    yield _sync("not_a_map", "responder", ks, [], cbor.encode(["sync.hello", 3]),
                reject(Reason.BAD_FIELD), "an array", r_rules)
    hello3 = _hello(ks[:3])
    more = _msg(t="sync.more", **{"from": 32}, count=32)
    yield _sync("more_next_batch", "responder", ks, [hello3], more, valid(),
                "sync.more from 32 for 32: symbols 32 to 63", i_rules)
    yield _sync("more_wrong_from", "responder", ks, [hello3],
                _msg(t="sync.more", **{"from": 0}, count=32), reject(Reason.BAD_FIELD),
                "sync.more from 0 after 32 symbols were sent", i_rules)
    yield _sync("more_wrong_count", "responder", ks, [hello3],
                _msg(t="sync.more", **{"from": 32}, count=33), reject(Reason.BAD_FIELD),
                "sync.more for 33 symbols where the next batch is 32", i_rules)
    # An empty responder and a hello of n = 0 with another fp: limit 1024; the batches are
    # 32, 32, 32, 48, 72, 108, 162, 243, then 295 to reach it.
    sizes, m = [], 32
    while m < 1024:
        k = min(4096, max(32, m // 2), 1024 - m)
        sizes.append((m, k))
        m += k
    walk = [_msg(t="sync.hello", n=0, fp=bytes(16))]
    walk += [_msg(t="sync.more", **{"from": f}, count=k) for f, k in sizes]
    yield _sync("more_past_the_limit", "responder", [], walk,
                _msg(t="sync.more", **{"from": 1024}, count=32),
                reject(Reason.LIMIT_EXCEEDED),
                "an empty responder has sent its limit of 2 * (0 + 0) + 1024 symbols; one more "
                "batch is asked for", i_rules)
    ki, kr = ks[:3], ks
    i_msgs = _transcript(ki, kr, "i>r")
    want_ids = sorted(set(kr) - set(ki))
    yield _sync("want", "responder", kr, i_msgs[:1],
                _msg(t="sync.want", ids=want_ids), valid(),
                "the initiator wants the 2 keys it lacks", ("RCN-7",))
    yield _sync("want_not_held", "responder", kr, i_msgs[:1],
                _msg(t="sync.want", ids=sorted([want_ids[0], sync_keys(1, "x")[0]])),
                reject(Reason.BAD_FIELD), "a wanted key the responder does not hold",
                ("RCN-7",))
    yield _sync("want_empty", "responder", kr, i_msgs[:1], _msg(t="sync.want", ids=[]),
                reject(Reason.BAD_FIELD), "a sync.want of no ids", ("RCN-7",))
    yield _sync("want_not_increasing", "responder", kr, i_msgs[:1],
                _msg(t="sync.want", ids=want_ids[::-1]), reject(Reason.BAD_FIELD),
                "wanted keys in decreasing order", ("RCN-7",))
    wanted = _msg(t="sync.want", ids=want_ids)
    yield _sync("end_squares", "responder", kr, [i_msgs[0], wanted],
                _msg(t="sync.end", have=0), valid(),
                "n_I = 3 = n_R - wanted + have = 5 - 2 + 0", ("RCN-7",))
    yield _sync("end_does_not_square", "responder", kr, [i_msgs[0], wanted],
                _msg(t="sync.end", have=1), reject(Reason.BAD_FIELD),
                "have = 1: 5 - 2 + 1 is not 3", ("RCN-7",))
    yield _sync("end_have_over", "responder", kr, [i_msgs[0], wanted],
                _msg(t="sync.end", have=2**40 + 1), reject(Reason.BAD_FIELD),
                "have = 2^40 + 1", ("RCN-6",))
    # -- the initiator, after its hello, fed the responder's messages
    r_msgs = _transcript(ki, kr, "r>i")
    first = cbor.decode(r_msgs[0])
    yield _sync("symbols_decode", "initiator", ki, [], r_msgs[0], valid(),
                "the responder's first 32 symbols decode the 2 keys: sync.want, sync.end",
                ("RCN-5", "RCN-6", "RCN-7"))
    yield _sync("same", "initiator", ks, [], _msg(t="sync.same"), valid(),
                "sync.same answers the hello: done, nothing to send", r_rules)
    yield _sync("symbols_short_sym", "initiator", ki, [],
                _msg(t="sync.symbols", **{"from": 0}, sym=first["sym"][:-1], cnt=first["cnt"]),
                reject(Reason.BAD_FIELD), "a sym one byte short of 40 per count", i_rules)
    yield _sync("symbols_from_not_zero", "initiator", ki, [],
                _msg(t="sync.symbols", **{"from": 1}, sym=first["sym"], cnt=first["cnt"]),
                reject(Reason.BAD_FIELD), "a first batch from 1", i_rules)
    yield _sync("symbols_more_than_asked", "initiator", ki, [],
                _msg(t="sync.symbols", **{"from": 0}, sym=first["sym"] + bytes(40),
                     cnt=[*first["cnt"], 0]), reject(Reason.BAD_FIELD),
                "33 symbols where the first batch is 32", i_rules)
    yield _sync("hello_to_initiator", "initiator", ki, [], _hello(kr),
                reject(Reason.BAD_STATE), "a hello sent back", r_rules)
    yield _sync("same_after_symbols", "initiator", sync_keys(3), [
        _transcript(sync_keys(3), sync_keys(60, "r"), "r>i")[0]], _msg(t="sync.same"),
        reject(Reason.BAD_STATE), "sync.same after a first batch", r_rules)
    # Symbols made to decode a key the initiator holds as the responder's: each of its
    # indices counts 2 (as if the responder held it twice), so R - I is +1 with that key.
    x = sync_keys(1)[0]
    idx = set(_indices(x, 32))
    fake = [(bytes(32), 0, 2 if i in idx else 0) for i in range(32)]
    yield _sync("decoded_key_held", "initiator", [x], [], _symbols_msg(0, fake),
                reject(Reason.BAD_FIELD),
                "symbols whose difference decodes, as the responder's, a key the initiator "
                "holds", ("RCN-7",))
    # Symbols that never decode: every count 2, n_R = 2, limit 2 * (0 + 2) + 1024 = 1028.
    batches, m = [], 0
    while m < 1028:
        k = 32 if m == 0 else min(4096, max(32, m // 2), 1028 - m)
        batches.append(_symbols_msg(m, [(bytes(32), 0, 2)] * k))
        m += k
    yield _sync("never_decodes", "initiator", [], batches[:-1], batches[-1],
                reject(Reason.LIMIT_EXCEEDED),
                "symbols that never peel, up to the session's limit of 1028: decoding has "
                "failed", i_rules)


HANDLERS: dict[str, Callable[[], Iterator[Case]]] = {
    "element": element,
    "settle": settle,
    "balances": balances,
    "root": root,
    "verify": verify,
    "symbols": symbols,
    "session": session,
    "sync_message": sync_message,
}
