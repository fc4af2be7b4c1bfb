"""Cases for node identity and PeerIDs (spec/01-encoding.md §1).

``peer_id``: from the seed in ``seed.txt`` (hex) derive ``public_key.txt`` (hex),
``peer_id.bin`` (binary PeerID) and ``peer_id.txt`` (base58btc).
``peer_id_decode``: recover ``public_key.txt`` and ``peer_id.txt`` from ``peer_id.bin``, or
refuse a PeerID that is not an Ed25519 identity PeerID.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

from conformance.cases.common import ALICE, BOB
from conformance.model import Case, Inputs, reject, valid
from p2pnode.wire.reasons import Reason

PB_PREFIX = bytes.fromhex("08011220")
IDENTITY_MH = bytes.fromhex("0024")

SEEDS: list[tuple[str, bytes, str]] = [
    ("seed_zero", bytes(32), "the all-zero seed"),
    ("seed_ff", b"\xff" * 32, "the all-ones seed"),
    ("seed_counting", bytes(range(1, 33)), "the seed 0x01, 0x02, ..., 0x20"),
    ("seed_alice", ALICE.seed, "the conformance key alice: SHA-256(\"p2pnode conformance key "
     "alice\")"),
    ("seed_bob", BOB.seed, "the conformance key bob"),
]
# RFC 8032 §7.1, TEST 1 and TEST 2: seed -> public key, stated by the RFC.
RFC8032 = [
    ("rfc8032_test1", "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"),
    ("rfc8032_test2", "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"),
]


def peer_id() -> Iterator[Case]:
    for name, seed, desc in SEEDS:
        yield Case(name, Inputs({"seed.txt": seed.hex()}), valid(), desc,
                   ("ID-1", "ID-2", "ID-3"))
    for name, seed_hex, pk_hex in RFC8032:
        pk = bytes.fromhex(pk_hex)
        yield Case(name, Inputs({"seed.txt": seed_hex}),
                   valid({"public_key.txt": pk_hex,
                          "peer_id.bin": IDENTITY_MH + PB_PREFIX + pk}),
                   "RFC 8032 section 7.1 %s: the public key is the RFC's" % name[-5:],
                   ("ID-1", "ID-2", "ID-3"))


def peer_id_decode() -> Iterator[Case]:
    pk = ALICE.public_key
    good = IDENTITY_MH + PB_PREFIX + pk
    yield Case("ed25519", Inputs({"peer_id.bin": good}),
               valid({"public_key.txt": pk.hex()}), "alice's PeerID", ("ID-2", "ID-3"))
    secp = bytes.fromhex("0025" + "08021221") + b"\x02" + bytes(range(32))
    yield Case("secp256k1_key", Inputs({"peer_id.bin": secp}), reject(Reason.BAD_KEY),
               "an identity PeerID of a secp256k1 key (KeyType 2)", ("ID-4",))
    hashed = bytes.fromhex("1220") + hashlib.sha256(b"an RSA public key").digest()
    yield Case("sha256_peer_id", Inputs({"peer_id.bin": hashed}), reject(Reason.BAD_KEY),
               "a sha2-256 PeerID (as RSA keys have): the key cannot be recovered", ("ID-4",))
    yield Case("truncated", Inputs({"peer_id.bin": good[:-1]}), reject(Reason.BAD_KEY),
               "an Ed25519 PeerID one byte short", ("ID-4",))
    yield Case("extra_byte", Inputs({"peer_id.bin": good + b"\x00"}), reject(Reason.BAD_KEY),
               "an Ed25519 PeerID with one byte more", ("ID-4",))
    wrong_len = bytes.fromhex("0025") + PB_PREFIX + pk + b"\x00"
    yield Case("wrong_multihash_length", Inputs({"peer_id.bin": wrong_len}),
               reject(Reason.BAD_KEY), "an identity multihash claiming 37 bytes", ("ID-4",))


HANDLERS: dict[str, Callable[[], Iterator[Case]]] = {
    "peer_id": peer_id, "peer_id_decode": peer_id_decode}
