"""ENV-12 at the pubsub layer: py-libp2p marks a message seen only after it passed
validation, so every copy of a message that failed would have its pubsub signature
verified again; the patched validator holds verdicts by the message's bytes."""

from __future__ import annotations

import libp2p.pubsub.pubsub as pubsub_mod
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX

import p2pnode.net.host as host
from p2pnode.identity import Identity
from p2pnode.net.host import PUBSUB_SIGNATURES, libp2p_key_pair, patch_libp2p
from tests.caps.ads import NET


def signed(data: bytes, seqno: int) -> rpc_pb2.Message:
    kp = libp2p_key_pair(Identity(bytes(range(3, 35))))
    msg = rpc_pb2.Message(data=data, topicIDs=[f"/p2pnode/{NET}/caps/1"],
                          from_id=ID.from_pubkey(kp.public_key).to_bytes(),
                          seqno=seqno.to_bytes(8, "big"))
    msg.signature = kp.private_key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
    return msg


def test_copies_of_a_message_cost_one_pubsub_verification() -> None:
    patch_libp2p(host._patched_net or NET)  # (process-wide: whichever network is patched)
    good = signed(b"payload", 1)
    forged = rpc_pb2.Message()
    forged.CopyFrom(signed(b"payload", 2))
    forged.data = b"payload, altered after signing"
    before = PUBSUB_SIGNATURES.verifications
    for _ in range(50):
        assert pubsub_mod.signature_validator(good) is True
        assert pubsub_mod.signature_validator(forged) is False
    assert PUBSUB_SIGNATURES.verifications - before == 2
    # A copy parsed from the wire is the same message: the same verdict, no verification.
    wire = rpc_pb2.Message.FromString(forged.SerializeToString())
    assert pubsub_mod.signature_validator(wire) is False
    assert PUBSUB_SIGNATURES.verifications - before == 2
