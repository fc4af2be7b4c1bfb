"""A node's payout key (BND-2) and its binding statement (BND-1)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from p2pnode.chain.binding import (
    PAYOUT_KEY_FILE,
    PayoutBinding,
    address_of,
    open_binding,
    payout_key,
)
from p2pnode.identity import Identity
from p2pnode.wire.reasons import Reason, WireError


def test_the_payout_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    key = payout_key(tmp_path)
    assert len(key) == 32 and payout_key(tmp_path) == key
    assert stat.S_IMODE((tmp_path / PAYOUT_KEY_FILE).stat().st_mode) == 0o600
    (tmp_path / PAYOUT_KEY_FILE).write_text("abcd\n")
    with pytest.raises(ValueError):
        payout_key(tmp_path)


def test_the_address_is_the_keys_and_a_statement_binds_it(tmp_path: Path) -> None:
    # The well-known key 0x01..01 (32 bytes) has this address.
    assert address_of(bytes([1]) * 32).hex() == "1a642f0e3c3af545e7acbd38b07251b3990914f1"
    node = Identity.generate()
    secret = payout_key(tmp_path)
    data = PayoutBinding(net="n", chain=7, payee=address_of(secret), ts=1).seal(node)
    bound = open_binding(data, net="n", chain=7)
    assert bound.account == node.public_key and bound.binding.payee == address_of(secret)
    assert bound.address.lower() == "0x" + address_of(secret).hex()
    with pytest.raises(WireError) as e:
        open_binding(data, net="n", chain=8)
    assert e.value.reason is Reason.BAD_FIELD
