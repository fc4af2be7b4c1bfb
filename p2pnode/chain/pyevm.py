"""An Ethereum chain in this process (py-evm through eth-tester) for the chain benchmark and
the tests: a real EVM whose clock the caller sets. A new block is one second after its
parent unless its time is set; the chain starts at time 0."""

from __future__ import annotations

from typing import Any

from eth.vm.forks import PragueVM  # type: ignore[attr-defined]
from eth_tester import EthereumTester, PyEVMBackend  # type: ignore[import-untyped]
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

SENDERS = 4
PAYEES = 8


class _StepVM(PragueVM):  # type: ignore[misc]
    """Prague with a clock of its own: a new block is one second after its parent unless
    its time is set, instead of the wall clock."""

    @classmethod
    def create_header_from_parent(cls, parent_header: Any, **params: Any) -> Any:
        if parent_header is not None:
            params.setdefault("timestamp", parent_header.timestamp + 1)
        return super().create_header_from_parent(parent_header, **params)


def fresh_chain(accounts: int = SENDERS + PAYEES) -> tuple[Web3, PyEVMBackend]:
    """A fresh in-process chain at time 0 with ``accounts`` funded accounts."""
    backend = PyEVMBackend(
        genesis_parameters=PyEVMBackend.generate_genesis_params(overrides={"timestamp": 0}),
        genesis_state=PyEVMBackend.generate_genesis_state(num_accounts=accounts),
        vm_configuration=((0, _StepVM),))
    return Web3(EthereumTesterProvider(EthereumTester(backend))), backend


def set_next_block_time(backend: PyEVMBackend, t: int) -> None:
    """Make the next block's time ``t``, or one second after the newest block's if that is
    later."""
    chain = backend.chain
    newest = chain.get_canonical_head().timestamp
    chain.header = chain.header.copy(timestamp=max(int(t), newest + 1))


