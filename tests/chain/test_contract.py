"""The RewardAnchor contract's own properties on eth-tester: the ledger's trees
(p2pnode.ledger.merkle) verify on chain, the events carry what was anchored, bound and
paid, the rotation is base.may_anchor's, and the gas of an anchor and of a claim stays
within its bound (gas is deterministic: the same transaction always uses the same)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from eth_abi import encode
from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractLogicError

from p2pnode.chain import evm
from p2pnode.chain.base import ChainError, ChainReason, Schedule, may_anchor
from p2pnode.chain.evm import EvmChain, artifact, deploy, revert_code
from p2pnode.ledger import merkle
from tests.chain.evm_world import FUND_WEI, EvmWorld, fresh_chain, set_next_block_time
from tests.chain.world import SCHEDULE

E = 100  # designated anchorer: sender E % 3 = 1
ANCHOR_GAS_MAX = 50_000  # an anchor after the first
CLAIM_GAS_MAX = 65_000  # a claim with a proof of depth 20 (2^20 accounts)
NEW_ACCOUNT_GAS = 25_000  # what the EVM charges for a payment to an address it never saw


def _refused(reason: ChainReason, fn: Any, *args: Any) -> ChainError:
    with pytest.raises(ChainError) as e:
        fn(*args)
    assert e.value.reason is reason, e.value
    return e.value


def _bytes32(rnd: random.Random) -> bytes:
    return rnd.randbytes(32)


def _gas(w: EvmWorld, tx: str) -> int:
    return int(w.w3.eth.get_transaction_receipt(tx)["gasUsed"])  # type: ignore[arg-type]


def _topic1(w: EvmWorld, tx: Any) -> bytes:
    """The first indexed argument of the one log of transaction ``tx``."""
    (log,) = w.w3.eth.get_transaction_receipt(tx)["logs"]
    return bytes(log["topics"][1])


def _fold(account: bytes, amount: int, proof: list[bytes]) -> bytes:
    h = merkle.leaf(account, amount)
    for p in proof:
        h = merkle.node(h, p)
    return h


def _verify_on_chain(w: EvmWorld, root: bytes, account: bytes, amount: int,
                     proof: list[bytes]) -> bool:
    """The contract's verify(root, account, amount, proof), straight through eth-tester
    (a hundred times quicker than through the contract wrapper for a thousand calls)."""
    data = _VERIFY + encode(["bytes32", "bytes32", "uint256", "bytes32[]"],
                            [root, account, amount, proof])
    out = w.w3.provider.ethereum_tester.call(  # type: ignore[attr-defined]
        {"from": w.accounts[0], "to": w.address, "data": "0x" + data.hex()}, "latest")
    return bool(int(out, 16))


_VERIFY = Web3.keccak(text="verify(bytes32,bytes32,uint256,bytes32[])")[:4]


@pytest.fixture
def w() -> EvmWorld:
    return EvmWorld()


# -- the ledger's trees on chain -----------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_every_account_of_a_ledger_tree_claims_its_amount(w: EvmWorld, n: int) -> None:
    rnd = random.Random(n)
    balances = {_bytes32(rnd): rnd.randrange(1, 10**18) for _ in range(n)}
    tree = merkle.build(balances)
    anchorer, claimer = w.chain(1), w.chain(3)
    for i, account in enumerate(tree.accounts):
        anchorer.bind(account, w.payee(i))
    w.set_time(SCHEDULE.closes_at(E))
    anchorer.anchor(E, tree.root, n)
    for i, (account, amount) in enumerate(zip(tree.accounts, tree.amounts, strict=True)):
        proof = tree.proof(account)
        assert proof is not None and merkle.verify(tree.root, account, amount, proof)
        assert _verify_on_chain(w, tree.root, account, amount, proof)
        assert not _verify_on_chain(w, tree.root, account, amount + 1, proof)
        before = w.payee_balance(w.payee(i))
        c = claimer.claim(account, amount, proof)
        assert (c.account, c.payee, c.cumulative, c.paid, c.epoch) == (
            account, w.payee(i), amount, amount, E)
        assert w.payee_balance(w.payee(i)) - before == amount
        assert claimer.claimed(account) == amount
    assert w.chain(0).balance() == FUND_WEI - sum(tree.amounts)
    if n == 1:  # the root of one account is its leaf: the proof is empty
        assert tree.root == merkle.leaf(tree.accounts[0], tree.amounts[0])


def test_a_thousand_accounts_verify_on_chain(w: EvmWorld) -> None:
    # 1025 leaves: the last one is carried up to the top and proves with one hash.
    rnd = random.Random(1025)
    tree = merkle.build({_bytes32(rnd): rnd.randrange(1, 10**15) for _ in range(1025)})
    proofs = [tree.proof(a) or [] for a in tree.accounts]
    assert max(len(p) for p in proofs) == 11 and len(proofs[-1]) == 1
    for account, amount, proof in zip(tree.accounts, tree.amounts, proofs, strict=True):
        assert _verify_on_chain(w, tree.root, account, amount, proof), account.hex()
    w.set_time(SCHEDULE.closes_at(E))
    w.chain(1).anchor(E, tree.root, 1025)
    for i in (0, 1, 2, 511, 512, 1000, 1023, 1024):  # real claims across the tree
        account = tree.accounts[i]
        w.chain(0).bind(account, w.payee(i % 8))
        assert w.chain(3).claim(account, tree.amounts[i], proofs[i]).paid == tree.amounts[i]
    assert not _verify_on_chain(w, tree.root, tree.accounts[0], tree.amounts[0], proofs[1])


def test_proofs_the_ledger_would_refuse_are_refused(w: EvmWorld) -> None:
    rnd = random.Random(65)
    account, amount = _bytes32(rnd), 1000
    long = [_bytes32(rnd) for _ in range(merkle.MAX_DEPTH + 1)]  # LGR-14: at most 64
    assert not _verify_on_chain(w, _fold(account, amount, long), account, amount, long)
    assert _verify_on_chain(w, _fold(account, amount, long[:64]), account, amount, long[:64])
    assert not _verify_on_chain(w, bytes(32), account, amount, [])  # no root is no tree
    c = w.chain(3)
    _refused(ChainReason.NO_ROOT, c.claim, account, amount, long)
    w.set_time(SCHEDULE.closes_at(E))
    w.chain(1).anchor(E, _fold(account, amount, long[:64]), 1)
    _refused(ChainReason.BAD_PROOF, c.claim, account, amount, long)
    _refused(ChainReason.BAD_PROOF, c.claim, account[:31], amount, long[:64])
    _refused(ChainReason.BAD_PROOF, c.claim, account, 1 << 256, long[:64])
    _refused(ChainReason.BAD_PROOF, c.claim, account, amount, [p[:31] for p in long[:64]])
    _refused(ChainReason.UNBOUND, c.claim, account, amount, long[:64])


# -- events and views ----------------------------------------------------------------------


def test_the_events_carry_the_anchor_the_binding_and_the_payment(w: EvmWorld) -> None:
    tree = merkle.build({b"\x07" * 32: 5000, b"\x09" * 32: 7})
    account = tree.accounts[0]
    contract = w.chain(0).contract
    w.chain(2).bind(account, w.payee(3))
    (bound,) = contract.events.Bound().get_logs(from_block=0)
    assert dict(bound["args"]) == {"account": account, "payee": w.payee(3)}
    assert _topic1(w, bound["transactionHash"]) == account  # indexed
    w.set_time(SCHEDULE.closes_at(E))
    a = w.chain(1).anchor(E, tree.root, 42)
    (anchored,) = contract.events.Anchored().get_logs(from_block=0)
    assert dict(anchored["args"]) == {"epoch": E, "root": tree.root, "count": 42,
                                      "anchorer": w.sender_name(1)}
    assert _topic1(w, anchored["transactionHash"]) == E.to_bytes(32, "big")
    block = w.w3.eth.get_block(anchored["blockNumber"])
    assert (a.at, a.tx) == (block["timestamp"], "0x" + anchored["transactionHash"].hex())
    assert a.at == SCHEDULE.closes_at(E)
    c = w.chain(3).claim(account, 5000, tree.proof(account) or [])
    (claimed,) = contract.events.Claimed().get_logs(from_block=0)
    assert dict(claimed["args"]) == {"account": account, "payee": w.payee(3),
                                     "cumulative": 5000, "paid": 5000}
    assert _topic1(w, claimed["transactionHash"]) == account
    assert c.tx == "0x" + claimed["transactionHash"].hex()
    assert w.chain(3).payee_of(account) == w.payee(3)
    assert w.chain(3).payee_of(tree.accounts[1]) is None


def test_older_roots_come_from_the_events(w: EvmWorld) -> None:
    r1, r2, r3 = (bytes([i]) * 32 for i in (1, 2, 3))
    w.set_time(SCHEDULE.closes_at(E + 3))
    w.chain(1).anchor(E, r1, 1)
    w.chain(0).anchor(E + 2, r2, 2)
    contract = w.chain(0).contract
    assert contract.functions.rootOf(E).call() == bytes(32)  # only the newest is stored
    assert contract.functions.rootOf(E + 2).call() == r2
    assert w.chain(3).root_of(E) == r1 and w.chain(3).root_of(E + 2) == r2
    assert w.chain(3).root_of(E + 1) is None and w.chain(3).root_of(E + 3) is None
    # The contract refuses an older epoch stale_epoch; the backend tells a held one apart.
    _refused(ChainReason.ROOT_EXISTS, w.chain(1).anchor, E, r3, 1)
    _refused(ChainReason.STALE_EPOCH, w.chain(2).anchor, E + 1, r3, 1)
    w.chain(1).anchor(E + 3, r3, 3)
    assert [(a.epoch, a.root, a.count) for a in w.chain(2).anchors()] == [
        (E, r1, 1), (E + 2, r2, 2), (E + 3, r3, 3)]
    assert [a.epoch for a in w.chain(2).anchors(since=E + 1)] == [E + 2, E + 3]
    assert [a.at for a in w.chain(2).anchors()] == [SCHEDULE.closes_at(E + 3) + i
                                                   for i in range(3)]
    assert w.chain(3).anchorers() == [w.sender_name(i) for i in range(3)]
    assert w.chain(3).schedule() == SCHEDULE


def test_a_rebinding_keeps_what_was_claimed(w: EvmWorld) -> None:
    account = b"\x05" * 32
    t1 = merkle.build({account: 100, b"\x06" * 32: 1})
    w.chain(0).bind(account, w.payee(0))
    w.set_time(SCHEDULE.closes_at(E))
    w.chain(1).anchor(E, t1.root, 2)
    w.chain(3).claim(account, 100, t1.proof(account) or [])
    w.chain(2).bind(account, w.payee(1))
    assert w.chain(3).claimed(account) == 100
    t2 = merkle.build({account: 130, b"\x06" * 32: 1})
    w.set_time(SCHEDULE.closes_at(E + 1))
    w.chain(2).anchor(E + 1, t2.root, 3)
    before = w.payee_balance(w.payee(1))
    assert w.chain(3).claim(account, 130, t2.proof(account) or []).paid == 30
    assert w.payee_balance(w.payee(1)) - before == 30


def test_a_claim_the_contract_cannot_pay_is_undone() -> None:
    w3, backend = fresh_chain()
    accounts = w3.eth.accounts
    address = deploy(w3, accounts[0], accounts[:3], SCHEDULE)  # no funds
    anchorer, claimer = (EvmChain(w3, address, accounts[i]) for i in (1, 3))
    big = b"\x0b" * 32
    tree = merkle.build({b"\x0a" * 32: 10**6, big: 1 << 96})
    for account in tree.accounts:
        anchorer.bind(account, accounts[5])
    set_next_block_time(backend, SCHEDULE.closes_at(E))
    anchorer.anchor(E, tree.root, 2)
    a = tree.accounts[0]
    e = _refused(ChainReason.UNAVAILABLE, claimer.claim, a, 10**6, tree.proof(a))
    assert "unpaid" in str(e) and claimer.claimed(a) == 0
    w3.eth.send_transaction({"from": accounts[0], "to": address, "value": 10**6})
    assert claimer.claim(a, 10**6, tree.proof(a) or []).paid == 10**6
    # More than 2^96 - 1 wei is more than there is: never paid, never recorded.
    e = _refused(ChainReason.UNAVAILABLE, claimer.claim, big, 1 << 96, tree.proof(big))
    assert "unpaid" in str(e) and claimer.claimed(big) == 0


# -- the rotation --------------------------------------------------------------------------


@pytest.mark.parametrize("picks", [[0], [0, 1, 2], [0, 1, 2, 3, 4, 5, 6, 7], [2, 0, 2, 1]])
def test_the_rotation_is_may_anchor(picks: list[int]) -> None:
    w3, _ = fresh_chain(10)
    accounts = [Web3.to_checksum_address(a) for a in w3.eth.accounts]
    anchorers = [accounts[i] for i in picks]
    schedule = Schedule(epoch_len_s=3600, grace_s=30, fallback_s=600)
    contract = EvmChain(w3, deploy(w3, accounts[0], anchorers, schedule), accounts[0])
    rnd = random.Random(len(picks))
    n, f = len(picks), schedule.fallback_s
    for epoch in [0, 1, 2, 7, *(rnd.randrange(1 << 40) for _ in range(3)), (1 << 64) - 1,
                  1 << 64, (1 << 256) - 1]:
        closes = schedule.closes_at(epoch)
        for sender in [*dict.fromkeys(anchorers), accounts[9], "0x" + "00" * 20]:
            # Around the sender's own threshold (its smallest k), and long after every one.
            ks = [k for k in range(n) if anchorers[(epoch + k) % n] == sender]
            times = {0, closes + n * f} | {closes + ks[0] * f + d for d in (-1, 0)
                                           if ks}
            for now in sorted(t for t in times if 0 <= t < 1 << 256):
                got = contract.contract.functions.mayAnchor(epoch, sender, now).call()
                assert got == may_anchor(epoch, sender, now, anchorers, schedule), (
                    epoch, sender, now)


def test_the_constructor_refuses_what_the_contract_cannot_rotate() -> None:
    w3, _ = fresh_chain(10)
    accounts = w3.eth.accounts
    for bad in ([], accounts[:9], [accounts[0], "0x" + "00" * 20]):
        with pytest.raises(ValueError):
            deploy(w3, accounts[0], bad, SCHEDULE)
    with pytest.raises(ValueError):
        deploy(w3, accounts[0], accounts[:1], Schedule(0, 5, 10))
    a = artifact()
    factory = w3.eth.contract(abi=a["abi"], bytecode=a["bytecode"])
    for args in ((accounts[:9], 20, 5, 10), ([], 20, 5, 10), (accounts[:2], 0, 5, 10)):
        tx = factory.constructor(*args).transact({"from": accounts[0], "gas": 2_000_000})
        assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 0


# -- senders, failures and reasons ---------------------------------------------------------


def test_a_local_key_signs_its_transactions() -> None:
    w3, backend = fresh_chain()
    funder = w3.eth.accounts[0]
    key = Account.from_key(bytes(range(1, 33)))
    w3.eth.send_transaction({"from": funder, "to": key.address, "value": 10**18})
    address = deploy(w3, key, [key.address, funder], SCHEDULE, fund_wei=10**9)
    chain = EvmChain(w3, address, key)
    assert chain.sender == key.address and chain.balance() == 10**9
    tree = merkle.build({b"\x01" * 32: 77})
    chain.bind(b"\x01" * 32, w3.eth.accounts[6])
    set_next_block_time(backend, SCHEDULE.closes_at(2))  # 2 % 2 = 0: the key's epoch
    assert chain.anchor(2, tree.root, 1).anchorer == key.address
    assert chain.claim(b"\x01" * 32, 77, []).paid == 77
    assert w3.eth.get_transaction_count(key.address) == 4
    _refused(ChainReason.NOT_ANCHORER, chain.anchor, 3, tree.root, 1)


def test_an_unreachable_node_is_unavailable() -> None:
    w3 = Web3(Web3.HTTPProvider("http://127.0.0.1:9", exception_retry_configuration=None,
                                request_kwargs={"timeout": 2}))
    chain = EvmChain(w3, "0x" + "11" * 20, "0x" + "22" * 20)
    for fn, args in ((chain.latest, ()), (chain.claimed, (bytes(32),)),
                     (chain.anchor, (1, b"\x01" * 32, 1)), (chain.anchors, ())):
        _refused(ChainReason.UNAVAILABLE, fn, *args)


def _error_string(text: str) -> str:
    return "0x08c379a0" + encode(["string"], [text]).hex()


def test_reasons_are_read_from_a_node_s_revert() -> None:
    # What a JSON-RPC node returns (geth, anvil): the Error(string) data and a message.
    assert revert_code(ContractLogicError("execution reverted: root_exists",
                                          data=_error_string("root_exists"))) == "root_exists"
    assert revert_code(ContractLogicError("execution reverted",
                                          data=_error_string("unbound"))) == "unbound"
    assert revert_code(ContractLogicError("execution reverted: not_anchorer")) \
        == "not_anchorer"
    assert revert_code(ContractLogicError("execution reverted",
                                          data={"data": _error_string("no_root")})) == "no_root"
    assert revert_code(ContractLogicError("execution reverted",
                                          data=_error_string("something else"))) is None
    assert revert_code(OSError("connection refused: no_root")) is None
    assert {r.value for r in ChainReason} <= set(evm._REASONS)


# -- gas -----------------------------------------------------------------------------------


def test_gas_of_anchors_and_claims(w: EvmWorld) -> None:
    """The gas of an anchor and of claims with proofs of 2^10, 2^17 and 2^20 accounts'
    trees (a proof folds to the root whatever the other leaves are)."""
    rnd = random.Random(20)
    figures: dict[str, int] = {}
    epoch = E
    w.set_time(SCHEDULE.closes_at(epoch))
    figures["anchor, first"] = _gas(w, w.chain(epoch % 3).anchor(epoch, b"\x01" * 32, 9).tx)
    for depth in (10, 17, 20):
        account, amount = _bytes32(rnd), 123_456_789_000 * depth
        proof = [_bytes32(rnd) for _ in range(depth)]
        epoch += 1
        w.set_time(SCHEDULE.closes_at(epoch))
        a = w.chain(epoch % 3).anchor(epoch, _fold(account, amount, proof), 1 << depth)
        figures[f"anchor, steady (epoch {epoch})"] = _gas(w, a.tx)
        w.chain(0).bind(account, w.payee(depth % 8))
        figures[f"claim depth {depth}, first"] = _gas(w, w.chain(3).claim(account, amount,
                                                                          proof).tx)
        epoch += 1
        w.set_time(SCHEDULE.closes_at(epoch))
        w.chain(epoch % 3).anchor(epoch, _fold(account, 2 * amount, proof), 1 << depth)
        figures[f"claim depth {depth}, repeat"] = _gas(w, w.chain(3).claim(account,
                                                                           2 * amount,
                                                                           proof).tx)
        if depth == 20:  # a payee the chain never saw costs the EVM's new-account charge
            fresh = Web3.to_checksum_address(rnd.randbytes(20))
            w.chain(0).bind(account, fresh)
            epoch += 1
            w.set_time(SCHEDULE.closes_at(epoch))
            w.chain(epoch % 3).anchor(epoch, _fold(account, 3 * amount, proof), 1)
            c = w.chain(3).claim(account, 3 * amount, proof)
            figures["claim depth 20, to a new address"] = _gas(w, c.tx)
            assert w.payee_balance(fresh) == amount
    print()
    for what, g in figures.items():
        print(f"gas {what}: {g}")
    for what, g in figures.items():
        if what.startswith("anchor, steady"):
            assert g <= ANCHOR_GAS_MAX, (what, g)
        elif what.startswith("claim") and "new address" not in what:
            assert g <= CLAIM_GAS_MAX, (what, g)
    assert (figures["claim depth 20, to a new address"] - figures["claim depth 20, repeat"]
            - NEW_ACCOUNT_GAS) in range(0, 200)
    assert figures["anchor, first"] <= ANCHOR_GAS_MAX + 2 * 17_100  # its two slots are new
