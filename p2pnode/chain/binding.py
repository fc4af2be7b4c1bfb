"""A node's payout key and the statement that binds it to its PeerID (spec 08 BND-1, BND-2).

    payout.bind v1, signed by the node's Ed25519 key (its PeerID; the ledger's account):
      net     the network
      chain   the chain id the payee is on (EVM chain id; 0 for devchain)
      payee   the 20-byte address of the node's secp256k1 payout key
      ts      when it was made, ms

An anchorer records a binding on chain (``Chain.bind``) only from a valid statement, and
every node can check the bindings it reads against the statements. The payout key lives
in the node home (``payout.key``, mode 0600): 32 bytes of secp256k1 secret, hex. Pure but
for the key file.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from p2pnode.jobs.model import MAX_NET_LEN
from p2pnode.wire import envelope
from p2pnode.wire.body import SealedBody
from p2pnode.wire.fields import bstr, map_exact, text, uint
from p2pnode.wire.reasons import Reason, WireError

T_BIND = "payout.bind"
VERSION = 1
BIND_MAX_SIZE = 256
PAYOUT_KEY_FILE = "payout.key"

envelope.register_type(T_BIND, {VERSION}, BIND_MAX_SIZE)

_KEYS = frozenset({"net", "chain", "payee", "ts"})


@dataclass(frozen=True, slots=True)
class PayoutBinding(SealedBody):
    T: ClassVar[str] = T_BIND
    V: ClassVar[int] = VERSION
    net: str
    chain: int
    payee: bytes
    ts: int


@dataclass(frozen=True, slots=True)
class Bound:
    account: bytes  # the Ed25519 key that signed: the ledger's account
    binding: PayoutBinding

    @property
    def address(self) -> str:
        """The payee as an EIP-55 checksummed address."""
        from eth_utils.address import to_checksum_address

        return str(to_checksum_address(self.binding.payee))


def open_binding(data: bytes, *, net: str, chain: int) -> Bound:
    """BND-1: the statement in ``data``; raises WireError with the reason."""
    env = envelope.open_envelope(data, expected_type=T_BIND)
    m = map_exact(env.body, _KEYS, T_BIND)
    b = PayoutBinding(net=text(m["net"], MAX_NET_LEN, "net", nonempty=True),
                      chain=uint(m["chain"], "chain"), payee=bstr(m["payee"], "payee", size=20),
                      ts=uint(m["ts"], "ts"))
    if b.net != net:
        raise WireError(Reason.WRONG_NETWORK, b.net)
    if b.chain != chain:
        raise WireError(Reason.BAD_FIELD, "a binding for chain %d, not %d" % (b.chain, chain))
    if b.payee == bytes(20):
        raise WireError(Reason.BAD_FIELD, "the zero address")
    return Bound(env.signer, b)


def payout_key(home: Path, path: Path | None = None) -> bytes:
    """BND-2: the node's secp256k1 payout secret (in ``path``, default ``payout.key`` in
    the node home), made on first use."""
    path = path or home / PAYOUT_KEY_FILE
    if path.exists():
        key = bytes.fromhex(path.read_text().strip())
        if len(key) != 32:
            raise ValueError(f"{path} does not hold a 32-byte key")
        return key
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key


def address_of(secret: bytes) -> bytes:
    """The 20-byte address of a secp256k1 secret."""
    from eth_keys.datatypes import PrivateKey

    return bytes(PrivateKey(secret).public_key.to_canonical_address())
