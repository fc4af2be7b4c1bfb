"""``evm``: the chain backend over the RewardAnchor contract on an Ethereum-compatible chain
(spec 08, draft), through a ``web3.Web3`` connection.

The contract (``contracts/RewardAnchor.sol``; artifact ``contracts/RewardAnchor.json``, built
by ``scripts/build-contract.sh``) makes the checks of ``base.anchor_refusal`` and
``base.claim_refusal`` and reverts with their reason codes. Every transaction is first run
as an ``eth_call`` on the pending block, so a refusal costs no gas and maps to
``ChainError(reason)``; one that still reverts once mined (another sender got there
first) is replayed on its block for the reason.

Two things live in events, not storage, to keep an anchor cheap: the contract holds only
the newest (epoch, root), so :meth:`EvmChain.root_of` of an older epoch and
:meth:`EvmChain.anchors` read the ``Anchored`` events, and an anchor of an older epoch
that had a root, which the contract refuses ``stale_epoch``, is reported ``root_exists``
as ANC-2 orders. A claim the contract cannot pay (it lacks the funds) is
``ChainError(UNAVAILABLE, "unpaid")``: it succeeds once the contract is funded.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    TooManyRequests,
    Web3RPCError,
)
from web3.types import BlockIdentifier, TxParams, TxReceipt, Wei

from p2pnode.chain.base import Anchor, ChainError, ChainReason, Claim, Schedule

ARTIFACT = Path(__file__).with_name("contracts") / "RewardAnchor.json"
MAX_ANCHORERS = 8
MAX_PROOF = 64
_UINT64 = 1 << 64
_UINT256 = 1 << 256
ZERO = bytes(32)
UNPAID = "unpaid"  # the contract's code for a payment that failed

_REASONS = {r.value: r for r in ChainReason}
_CODE = re.compile(r"\b(" + "|".join(sorted([*_REASONS, UNPAID], key=len, reverse=True))
                   + r")\b")
_ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string)

Sender = LocalAccount | str  # a key that signs here, or an address the node unlocked


@functools.cache
def artifact() -> dict[str, Any]:
    """The compiled contract: ``compiler``, ``settings``, ``abi``, ``bytecode``."""
    with ARTIFACT.open(encoding="utf-8") as f:
        return cast(dict[str, Any], json.load(f))


@dataclass(frozen=True, slots=True)
class Gas:
    """Gas limits per transaction (what is used is paid; these are ceilings). The time
    checks of an anchor rule out estimating on the latest block, so they are fixed."""

    anchor: int = 100_000
    bind: int = 80_000
    claim_base: int = 90_000  # with a first payment to an address new to the chain
    claim_per_level: int = 1_500
    deploy: int = 1_500_000


# -- revert reasons and failures -----------------------------------------------------------


def _revert_data(exc: BaseException) -> bytes | None:
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return data if isinstance(data, bytes) else None


def revert_code(exc: BaseException) -> str | None:
    """The contract's reason code in a revert, from its Error(string) data or the node's
    message; None when the failure is no revert of the contract's."""
    data = _revert_data(exc)
    if data is not None and data[:4] == _ERROR_STRING and len(data) >= 68:
        n = int.from_bytes(data[36:68], "big")
        text = data[68:68 + n].decode("utf-8", "replace")
        if text in _REASONS or text == UNPAID:
            return text
    m = _CODE.search(" ".join(str(a) for a in (getattr(exc, "message", None), *exc.args)))
    return m.group(1) if m and "revert" in str(exc).lower() else None


def _refusal(code: str, detail: str) -> ChainError:
    if code == UNPAID:
        return ChainError(ChainReason.UNAVAILABLE, f"unpaid: {detail}")
    return ChainError(_REASONS[code], detail)


# Failures of the node or its connection, not of the contract: UNAVAILABLE (retried).
_TRANSIENT = (OSError, ProviderConnectionError, TimeExhausted, TooManyRequests, Web3RPCError,
              ContractLogicError)


