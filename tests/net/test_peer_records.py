"""The signed-peer-record memo: accepted bytes are consumed once, failures every time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from p2pnode.net.peerrecords import (
    OwnRecordMemo,
    RecordMemo,
    kad_expected,
    kad_field,
    pubsub_expected,
    pubsub_field,
)


@dataclass
class Msg:
    senderRecord: bytes = b""

    def HasField(self, name: str) -> bool:
        if name != "senderRecord":
            raise ValueError(name)
        return bool(self.senderRecord)


@dataclass
class PeerMsg:
    id: bytes
    signedRecord: bytes = b""

    def HasField(self, name: str) -> bool:
        if name != "signedRecord":
            raise ValueError(name)
        return bool(self.signedRecord)


class Store:
    pass


@dataclass
class Host:
    store: Store = field(default_factory=Store)

    def get_peerstore(self) -> Store:
        return self.store


class Peer:
    def __init__(self, b: bytes) -> None:
        self.b = b

    def to_bytes(self) -> bytes:
        return self.b


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def counting(verdict: bool = True) -> tuple[list[Any], Any]:
    calls: list[Any] = []

    def consume(msg: Any, host: Any, peer_id: Any = None) -> bool:
        calls.append((msg, peer_id))
        return verdict

    return calls, consume


def test_same_record_same_peer_is_consumed_once() -> None:
    calls, consume = counting()
    memo = RecordMemo(clock=Clock())
    f = memo.wrap(consume, pubsub_field, pubsub_expected)
    host, a = Host(), Peer(b"A")
    for _ in range(5):
        assert f(Msg(b"rec-a"), host, a)
    assert len(calls) == 1
    assert (memo.hits, memo.misses) == (4, 1)


def test_key_includes_peer_record_and_peerstore() -> None:
    calls, consume = counting()
    f = RecordMemo(clock=Clock()).wrap(consume, pubsub_field, pubsub_expected)
    host = Host()
    f(Msg(b"rec-a"), host, Peer(b"A"))
    f(Msg(b"rec-a"), host, Peer(b"B"))   # the same record relayed by another sender
    f(Msg(b"rec-a2"), host, Peer(b"A"))  # a new record of the same peer
    f(Msg(b"rec-a"), Host(), Peer(b"A"))  # another node's peerstore
    assert len(calls) == 4


def test_failures_are_checked_every_time() -> None:
    calls, consume = counting(False)
    f = RecordMemo(clock=Clock()).wrap(consume, pubsub_field, pubsub_expected)
    host = Host()
    assert not f(Msg(b"forged"), host, Peer(b"A"))
    assert not f(Msg(b"forged"), host, Peer(b"A"))
    assert len(calls) == 2


def test_messages_without_record_go_to_the_original() -> None:
    calls, consume = counting()
    f = RecordMemo(clock=Clock()).wrap(consume, pubsub_field, pubsub_expected)
    f(Msg(), Host(), Peer(b"A"))
    f(Msg(), Host(), Peer(b"A"))
    assert len(calls) == 2


def test_refresh_after_refresh_s() -> None:
    calls, consume = counting()
    clock = Clock()
    f = RecordMemo(clock=clock, refresh_s=600).wrap(consume, pubsub_field, pubsub_expected)
    host = Host()
    f(Msg(b"r"), host, Peer(b"A"))
    clock.t = 599.9
    f(Msg(b"r"), host, Peer(b"A"))
    clock.t = 600.0
    f(Msg(b"r"), host, Peer(b"A"))
    assert len(calls) == 2


def test_bounded_least_recent_first() -> None:
    calls, consume = counting()
    f = RecordMemo(clock=Clock(), max_records=3).wrap(consume, pubsub_field, pubsub_expected)
    host = Host()
    for r in (b"1", b"2", b"3"):
        f(Msg(r), host, Peer(b"A"))
    f(Msg(b"1"), host, Peer(b"A"))  # a hit: 1 becomes the most recent
    f(Msg(b"4"), host, Peer(b"A"))  # evicts 2
    n = len(calls)
    f(Msg(b"1"), host, Peer(b"A"))
    assert len(calls) == n
    f(Msg(b"2"), host, Peer(b"A"))
    assert len(calls) == n + 1


def test_kad_peer_entries_keyed_by_their_own_id() -> None:
    calls, consume = counting()
    f = RecordMemo(clock=Clock()).wrap(consume, kad_field, kad_expected)
    host = Host()
    f(PeerMsg(b"P", b"rec"), host)
    f(PeerMsg(b"P", b"rec"), host)
    f(PeerMsg(b"Q", b"rec"), host)  # a record claimed for another id is checked
    f(Msg(b"rec"), host, Peer(b"P"))  # a sender record: keyed by the sender
    assert len(calls) == 3


def test_installed_in_libp2p() -> None:
    import libp2p.kad_dht.provider_store as providers
    import libp2p.pubsub.pubsub as pubsub_mod
    import libp2p.pubsub.utils as pubsub_utils

    from p2pnode.net import host

    host.patch_libp2p(host._patched_net or "testnet")  # process-wide: whichever is patched
    assert pubsub_mod.maybe_consume_signed_record is not pubsub_utils.maybe_consume_signed_record
    assert providers.maybe_consume_signed_record.__name__ == "memoised"


def test_own_record_built_once_per_host_and_reuse_window() -> None:
    built: list[Any] = []

    def build(host: Any) -> tuple[bytes, bool]:
        built.append(host)
        return b"env-%d" % len(built), True

    class Node:  # hashable by identity, as py-libp2p's hosts are
        pass

    clock = Clock()
    f = OwnRecordMemo(clock=clock, reuse_s=5).wrap(build)
    a, b = Node(), Node()
    assert f(a) == (b"env-1", True)
    assert f(a) == (b"env-1", False)  # reused: no record issued
    assert f(b) == (b"env-2", True)  # another host has its own
    clock.t = 4.9
    assert f(a) == (b"env-1", False)
    clock.t = 5.0
    assert f(a) == (b"env-3", True)  # built again: new addresses would show now
    assert built == [a, b, a]


def test_own_record_installed_wherever_libp2p_sends_one() -> None:
    import libp2p.identity.identify.identify as identify_mod
    import libp2p.kad_dht.kad_dht as kad_main
    import libp2p.pubsub.gossipsub as gossipsub_mod
    import libp2p.pubsub.pubsub as pubsub_mod

    from p2pnode.net import host

    host.patch_libp2p(host._patched_net or "testnet")
    for mod in (pubsub_mod, gossipsub_mod, identify_mod, kad_main):
        assert mod.env_to_send_in_RPC.__name__ == "memoised", mod.__name__
