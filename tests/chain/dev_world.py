"""The devchain World of the backend tests: a file in tmp, a clock the test sets."""

from __future__ import annotations

import hashlib
from pathlib import Path

from p2pnode.chain.devchain import DevChain
from p2pnode.identity import Identity
from tests.chain.world import ANCHORERS, SCHEDULE


def _identity(i: int) -> Identity:
    return Identity(hashlib.sha256(b"devchain test sender %d" % i).digest())


class DevWorld:
    name = "devchain"

    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "chain.db"
        self.now = [0]
        self.ids = [_identity(i) for i in range(4)]
        DevChain.create(self.path, self.ids[0], [i.public_key.hex() for i in
                                                 self.ids[:ANCHORERS]], SCHEDULE,
                        clock=lambda: self.now[0]).close()
        self._chains: dict[int, DevChain] = {}

    def chain(self, sender: int) -> DevChain:
        if sender not in self._chains:
            self._chains[sender] = DevChain(self.path, self.ids[sender],
                                            clock=lambda: self.now[0])
        return self._chains[sender]

    def sender_name(self, sender: int) -> str:
        return self.ids[sender].public_key.hex()

    def set_time(self, t: int) -> None:
        self.now[0] = t

    def payee(self, i: int) -> str:
        return f"payee-{i}"

    def payee_balance(self, payee: str) -> int:
        return self.chain(0).paid_to(payee)

    def close(self) -> None:
        for c in self._chains.values():
            c.close()