def _guard(what: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, with a revert raised as its reason and a failure to reach the node as
    UNAVAILABLE."""
    try:
        return fn()
    except ChainError:
        raise
    except Exception as exc:  # providers raise many kinds (eth-tester: bare Exceptions)
        code = revert_code(exc)
        if code is not None:
            raise _refusal(code, what) from exc
        if isinstance(exc, _TRANSIENT) or "revert" in str(exc).lower():
            raise ChainError(ChainReason.UNAVAILABLE,
                             f"{what}: {type(exc).__name__}: {exc}") from exc
        raise


def _address(sender: Sender) -> str:
    return to_checksum_address(sender if isinstance(sender, str) else sender.address)


def _send(w3: Web3, sender: Sender, tx: TxParams, timeout_s: float) -> TxReceipt:
    """Send ``tx`` (its ``to``, ``data``, ``gas`` and ``value`` set) from ``sender`` and
    wait for its receipt."""
    tx = {**tx, "from": _address(sender)}
    if isinstance(sender, str):
        h = w3.eth.send_transaction(tx)
    else:
        tx["nonce"] = w3.eth.get_transaction_count(sender.address, "pending")
        tx["chainId"] = w3.eth.chain_id
        if "maxFeePerGas" not in tx and "gasPrice" not in tx:
            tip = w3.eth.max_priority_fee
            base = w3.eth.get_block("latest").get("baseFeePerGas", 0)
            tx["maxPriorityFeePerGas"] = tip
            tx["maxFeePerGas"] = Wei(2 * base + tip)
        signed = sender.sign_transaction(cast(dict[str, Any], tx))
        h = w3.eth.send_raw_transaction(signed.raw_transaction)
    return w3.eth.wait_for_transaction_receipt(h, timeout=timeout_s,
                                               poll_latency=min(1.0, timeout_s / 100))


# -- deployment ----------------------------------------------------------------------------


def deploy(w3: Web3, deployer: Sender, anchorers: Sequence[str], schedule: Schedule,
           fund_wei: int = 0, *, gas: Gas | None = None, timeout_s: float = 120.0) -> str:
    """Make the contract with ``anchorers`` (1 to 8 addresses, in rotation order) and
    ``schedule``, funded with ``fund_wei``; its checksum address."""
    if not 1 <= len(anchorers) <= MAX_ANCHORERS:
        raise ValueError(f"1 to {MAX_ANCHORERS} anchorers")
    if not all(is_address(a) for a in anchorers) or any(int(a, 16) == 0 for a in anchorers):
        raise ValueError("an anchorer is a nonzero 20-byte address")
    s = schedule
    if not (0 < s.epoch_len_s < _UINT64 and 0 <= s.grace_s < _UINT64
            and 0 <= s.fallback_s < _UINT64):
        raise ValueError("a schedule of 64-bit seconds with a nonzero epoch length")
    if fund_wei < 0:
        raise ValueError("fund_wei is a wei amount")
    a = artifact()
    factory = w3.eth.contract(abi=a["abi"], bytecode=a["bytecode"])
    data = factory.constructor([to_checksum_address(x) for x in anchorers], s.epoch_len_s,
                               s.grace_s, s.fallback_s).data_in_transaction
    tx: TxParams = {"data": data, "value": Wei(fund_wei), "gas": (gas or Gas()).deploy}
    receipt = cast(TxReceipt, _guard("deploy", lambda: _send(w3, deployer, tx, timeout_s)))
    if receipt["status"] != 1 or not receipt["contractAddress"]:
        raise ChainError(ChainReason.UNAVAILABLE, "deploy: the creation reverted")
    return to_checksum_address(receipt["contractAddress"])


# -- the backend ---------------------------------------------------------------------------


class EvmChain:
    """The contract at ``address`` as seen by ``sender``."""

    name = "evm"

    def __init__(self, w3: Web3, address: str, sender: Sender, *, gas: Gas | None = None,
                 timeout_s: float = 120.0, log_span: int = 10_000) -> None:
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.contract: Contract = w3.eth.contract(address=self.address, abi=artifact()["abi"])
        self._sender = sender
        self.sender = _address(sender)
        self.gas = gas or Gas()
        self.timeout_s = timeout_s
        self.log_span = log_span  # blocks per eth_getLogs request
        self._deployed_at: int | None = None

    # -- plumbing -------------------------------------------------------------------------

    def _call(self, what: str, fn: Any, block: BlockIdentifier = "latest") -> Any:
        return _guard(what, lambda: fn.call({"from": self.sender}, block_identifier=block))

    def _transact(self, what: str, name: str, args: list[Any], gas: int) -> TxReceipt:
        """Run the contract's function ``name`` on the pending block (a refusal raises its
        reason, at no cost), then send it and wait until it is mined."""
        fn = self.contract.get_function_by_name(name)(*args)
        self._call(what, fn, "pending")
        data = self.contract.encode_abi(name, args=args)
        tx: TxParams = {"to": self.address, "data": data, "gas": gas, "value": Wei(0)}
        receipt = cast(TxReceipt, _guard(what, lambda: _send(self.w3, self._sender, tx,
                                                             self.timeout_s)))
        if receipt["status"] != 1:  # refused once mined: ask the block why
            self._call(what, fn, receipt["blockNumber"])
            raise ChainError(ChainReason.UNAVAILABLE, f"{what}: reverted in block "
                             f"{receipt['blockNumber']}")
        return receipt

    def _block_time(self, number: int) -> int:
        block = _guard("block", lambda: self.w3.eth.get_block(number))
        return int(block["timestamp"])

    def deployed_at(self) -> int:
        if self._deployed_at is None:
            self._deployed_at = int(self._call("deployedAt",
                                               self.contract.functions.deployedAt()))
        return self._deployed_at

    def _logs(self, event: str, filters: dict[str, Any] | None = None) -> list[Any]:
        """The contract's ``event`` logs since its creation, in chain order."""
        head = int(_guard("blockNumber", lambda: self.w3.eth.block_number))
        ev = getattr(self.contract.events, event)()
        out: list[Any] = []
        start = self.deployed_at()
        while start <= head:
            end = min(head, start + self.log_span - 1)
            out += _guard(event, functools.partial(ev.get_logs, argument_filters=filters,
                                                   from_block=start, to_block=end))
            start = end + 1
        return out

    def _anchor_of(self, log: Any) -> Anchor:
        args = log["args"]
        return Anchor(int(args["epoch"]), bytes(args["root"]), int(args["count"]),
                      to_checksum_address(args["anchorer"]),
                      self._block_time(int(log["blockNumber"])),
                      "0x" + bytes(log["transactionHash"]).hex())

    # -- Chain ----------------------------------------------------------------------------

    def anchor(self, epoch: int, root: bytes, count: int) -> Anchor:
        if len(root) != 32 or root == ZERO:
            raise ChainError(ChainReason.ZERO_ROOT, f"epoch {epoch}")
        if not (0 <= epoch < _UINT256 and 0 <= count < _UINT256):
            raise ValueError("an epoch and a count are uint256")
        what = f"anchor {epoch} by {self.sender}"
        try:
            receipt = self._transact(what, "anchor", [epoch, root, count], self.gas.anchor)
        except ChainError as e:
            if e.reason is ChainReason.STALE_EPOCH and self.root_of(epoch) is not None:
                raise ChainError(ChainReason.ROOT_EXISTS, what) from None
            raise
        logs = self.contract.events.Anchored().process_receipt(receipt)
        if len(logs) != 1:
            raise ChainError(ChainReason.UNAVAILABLE, f"{what}: no Anchored event")
        return self._anchor_of(logs[0])

    def root_of(self, epoch: int) -> bytes | None:
        newest = self.latest()
        if newest is None or not 0 <= epoch <= newest[0]:
            return None
        if epoch == newest[0]:
            return newest[1]
        logs = self._logs("Anchored", {"epoch": epoch})
        return bytes(logs[0]["args"]["root"]) if logs else None

    def latest(self) -> tuple[int, bytes] | None:
        epoch, root = self._call("latest", self.contract.functions.latest())
        return None if bytes(root) == ZERO else (int(epoch), bytes(root))

    def anchors(self, since: int = 0) -> list[Anchor]:
        logs = [x for x in self._logs("Anchored") if int(x["args"]["epoch"]) >= since]
        return sorted((self._anchor_of(x) for x in logs), key=lambda a: a.epoch)

    def claim(self, account: bytes, cumulative: int, proof: Sequence[bytes]) -> Claim:
        path = [bytes(p) for p in proof]
        if (len(account) != 32 or not 0 <= cumulative < _UINT256 or len(path) > MAX_PROOF
                or any(len(p) != 32 for p in path)):
            # No such leaf or proof can be under any root (LGR-14); the contract would
            # say so, but they cannot be encoded to ask it.
            if self.latest() is None:
                raise ChainError(ChainReason.NO_ROOT, account.hex()[:16])
            raise ChainError(ChainReason.BAD_PROOF, account.hex()[:16])
        receipt = self._transact(f"claim {account.hex()[:16]}", "claim",
                                 [account, cumulative, path],
                                 self.gas.claim_base + self.gas.claim_per_level * len(path))
        logs = self.contract.events.Claimed().process_receipt(receipt)
        if len(logs) != 1:
            raise ChainError(ChainReason.UNAVAILABLE, "claim: no Claimed event")
        args = logs[0]["args"]
        epoch, _ = self._call("latest", self.contract.functions.latest(),
                              receipt["blockNumber"])
        return Claim(bytes(args["account"]), to_checksum_address(args["payee"]),
                     int(args["cumulative"]), int(args["paid"]), int(epoch),
                     "0x" + bytes(receipt["transactionHash"]).hex())

    def claimed(self, account: bytes) -> int:
        return int(self._call("claimed", self.contract.functions.claimed(account)))

    def payee_of(self, account: bytes) -> str | None:
        payee = to_checksum_address(self._call("payoutOf",
                                               self.contract.functions.payoutOf(account)))
        return None if int(payee, 16) == 0 else payee

    def bind(self, account: bytes, payee: str) -> None:
        if len(account) != 32:
            raise ValueError("an account is a 32-byte key")
        if not is_address(payee):
            raise ValueError(f"{payee!r} is not an address")
        self._transact(f"bind {account.hex()[:16]}", "bind",
                       [account, to_checksum_address(payee)], self.gas.bind)

    def is_anchorer_key(self, key: bytes) -> bool:
        payee = self.payee_of(key)
        return payee is not None and payee in self.anchorers()

    # -- views of the contract ------------------------------------------------------------

    def anchorers(self) -> list[str]:
        return [to_checksum_address(a) for a in
                self._call("anchorerList", self.contract.functions.anchorerList())]

    def schedule(self) -> Schedule:
        epoch_len, grace, fallback = self._call("schedule", self.contract.functions.schedule())
        return Schedule(int(epoch_len), int(grace), int(fallback))

    def balance(self) -> int:
        """What the contract holds to pay claims, wei."""
        return int(_guard("balance", lambda: self.w3.eth.get_balance(self.address)))
