"""The anvil World of the backend tests: the RewardAnchor contract on a real JSON-RPC node
(anvil, one process per world, a block per transaction), with a clock the test sets.

Anvil starts at genesis time 0 (``--timestamp 0``) and its clock then runs with the wall
clock; ``set_time(t)`` sets the next block's time with ``evm_setNextBlockTimestamp``, at
least one second after the newest block's (as on the py-evm world: blocks never share a
time there, and anvil refuses a time before the newest block's). The pending block, on
which ``EvmChain`` runs every transaction first, has that time, and a refusal found there
sends nothing, so no block is mined and the test's time holds until a transaction
succeeds. The senders are anvil's unlocked dev accounts 0 .. 3 (0 .. 2 anchor); the payees
are the other dev accounts, funded and never sending, so their balances change only by
claims.
"""

from __future__ import annotations

from p2pnode.chain.anvil import Anvil, set_next_block_time
from p2pnode.chain.evm import deploy
from tests.chain.evm_world import PAYEES, SENDERS, ContractWorld
from tests.chain.world import ANCHORERS, SCHEDULE

FUND_WEI = 10**21


class AnvilWorld(ContractWorld):
    name = "anvil"

    def __init__(self) -> None:
        super().__init__()
        self.anvil = Anvil(timestamp=0, accounts=SENDERS + PAYEES).start()
        try:
            self.w3 = self.anvil.w3()
            self.accounts = self.anvil.accounts()
            self.address = deploy(self.w3, self.accounts[0], self.accounts[:ANCHORERS],
                                  SCHEDULE, fund_wei=FUND_WEI)
        except BaseException:
            self.anvil.stop()
            raise

    def set_time(self, t: int) -> None:
        newest = int(self.w3.eth.get_block("latest")["timestamp"])
        set_next_block_time(self.w3, max(int(t), newest + 1))

    def close(self) -> None:
        self.anvil.stop()
