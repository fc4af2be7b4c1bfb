"""Identity: PeerIDs as libp2p derives them, base58, key files (spec 01 §1)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import base58
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.peer.id import ID

from p2pnode.identity import (
    KEY_FILE_HEADER,
    Identity,
    b58decode,
    b58encode,
    load_identity,
    peer_id_bytes,
    peer_id_str,
    public_key_from_peer_id,
    save_identity,
    verify,
)
from p2pnode.wire.reasons import Reason, WireError

seeds = st.binary(min_size=32, max_size=32)


def libp2p_peer_id(seed: bytes) -> ID:
    return ID.from_pubkey(Ed25519PrivateKey.from_bytes(seed).get_public_key())


@given(seeds)
@example(bytes(32))
@example(b"\xff" * 32)
def test_peer_id_matches_py_libp2p(seed: bytes) -> None:
    ident = Identity(seed)
    theirs = libp2p_peer_id(seed)
    assert ident.peer_id == theirs.to_base58()
    assert peer_id_bytes(ident.public_key) == theirs.to_bytes()
    assert ident.public_key == Ed25519PrivateKey.from_bytes(seed).get_public_key().to_bytes()
    assert ident.peer_id.startswith("12D3KooW")


@given(seeds)
def test_public_key_from_peer_id_inverts_peer_id_bytes(seed: bytes) -> None:
    pk = Identity(seed).public_key
    assert public_key_from_peer_id(peer_id_bytes(pk)) == pk
    assert b58decode(peer_id_str(pk)) == peer_id_bytes(pk)


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x00\x24\x08\x01\x12\x20" + b"\x00" * 31,  # one byte short
        b"\x00\x24\x08\x01\x12\x20" + b"\x00" * 33,
        b"\x00\x24\x08\x00\x12\x20" + b"\x00" * 32,  # key type 0 (RSA)
        b"\x12\x20" + b"\x00" * 32,  # a sha2-256 multihash, as RSA PeerIDs are
    ],
)
def test_public_key_from_other_peer_ids_is_refused(bad: bytes) -> None:
    with pytest.raises(WireError) as exc:
        public_key_from_peer_id(bad)
    assert exc.value.reason == Reason.BAD_KEY


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_peer_id_of_a_wrong_size_key_is_refused(size: int) -> None:
    with pytest.raises(WireError) as exc:
        peer_id_bytes(b"\x01" * size)
    assert exc.value.reason == Reason.BAD_KEY


@given(st.binary(max_size=64))
@example(b"")
@example(b"\x00")
@example(b"\x00\x00\x01")
@example(b"\x00" * 10)
def test_base58_round_trip_and_reference(data: bytes) -> None:
    text = b58encode(data)
    assert b58decode(text) == data
    assert text == base58.b58encode(data).decode("ascii")


@pytest.mark.parametrize("text", ["0", "O", "I", "l", "abc+", "12D3KooW\u00e9"])
def test_base58_rejects_characters_outside_the_alphabet(text: str) -> None:
    with pytest.raises(ValueError):
        b58decode(text)


@given(seeds, st.binary(max_size=128))
def test_sign_verify(seed: bytes, msg: bytes) -> None:
    ident = Identity(seed)
    sig = ident.sign(msg)
    assert verify(ident.public_key, msg, sig)
    assert not verify(ident.public_key, msg + b"x", sig)
    assert not verify(ident.public_key, msg, sig[:-1] + bytes((sig[-1] ^ 1,)))
    assert not verify(ident.public_key[:31], msg, sig)
    assert not verify(ident.public_key, msg, sig[:63])


def test_seed_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        Identity(b"\x00" * 31)


def test_repr_does_not_show_the_seed() -> None:
    ident = Identity(bytes(range(32)))
    assert ident.peer_id in repr(ident)
    assert ident.seed.hex() not in repr(ident)
    assert ident.seed.hex()[:16] not in str(ident)


def test_generated_identities_differ() -> None:
    assert Identity.generate().peer_id != Identity.generate().peer_id


# -- key files -------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_file_round_trip_and_mode(tmp_path: Path) -> None:
    ident = Identity.generate()
    path = tmp_path / "sub" / "node.key"
    save_identity(ident, path)
    assert mode(path) == 0o600
    assert load_identity(path) == ident
    assert load_identity(path).peer_id == ident.peer_id
    assert path.read_bytes().startswith(KEY_FILE_HEADER)
    assert [p.name for p in path.parent.iterdir()] == ["node.key"]  # no temp file left


def test_key_file_mode_ignores_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        save_identity(Identity.generate(), tmp_path / "node.key")
    finally:
        os.umask(old)
    assert mode(tmp_path / "node.key") == 0o600


def test_saving_replaces_an_existing_key(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    first, second = Identity.generate(), Identity.generate()
    save_identity(first, path)
    save_identity(second, path)
    assert load_identity(path) == second
    assert mode(path) == 0o600


def test_stale_readable_temp_file_does_not_make_the_key_readable(tmp_path: Path) -> None:
    # A temp file left by an earlier, interrupted save (or made by hand) with a permissive
    # mode must not pass that mode on to the key.
    stale = tmp_path / "node.key.tmp"
    stale.write_bytes(b"")
    stale.chmod(0o644)
    ident = Identity.generate()
    save_identity(ident, tmp_path / "node.key")
    assert mode(tmp_path / "node.key") == 0o600
    assert load_identity(tmp_path / "node.key") == ident


@pytest.mark.parametrize("bad_mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_group_or_world_readable_key_file_is_refused(tmp_path: Path, bad_mode: int) -> None:
    path = tmp_path / "node.key"
    save_identity(Identity.generate(), path)
    path.chmod(bad_mode)
    with pytest.raises(PermissionError, match="0600"):
        load_identity(path)


def test_owner_only_stricter_mode_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    ident = Identity.generate()
    save_identity(ident, path)
    path.chmod(0o400)
    assert load_identity(path) == ident


def test_a_file_that_is_not_a_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    path.chmod(0o600)
    with pytest.raises(ValueError, match="not a p2pnode key file"):
        load_identity(path)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_identity(tmp_path / "absent.key")
