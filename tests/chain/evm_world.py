"""The EVM World of the backend tests: the RewardAnchor contract on eth-tester's in-process
py-evm, with a clock the test sets.

The chain starts at time 0 and each block is one second after the one before unless the
test sets the next block's time (``set_time``): blocks never share a time, so the block
after one at ``t`` is at ``t + 1`` at the earliest. Refusals cost no block (they are found
by a call on the pending block), so a test's time holds until a transaction succeeds.
"""

from __future__ import annotations

from web3 import Web3

from p2pnode.chain.evm import EvmChain, deploy
from p2pnode.chain.pyevm import fresh_chain, set_next_block_time
from tests.chain.world import ANCHORERS, SCHEDULE

SENDERS = 4  # 0 .. ANCHORERS - 1 anchor; the rest only send claims
PAYEES = 8  # funded accounts that never send: their balances change only by claims
FUND_WEI = 10**21


class ContractWorld:
    """What the EVM worlds share: the contract at ``address`` on ``w3``, senders and payees
    among ``accounts``."""

    w3: Web3
    accounts: list[str]
    address: str

    def __init__(self) -> None:
        self._chains: dict[int, EvmChain] = {}

    def chain(self, sender: int) -> EvmChain:
        if sender not in self._chains:
            self._chains[sender] = EvmChain(self.w3, self.address, self.sender_name(sender))
        return self._chains[sender]

    def sender_name(self, sender: int) -> str:
        if not 0 <= sender < SENDERS:
            raise IndexError(sender)
        return self.accounts[sender]

    def payee(self, i: int) -> str:
        if not 0 <= i < PAYEES:
            raise IndexError(i)
        return self.accounts[SENDERS + i]

    def payee_balance(self, payee: str) -> int:
        return int(self.w3.eth.get_balance(Web3.to_checksum_address(payee)))


class EvmWorld(ContractWorld):
    name = "evm"

    def __init__(self) -> None:
        super().__init__()
        self.w3, self.backend = fresh_chain()
        self.accounts = [Web3.to_checksum_address(a) for a in self.w3.eth.accounts]
        self.address = deploy(self.w3, self.accounts[0], self.accounts[:ANCHORERS], SCHEDULE,
                              fund_wei=FUND_WEI)

    def set_time(self, t: int) -> None:
        set_next_block_time(self.backend, t)

    def close(self) -> None:
        pass
