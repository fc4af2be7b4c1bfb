"""Node identity: one Ed25519 key (spec/01-encoding.md §1).

The same key is the libp2p identity (its PeerID) and signs every p2pnode object. The PeerID
is computed here from the public key as libp2p specifies it (identity multihash of the
protobuf-encoded public key), so the core can compare a signer with a message source
without importing libp2p.
"""

from __future__ import annotations

import functools
import stat
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.signing

from p2pnode.files import write_private_file
from p2pnode.wire.reasons import Reason, WireError

ED25519_PUBLIC_KEY_SIZE = 32
ED25519_SIGNATURE_SIZE = 64
# libp2p PublicKey protobuf: field 1 (KeyType) = 1 (Ed25519), field 2 (Data) = 32 bytes.
_PB_ED25519_PREFIX = b"\x08\x01\x12\x20"
# identity multihash (code 0x00) of the 36-byte protobuf
_PEER_ID_PREFIX = b"\x00\x24" + _PB_ED25519_PREFIX

_B58_ALPHABET = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = bytearray()
    while n:
        n, r = divmod(n, 58)
        out.append(_B58_ALPHABET[r])
    pad = len(data) - len(data.lstrip(b"\x00"))
    return (b"1" * pad + bytes(reversed(out))).decode("ascii")


def b58decode(text: str) -> bytes:
    n = 0
    for c in text.encode("ascii"):
        if c not in _B58_INDEX:
            raise ValueError("invalid base58 character %r" % chr(c))
        n = n * 58 + _B58_INDEX[c]
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    pad = len(text) - len(text.lstrip("1"))
    return b"\x00" * pad + body


def peer_id_bytes(public_key: bytes) -> bytes:
    """The binary PeerID of an Ed25519 public key."""
    if len(public_key) != ED25519_PUBLIC_KEY_SIZE:
        raise WireError(Reason.BAD_KEY, "Ed25519 public keys are 32 bytes")
    return _PEER_ID_PREFIX + public_key


def peer_id_str(public_key: bytes) -> str:
    """The PeerID of an Ed25519 public key in its base58btc text form (``12D3KooW...``)."""
    return b58encode(peer_id_bytes(public_key))


def public_key_from_peer_id(peer_id: bytes) -> bytes:
    """Inverse of :func:`peer_id_bytes`; raises ``WireError(BAD_KEY)`` for other key types."""
    if len(peer_id) != len(_PEER_ID_PREFIX) + 32 or not peer_id.startswith(_PEER_ID_PREFIX):
        raise WireError(Reason.BAD_KEY, "not an Ed25519 identity PeerID")
    return peer_id[len(_PEER_ID_PREFIX) :]


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(public_key) != ED25519_PUBLIC_KEY_SIZE or len(signature) != ED25519_SIGNATURE_SIZE:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


@dataclass(frozen=True, eq=True)
class Identity:
    """An Ed25519 signing key and what derives from it."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")

    @classmethod
    def generate(cls) -> Identity:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @functools.cached_property
    def _signing_key(self) -> nacl.signing.SigningKey:
        # Building a SigningKey from the seed costs ~20 us; every signature needs one.
        return nacl.signing.SigningKey(self.seed)

    @functools.cached_property
    def public_key(self) -> bytes:
        return bytes(self._signing_key.verify_key)

    @functools.cached_property
    def peer_id(self) -> str:
        return peer_id_str(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return bytes(self._signing_key.sign(message).signature)

    def __repr__(self) -> str:  # never print the seed
        return f"Identity({self.peer_id})"


KEY_FILE_HEADER = b"p2pnode-ed25519-seed-v1\n"


def save_identity(identity: Identity, path: Path) -> None:
    """Write the seed to ``path`` with mode 0600, created atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private_file(path, KEY_FILE_HEADER + identity.seed.hex().encode("ascii") + b"\n")


def load_identity(path: Path) -> Identity:
    """Read a key file written by :func:`save_identity`; refuse group/world-readable files."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PermissionError(f"key file {path} has mode {mode:o}; it must be 0600")
    raw = path.read_bytes()
    if not raw.startswith(KEY_FILE_HEADER):
        raise ValueError(f"{path} is not a p2pnode key file")
    seed = bytes.fromhex(raw[len(KEY_FILE_HEADER) :].strip().decode("ascii"))
    return Identity(seed)
