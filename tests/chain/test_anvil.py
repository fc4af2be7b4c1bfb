"""anvil, a real JSON-RPC node: it starts, answers and stops; its clock is ours to set; the
evm backend runs over it with keys that sign here, not only the node's unlocked accounts;
and the anvil World's refusals cost no block."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from eth_account import Account
from eth_typing import HexStr
from web3 import Web3

from p2pnode.chain import anvil
from p2pnode.chain.anvil import Anvil, find_anvil, mine, native_binary, set_next_block_time
from p2pnode.chain.base import ChainError, ChainReason
from p2pnode.chain.evm import EvmChain, deploy
from p2pnode.ledger import merkle
from tests.chain.world import SCHEDULE
from tests.polling import poll


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_anvil_starts_answers_and_stops() -> None:
    with Anvil() as node:
        assert node.running() and node.url.startswith("http://127.0.0.1:")
        assert node.chain_id == 31337
        w3 = node.w3()
        assert w3.eth.chain_id == 31337 and w3.eth.block_number == 0
        accounts = node.accounts()
        assert len(accounts) == 10 and accounts == [str(a) for a in w3.eth.accounts]
        assert all(w3.eth.get_balance(a) > 10**21 for a in accounts)
        pid, url = node.pid, node.url
        assert pid is not None
    assert not node.running() and node.pid is None
    assert _gone(pid)  # stopped and reaped: no zombie left either
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)
    node.stop()  # idempotent


def test_find_anvil_finds_the_installed_one(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.delenv(anvil.ENV, raising=False)
    found = find_anvil()
    assert found is not None and os.access(found, os.X_OK)
    local = anvil.ROOT / ".anvil" / "node_modules" / ".bin" / "anvil"
    if local.exists():
        assert found == local
    native = native_binary(found)
    monkeypatch.setenv(anvil.ENV, str(native))
    assert find_anvil() == native
    monkeypatch.setenv(anvil.ENV, str(tmp_path / "missing"))
    assert find_anvil() == found  # a path that names no binary is skipped


def test_install_anvil_is_idempotent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    local = anvil.ROOT / ".anvil" / "node_modules" / ".bin" / "anvil"
    assert local.exists(), "scripts/install.sh installs anvil under the repository"
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm: installing again would fail
    assert anvil.install_anvil(anvil.ROOT) == local  # the version is there: npm not run


def test_install_anvil_says_what_failed(monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="npm is not on PATH"):
        anvil.install_anvil(tmp_path)
    npm = tmp_path / "npm"
    npm.write_text("#!/bin/sh\necho 'E404 no such package' >&2\nexit 3\n")
    npm.chmod(0o755)
    with pytest.raises(RuntimeError, match=r"failed \(exit 3\): E404 no such package"):
        anvil.install_anvil(tmp_path)


def test_the_clock_is_set_per_block() -> None:
    with Anvil(timestamp=0) as node:
        w3 = node.w3()
        assert w3.eth.get_block("latest")["timestamp"] == 0
        set_next_block_time(w3, 2025)
        assert w3.eth.get_block("pending")["timestamp"] == 2025
        mine(w3)
        latest = w3.eth.get_block("latest")
        assert (latest["number"], latest["timestamp"]) == (1, 2025)
        with pytest.raises(RuntimeError, match="evm_setNextBlockTimestamp"):
            set_next_block_time(w3, 2024)


def test_interval_mining() -> None:
    with Anvil(block_time=0.5) as node:
        w3 = node.w3()
        poll(lambda: w3.eth.block_number >= 2, 10, "two blocks mined on their own")


def test_deploy_anchor_and_claim_with_a_key_that_signs_here() -> None:
    key = Account.from_key(os.urandom(32))
    accounts = [bytes([7]) * 32, bytes([8]) * 32]
    tree = merkle.build({accounts[0]: 1234, accounts[1]: 99})
    with Anvil(timestamp=0) as node:
        w3 = node.w3()
        dev = node.accounts()
        w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(
            {"from": dev[0], "to": key.address, "value": Web3.to_wei(10, "ether")}))
        address = deploy(w3, key, [key.address], SCHEDULE, fund_wei=10**18)
        chain = EvmChain(w3, address, key)
        assert chain.sender == key.address and chain.anchorers() == [key.address]
        assert chain.schedule() == SCHEDULE and chain.balance() == 10**18
        chain.bind(accounts[0], dev[5])
        set_next_block_time(w3, SCHEDULE.closes_at(3) - 1)
        with pytest.raises(ChainError) as e:
            chain.anchor(3, tree.root, 2)
        assert e.value.reason is ChainReason.NOT_ANCHORER
        set_next_block_time(w3, SCHEDULE.closes_at(3))
        a = chain.anchor(3, tree.root, 2)
        assert (a.epoch, a.root, a.anchorer, a.at) == (3, tree.root, key.address,
                                                       SCHEDULE.closes_at(3))
        before = w3.eth.get_balance(dev[5])
        c = chain.claim(accounts[0], 1234, tree.proof(accounts[0]) or [])
        assert (c.paid, c.payee, c.epoch) == (1234, dev[5], 3)
        assert w3.eth.get_balance(dev[5]) - before == 1234
        assert chain.claimed(accounts[0]) == 1234 and chain.balance() == 10**18 - 1234
        # deploy, bind, anchor and claim, each signed here and sent raw
        assert w3.eth.get_transaction_count(key.address) == 4
        assert w3.eth.get_transaction(HexStr(c.tx))["from"] == key.address


def test_a_refusal_on_the_anvil_world_costs_no_block() -> None:
    from tests.chain.anvil_world import AnvilWorld

    world = AnvilWorld()
    try:
        w3 = world.w3
        close = SCHEDULE.closes_at(100)
        world.set_time(close - 1)
        head = w3.eth.block_number
        with pytest.raises(ChainError) as e:
            world.chain(1).anchor(100, bytes(range(1, 33)), 1)
        assert e.value.reason is ChainReason.NOT_ANCHORER
        assert w3.eth.block_number == head
        world.set_time(close)
        assert world.chain(1).anchor(100, bytes(range(1, 33)), 1).at == close
        world.set_time(0)  # at least one second after the newest block
        assert w3.eth.get_block("pending")["timestamp"] == close + 1
    finally:
        world.close()
    assert not world.anvil.running()
