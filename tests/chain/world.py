"""A chain with several senders for the backend tests: every backend passes the same test
functions (tests/chain/test_backends.py) through this seam."""

from __future__ import annotations

from typing import Protocol

from p2pnode.chain.base import Chain, Schedule

SCHEDULE = Schedule(epoch_len_s=20, grace_s=5, fallback_s=10)
ANCHORERS = 3  # the senders 0, 1 and 2 anchor, in that rotation; sender 3 does not


class World(Protocol):
    """One chain made with ``SCHEDULE`` and the first ``ANCHORERS`` senders as anchorers."""

    name: str

    def chain(self, sender: int) -> Chain:
        """The chain as seen by sender ``sender`` (0 .. 3)."""
        ...

    def sender_name(self, sender: int) -> str:
        """``Chain.sender`` of that sender (a hex key or an address)."""
        ...

    def set_time(self, t: int) -> None:
        """Make the chain's next block have time ``t`` (s), at least the last block's."""

    def payee(self, i: int) -> str:
        """A payee the backend can pay (an address on an EVM, any name on devchain)."""
        ...

    def payee_balance(self, payee: str) -> int:
        """What ``payee`` holds on the chain (devchain: its paid total; evm: wei)."""
        ...

