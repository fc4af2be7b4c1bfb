"""Attacks on the ledger service (spec 07 LGR-16, RCN-5..RCN-9): the topic validator
refuses every forged or out-of-bounds element with its reason, and a /sync/1 session with
a hostile peer, on either side, ends with its reason in bounded time and changes nothing
it should not. The service runs over in-memory fakes of its ports and a real store."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
from prometheus_client import CollectorRegistry

from conformance.cases.common import BOB, CAROL
from conformance.cases.proofs import A_BLOB, B_BLOB, SPEC_RAW, TRUE
from p2pnode.jobs import tensors
from p2pnode.jobs.messages import JobResult
from p2pnode.ledger import elements, reconcile, riblt, samples, transfer
from p2pnode.ledger.elements import Element, open_element
from p2pnode.ledger.reconcile import (
    Batch,
    End,
    Hello,
    More,
    Responder,
    Want,
    encode_message,
    first_batch,
    max_symbols,
    next_batch,
)
from p2pnode.ledger.state import Params
from p2pnode.ledger.store import LedgerStore
from p2pnode.ports import Exchange, TransportError
from p2pnode.proofs import fraud, matmul
from p2pnode.services import ledger as ledger_service
from p2pnode.services.ledger import LedgerMetrics, LedgerService
from p2pnode.wire import cbor
from p2pnode.wire.cid import CID_PREFIX, cid_of
from p2pnode.wire.reasons import ACCEPT, Ignore, Reason, Reject, WireError

NET = "devnet"
TOPIC = f"/p2pnode/{NET}/ledger/1"
P = Params(epoch_len_ms=20_000, grace_ms=5_000)
NOW = 1_700_000_000_000  # epoch 85_000_000 begins here
EPOCH = P.epoch(NOW)
REQUESTER = samples.identity("requester")
OTHER = samples.identity("other")
WORKERS = [samples.identity("worker %d" % i).public_key for i in range(4)]
FOREVER = math.inf
# A session that has not ended by then hangs (its own bound is SESSION_TIMEOUT_S).
GUARD_S = 100.0


def credit_bytes(i: int, *, price: int | None = None, ts: int | None = None,
                 net: str = NET) -> bytes:
    """A valid credit of a job of REQUESTER's, of epoch EPOCH - 6 + i % 3 (closed at NOW)."""
    return samples.credit(REQUESTER, net, WORKERS[i % 4], 100 + i if price is None else price,
                          (EPOCH - 6 + i % 3) * P.epoch_len_ms + 17 * i if ts is None else ts,
                          i)


POOL = [credit_bytes(i) for i in range(260)]


def el(i: int) -> Element:
    return open_element(POOL[i], net=NET, now_ms=NOW)


def forged_signature(data: bytes) -> bytes:
    m = cbor.decode(data)
    env = cbor.decode(m["receipt"])
    sig = env["s"]
    receipt = cbor.encode({**env, "s": sig[:10] + bytes([sig[10] ^ 0x04]) + sig[11:]})
    return elements.credit(receipt, m["job"])


def signed_by_other(i: int) -> bytes:
    job = samples.job(REQUESTER, NET, NOW - 1000, 10_000 + i)
    return elements.credit(samples.receipt(OTHER, NET, job, WORKERS[0], 10, NOW - 1000), job)


def slash_bytes() -> bytes:
    """The slash of a valid fraud proof: BOB signed a wrong product, CAROL reports it."""
    c = TRUE.copy()
    c[1, 0] += 1
    blob = tensors.encode_matrix(np.asarray(c, dtype=np.int64))
    ts = NOW - 1000
    result = JobResult(net=NET, job=cid_of(SPEC_RAW), lease=1, output=cid_of(blob),
                       size=len(blob), ts=ts, proof={"rows": matmul.rows_root(c)}).seal(BOB)
    proof = fraud.prove(CAROL, NET, SPEC_RAW, result, {"a": A_BLOB, "b": B_BLOB}, blob, 1, ts)
    assert proof is not None
    return elements.slash(proof)


# -- fakes of the ports ------------------------------------------------------------------


class FakeGossip:
    """The ledger topic: what is published is recorded."""

    def __init__(self, peer_id: str) -> None:
        self.peer_id = peer_id
        self.published: list[tuple[str, bytes]] = []
        self.validators: dict[str, Any] = {}

    async def publish(self, topic: str, data: bytes) -> None:
        self.published.append((topic, data))

    def set_validator(self, topic: str, validate: Any) -> None:
        self.validators[topic] = validate

    def topic_peers(self, topic: str) -> dict[str, int]:
        return {}


class PipeEnd:
    """One end of an in-memory exchange of whole frames (the Exchange port); it keeps the
    frames it sent."""

    def __init__(self, out: trio.MemorySendChannel[bytes],
                 inp: trio.MemoryReceiveChannel[bytes]) -> None:
        self._out, self._inp = out, inp
        self.sent: list[bytes] = []

    async def send(self, payload: bytes) -> None:
        await trio.lowlevel.checkpoint()
        if len(payload) > transfer.MAX_FRAME:
            raise WireError(Reason.TOO_LARGE, "frame")
        try:
            self._out.send_nowait(bytes(payload))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
            raise WireError(Reason.TRUNCATED, "stream closed") from e
        self.sent.append(bytes(payload))

    async def receive(self, timeout: float) -> bytes:
        with trio.fail_after(timeout):
            try:
                return await self._inp.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError,
                    trio.BrokenResourceError) as e:
                raise WireError(Reason.TRUNCATED, "stream closed") from e

    async def close(self) -> None:
        self._out.close()
        self._inp.close()
        await trio.lowlevel.checkpoint()


def pipe() -> tuple[PipeEnd, PipeEnd]:
    a_out, b_in = trio.open_memory_channel[bytes](math.inf)
    b_out, a_in = trio.open_memory_channel[bytes](math.inf)
    return PipeEnd(a_out, a_in), PipeEnd(b_out, b_in)


Handler = Callable[[Exchange, str], Awaitable[None]]


class FakeSyncNet:
    """``open_sync(peer)`` runs ``peers[peer]`` (a scripted peer, or another service's
    ``serve``) on the far end of a pipe, as the sync stream handler would: a failure of
    the far side is recorded, never raised into the test."""

    def __init__(self, me: str, peers: dict[str, Handler] | None = None) -> None:
        self.me = me
        self.peers = peers or {}
        self.nursery: trio.Nursery | None = None
        self.far_errors: list[BaseException] = []
        self.far_ends: list[PipeEnd] = []

    def serve_sync(self, handle: Handler) -> None:
        pass

    async def open_sync(self, peer: str) -> Exchange:
        await trio.lowlevel.checkpoint()
        handler = self.peers.get(peer)
        if handler is None or self.nursery is None:
            raise TransportError(f"no sync stream to {peer}")
        mine, theirs = pipe()
        self.far_ends.append(theirs)
        self.nursery.start_soon(self._far, handler, theirs)
        return mine

    async def _far(self, handler: Handler, ex: PipeEnd) -> None:
        try:
            await handler(ex, self.me)
        except (WireError, trio.TooSlowError) as e:
            self.far_errors.append(e)
        finally:
            await ex.close()


class Wall:
    """A wall clock that stays where a test puts it."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class Node:
    """A LedgerService over the fakes, a real store, and what it refused."""

    def __init__(self, tmp: Path, name: str, held: list[tuple[Element, int]] | None = None,
                 roots: dict[int, bytes] | None = None, now: int = NOW) -> None:
        store = LedgerStore(tmp / f"{name}.db", P)
        if held:
            store.add(held, now)
        for e, root in (roots or {}).items():
            store.save_root(e, root, 0, 0)
        self.rejects: list[Reason] = []
        self.wall = Wall(now)
        self.t = 0.0
        self.gossip = FakeGossip(name)
        self.net = FakeSyncNet(name)
        self.registry = CollectorRegistry()
        self.svc = LedgerService(net=NET, params=P, store=store, gossip=self.gossip,
                                 topic=TOPIC, sync=self.net, wall_ms=self.wall,
                                 clock=lambda: self.t, rng=random.Random(0),
                                 metrics=LedgerMetrics(self.registry),
                                 reject=self.rejects.append)

    def state(self) -> tuple[Any, ...]:
        held = {i: s for i, (_, s) in self.svc.ledger.held.items()}
        stored = {e.id: s for e, s in self.svc.store.load()}
        assert stored == held  # what is held is what is durable
        return self.svc.ledger.fingerprint(), held, self.svc.store.count()

    def sessions(self, role: str, result: str) -> float:
        v = self.registry.get_sample_value("p2pnode_ledger_sync_sessions_total",
                                           {"role": role, "result": result})
        return v or 0.0


# The waits of RCN-9 (10 s a frame, 60 s a session), shortened for the tests of what
# happens when they run out. (The service runs parts of a session in threads, so trio's
# autojump clock would jump past the waits while a thread works.)
FRAME_S, SESSION_S = 0.4, 1.6


@pytest.fixture
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_service, "FRAME_TIMEOUT_S", FRAME_S)
    monkeypatch.setattr(ledger_service, "SESSION_TIMEOUT_S", SESSION_S)


def took(t0: float, wait: float) -> None:
    """The session ended when ``wait`` ran out: not before, and not long after."""
    elapsed = trio.current_time() - t0
    assert wait <= elapsed < wait + 2.0


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path, "victim", [(el(i), P.epoch(el(i).ts)) for i in range(20)])


# -- the ledger topic (LGR-16) --------------------------------------------------------------


@pytest.mark.parametrize(("data", "reason"), [
    pytest.param(forged_signature(POOL[200]), Reason.BAD_SIGNATURE, id="forged_signature"),
    pytest.param(signed_by_other(0), Reason.SIGNER_MISMATCH, id="not_the_requester"),
    pytest.param(credit_bytes(201, price=1 << 34), Reason.LIMIT_EXCEEDED, id="price"),
    pytest.param(credit_bytes(202, ts=NOW + 30_001), Reason.CLOCK_SKEW, id="future"),
    pytest.param(credit_bytes(203, net="othernet"), Reason.WRONG_NETWORK, id="network"),
    pytest.param(slash_bytes(), Reason.UNKNOWN_TYPE, id="slash"),
    pytest.param(b"\xff\x00garbage", Reason.INDEFINITE_LENGTH, id="garbage"),
    pytest.param(cbor.encode({"receipt": b"r", "job": b"j", "x": 0}), Reason.UNKNOWN_FIELD,
                 id="unknown_field"),
])
def test_the_validator_refuses_with_the_reason(node: Node, data: bytes, reason: Reason) -> None:
    before = node.state()
    verdict = node.svc.validate(None, data, "evil")
    assert verdict == Reject(reason, verdict.detail) and isinstance(verdict, Reject)
    assert node.rejects == [reason]
    assert node.state() == before
    # The service still takes a valid credit from the same forwarder afterwards.
    assert node.svc.validate(None, POOL[250], "evil") is ACCEPT
    assert el(250).id in node.svc.ledger and node.svc.store.count() == before[2] + 1
    assert node.rejects == [reason]


def test_a_duplicate_is_ignored(node: Node) -> None:
    assert node.svc.validate(None, POOL[100], "peer") is ACCEPT
    before = node.state()
    assert node.svc.validate(None, POOL[100], "peer") == Ignore(Reason.DUPLICATE)
    assert node.svc.validate(None, POOL[0], "other peer") == Ignore(Reason.DUPLICATE)
    assert node.rejects == [Reason.DUPLICATE, Reason.DUPLICATE]
    assert node.state() == before


def test_an_accepted_credit_is_durable_and_settles_now(node: Node) -> None:
    late = credit_bytes(210, ts=(EPOCH - 5) * P.epoch_len_ms)  # its epoch closed long ago
    assert node.svc.validate(None, late, "peer") is ACCEPT
    e = open_element(late, net=NET, now_ms=NOW)
    assert dict(node.svc.store.load())[e] == P.first_open(NOW)
    assert node.svc.ledger.late == 1


def test_a_forwarder_over_its_rate_is_ignored(node: Node) -> None:
    for i in range(20, 20 + ledger_service.LEDGER_BURST):
        assert node.svc.validate(None, POOL[i], "flood") is ACCEPT
    before = node.state()
    assert node.svc.validate(None, POOL[230], "flood") == Ignore(Reason.RATE_LIMITED)
    assert node.rejects == [Reason.RATE_LIMITED]
    assert node.state() == before
    assert node.svc.validate(None, POOL[230], "someone else") is ACCEPT
    node.t += 1.0  # a second later the forwarder may bring 50 more
    assert node.svc.validate(None, POOL[231], "flood") is ACCEPT


# -- the service as initiator, against a hostile responder ---------------------------------


Script = Callable[[Exchange, str], Awaitable[None]]


async def initiate(node: Node, script: Script) -> str:
    node.net.peers["evil"] = script
    with trio.fail_after(GUARD_S):  # a hang fails the test
        async with trio.open_nursery() as nursery:
            node.net.nursery = nursery
            result = await node.svc.sync_with("evil")
    return result


def answering(*frames: bytes) -> Script:
    """A responder that reads the hello, then sends ``frames`` and waits."""

    async def script(ex: Exchange, peer: str) -> None:
        await ex.receive(FOREVER)
        for f in frames:
            await ex.send(f)
        await ex.receive(FOREVER)  # until the initiator gives up and closes

    return script


def symbols(start: int, k: int, counts: list[int] | None = None) -> bytes:
    return encode_message(Batch(start, bytes(40 * k), tuple(counts or [0] * k)))


@pytest.mark.parametrize(("frames", "reason"), [
    pytest.param([b"\xff garbage"], Reason.INDEFINITE_LENGTH, id="not_cbor"),
    pytest.param([b"\x00" * 64], Reason.TRAILING_BYTES, id="zeros"),
    pytest.param([cbor.encode([1, 2])], Reason.BAD_FIELD, id="a_list"),
    pytest.param([cbor.encode({"t": "sync.nope"})], Reason.UNKNOWN_TYPE, id="unknown_t"),
    pytest.param([encode_message(More(0, 32))], Reason.BAD_STATE, id="a_more"),
    pytest.param([encode_message(Hello(3, bytes(16)))], Reason.BAD_STATE, id="a_hello"),
    pytest.param([encode_message(Want((bytes(32),)))], Reason.BAD_STATE, id="a_want"),
    pytest.param([transfer.encode_ack(0)], Reason.BAD_STATE, id="an_ack"),
    pytest.param([transfer.encode_item(POOL[0], 0)], Reason.BAD_STATE, id="an_item"),
    pytest.param([cbor.encode({"t": "sync.symbols", "from": 0, "sym": b"", "cnt": []})],
                 Reason.BAD_FIELD, id="no_symbols"),
    pytest.param([symbols(1 << 62, 32)], Reason.BAD_FIELD, id="huge_from"),
    pytest.param([symbols(0, 32, [1 << 41] + [0] * 31)], Reason.BAD_FIELD, id="huge_count"),
    pytest.param([encode_message(Batch(0, bytes(40 * 4097), (0,) * 4097))], Reason.BAD_FIELD,
                 id="too_many_symbols"),
    pytest.param([symbols(0, 1, [20])], Reason.BAD_FIELD, id="fewer_than_asked"),
    pytest.param([encode_message(Batch(0, bytes(39 * 32), (0,) * 32))], Reason.BAD_FIELD,
                 id="short_sym"),
    pytest.param([cbor.encode({"t": "sync.symbols", "from": 0, "sym": bytes(40),
                               "cnt": [0], "x": 1})], Reason.UNKNOWN_FIELD, id="extra_key"),
])
async def test_a_hostile_responder_ends_the_session_with_its_reason(
        node: Node, frames: list[bytes], reason: Reason) -> None:
    before = node.state()
    result = await initiate(node, answering(*frames))
    assert result == reason.value
    assert node.rejects == [reason]
    assert node.state() == before
    assert node.sessions("initiator", reason.value) == 1
    assert not node.svc._sessions_to  # a later session to the peer may start


async def test_a_responder_that_hangs_up_is_truncated(node: Node) -> None:
    async def hang_up(ex: Exchange, peer: str) -> None:
        await ex.receive(FOREVER)

    before = node.state()
    assert await initiate(node, hang_up) == Reason.TRUNCATED.value
    assert node.state() == before


async def test_an_unreachable_peer(node: Node) -> None:
    async with trio.open_nursery() as nursery:
        node.net.nursery = nursery
        assert await node.svc.sync_with("nobody") == "unreachable"
    assert node.rejects == []


def random_batches(n_r: int, seed: int) -> tuple[Script, list[int]]:
    """A responder whose symbols are random bytes with counts a set of ``n_r`` could have
    (symbol 0 holds all of them, symbol i about 2/(i + 2)); it answers every sync.more
    with exactly the batch asked, for ever. The batch sizes it sent are kept."""
    rnd = random.Random(seed)
    sizes: list[int] = []

    def batch(start: int, k: int) -> bytes:
        counts = [n_r if start + j == 0 else rnd.randint(0, max(1, 2 * n_r // (start + j + 2)))
                  for j in range(k)]
        return encode_message(Batch(start, rnd.randbytes(40 * k), tuple(counts)))

    async def script(ex: Exchange, peer: str) -> None:
        hello = reconcile.decode_message(await ex.receive(FOREVER))
        assert isinstance(hello, Hello)
        k = first_batch(hello.n, n_r)
        sizes.append(k)
        await ex.send(batch(0, k))
        while True:
            more = reconcile.decode_message(await ex.receive(FOREVER))
            assert isinstance(more, More)
            sizes.append(more.count)
            await ex.send(batch(more.start, more.count))

    return script, sizes


def batches_to_limit(n_i: int, n_r: int) -> int:
    limit, m = max_symbols(n_i, n_r), first_batch(n_i, n_r)
    rounds = 1
    while next_batch(m, limit):
        m += next_batch(m, limit)
        rounds += 1
    return rounds


@pytest.mark.parametrize("n_r", [0, 1, 20, 700, 5000])
@pytest.mark.parametrize("seed", [0, 1])
async def test_symbols_that_never_decode_end_at_the_limit(node: Node, n_r: int,
                                                          seed: int) -> None:
    before = node.state()
    script, sizes = random_batches(n_r, seed)
    result = await initiate(node, script)
    assert result in (Reason.LIMIT_EXCEEDED.value, Reason.BAD_FIELD.value)
    n_i = len(node.svc.ledger)
    limit = min(1 << 18, 2 * (n_i + n_r) + 1024)  # RCN-6, written out
    if result == Reason.LIMIT_EXCEEDED.value:  # undecoded: it asked for exactly the limit
        assert sum(sizes) == limit and len(sizes) == batches_to_limit(n_i, n_r)
    else:  # random symbols peeled into a key the initiator holds: refused on the spot
        assert sum(sizes) < limit
    assert node.state() == before
    assert node.rejects == [Reason(result)]


async def test_symbols_that_never_decode_cost_at_most_the_session_limit(node: Node) -> None:
    # Plausible counts and uniform random sums: nothing ever peels, so the session runs to
    # exactly its limit and stops there.
    script, sizes = random_batches(1000, 7)
    assert await initiate(node, script) == Reason.LIMIT_EXCEEDED.value
    assert sum(sizes) == max_symbols(len(node.svc.ledger), 1000)
    assert len(sizes) == batches_to_limit(len(node.svc.ledger), 1000)


async def test_symbols_decoding_to_a_key_the_initiator_holds_are_refused(node: Node) -> None:
    # The responder's symbols are those of the initiator's set without its first key, with
    # 2 added to that key's counts: the difference peels to that key as one only the
    # responder holds, though the initiator holds it.
    keys = node.svc._keys()

    async def script(ex: Exchange, peer: str) -> None:
        hello = reconcile.decode_message(await ex.receive(FOREVER))
        assert isinstance(hello, Hello)
        k = first_batch(hello.n, len(keys) + 1)
        syms = riblt.Encoder(keys[1:]).extend(k)
        cnt = syms.count.tolist()
        for j in riblt.indices(keys[0], k):
            cnt[j] += 2
        await ex.send(encode_message(Batch(0, syms.to_bytes(), tuple(cnt))))
        await ex.receive(FOREVER)

    before = node.state()
    assert await initiate(node, script) == Reason.BAD_FIELD.value
    assert node.state() == before


async def test_a_silent_responder_times_out_after_one_frame_wait(
        node: Node, short_waits: None) -> None:
    async def silent(ex: Exchange, peer: str) -> None:
        await ex.receive(FOREVER)
        await ex.receive(FOREVER)  # nothing comes until the initiator closes

    before, t0 = node.state(), trio.current_time()
    assert await initiate(node, silent) == "timeout"
    took(t0, FRAME_S)
    assert node.rejects == [Reason.TRUNCATED]
    assert node.state() == before
    assert node.sessions("initiator", "timeout") == 1


async def test_a_slow_responder_is_cut_off_at_the_session_limit(
        node: Node, short_waits: None) -> None:
    # Each batch comes just before the frame wait runs out, and the batches never decode:
    # the session's own bound (RCN-9) ends it.
    rnd = random.Random(3)

    async def slow(ex: Exchange, peer: str) -> None:
        hello = reconcile.decode_message(await ex.receive(FOREVER))
        assert isinstance(hello, Hello)
        k, start = first_batch(hello.n, 1 << 40), 0
        while True:
            await trio.sleep(FRAME_S / 5)  # well within each frame wait
            cnt = [1 << 40 if start == 0 else 0] + [0] * (k - 1)
            await ex.send(encode_message(Batch(start, rnd.randbytes(40 * k), tuple(cnt))))
            more = reconcile.decode_message(await ex.receive(FOREVER))
            assert isinstance(more, More)
            start, k = more.start, more.count

    before, t0 = node.state(), trio.current_time()
    assert await initiate(node, slow) == "timeout"
    took(t0, SESSION_S)
    assert node.state() == before


def responder_script(keys: list[bytes], items: Callable[[list[bytes]], list[bytes]],
                     ack: Callable[[int], int], got: list[bytes] | None = None) -> Script:
    """A responder that reconciles honestly over ``keys``, reads the initiator's items
    (into ``got``), then sends ``items(wanted)`` and an ack of ``ack(items read)``."""

    async def script(ex: Exchange, peer: str) -> None:
        m = Responder(keys)
        while not m.done:
            for out in m.receive(await ex.receive(FOREVER)):
                await ex.send(out)
        for _ in range(m.have or 0):
            item = transfer.decode_item(await ex.receive(FOREVER))
            if got is not None:
                got.append(item.element)
        for data in items(m.wanted):
            await ex.send(data)
        if m.have is not None:
            await ex.send(transfer.encode_ack(ack(m.have)))
        await ex.receive(FOREVER)

    return script


async def test_an_ack_of_more_than_was_sent_is_refused(node: Node) -> None:
    keys = node.svc._keys()[5:]  # the responder lacks 5 of ours
    result = await initiate(node, responder_script(keys, lambda w: [], lambda n: n + 1))
    assert result == Reason.BAD_FIELD.value
    assert node.rejects == [Reason.BAD_FIELD]


async def test_invalid_items_from_a_responder_are_dropped(node: Node) -> None:
    # The responder advertises 4 keys we lack and sends 2 valid elements and 2 forged ones.
    keys = node.svc._keys()
    good = [el(30), el(31)]
    fake_keys = [hashlib.sha256(b"fake %d" % i).digest() for i in range(2)]
    theirs = sorted(keys + [g.key for g in good] + fake_keys)
    bad = [forged_signature(POOL[32]), credit_bytes(33, ts=NOW + 60_000)]

    def items(wanted: list[bytes]) -> list[bytes]:
        assert sorted(wanted) == sorted([g.key for g in good] + fake_keys)
        return [transfer.encode_item(x, EPOCH - 1) for x in [bad[0], good[0].raw, bad[1],
                                                             good[1].raw]]

    before = node.state()
    assert await initiate(node, responder_script(theirs, items, lambda n: n)) == "merged"
    assert sorted(node.rejects) == sorted([Reason.BAD_SIGNATURE, Reason.CLOCK_SKEW])
    held = node.state()[1]
    assert set(held) == set(before[1]) | {g.id for g in good}
    assert all(held[g.id] == max(P.epoch(g.ts), EPOCH - 1) for g in good)


# -- the service as responder, against a hostile initiator ---------------------------------


async def respond(node: Node, script: Callable[[PipeEnd], Awaitable[None]]
                  ) -> BaseException | None:
    """Run ``node``'s ``serve`` on one end of a pipe and ``script`` on the other; what
    ``serve`` raised, if anything."""
    mine, theirs = pipe()
    raised: list[BaseException] = []

    async def serving() -> None:
        try:
            await node.svc.serve(theirs, "evil")
        except (WireError, trio.TooSlowError) as e:
            raised.append(e)
        finally:
            await theirs.close()

    with trio.fail_after(GUARD_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serving)
            await script(mine)
    return raised[0] if raised else None


async def first_symbols(ex: PipeEnd, n: int) -> Batch:
    await ex.send(encode_message(Hello(n, bytes(16))))
    batch = reconcile.decode_message(await ex.receive(FOREVER))
    assert isinstance(batch, Batch)
    return batch


async def until_closed(ex: PipeEnd) -> None:
    with pytest.raises(WireError) as e:
        await ex.receive(FOREVER)
    assert e.value.reason is Reason.TRUNCATED


def refused_with(node: Node, raised: BaseException | None, reason: Reason) -> None:
    """The session ended refused with ``reason``: counted once, and the result of the
    responder's session (the shell closes the stream)."""
    assert raised is None
    assert node.rejects == [reason]
    assert node.sessions("responder", reason.value) == 1


async def test_a_want_of_ids_not_held_is_refused(node: Node) -> None:
    async def script(ex: PipeEnd) -> None:
        batch = await first_symbols(ex, 25)
        assert batch.cnt[0] == 20  # symbol 0 holds every key of the responder
        await ex.send(encode_message(Want((hashlib.sha256(b"not held").digest(),))))
        await until_closed(ex)

    before = node.state()
    refused_with(node, await respond(node, script), Reason.BAD_FIELD)
    assert node.state() == before


async def test_wants_out_of_order_across_messages_are_refused(node: Node) -> None:
    keys = node.svc._keys()

    async def script(ex: PipeEnd) -> None:
        await first_symbols(ex, 3)
        await ex.send(encode_message(Want((keys[5],))))
        await ex.send(encode_message(Want((keys[2],))))  # held, but not increasing
        await until_closed(ex)

    refused_with(node, await respond(node, script), Reason.BAD_FIELD)


@pytest.mark.parametrize("have", [0, 4, 6, 1 << 40])
async def test_an_end_whose_have_does_not_square_is_refused(node: Node, have: int) -> None:
    # n_I = 25 and nothing wanted: have must be 25 - 20 = 5.
    async def script(ex: PipeEnd) -> None:
        await first_symbols(ex, 25)
        await ex.send(encode_message(End(have)))
        await until_closed(ex)

    before = node.state()
    refused_with(node, await respond(node, script), Reason.BAD_FIELD)
    assert node.state() == before


async def test_an_end_with_a_have_beyond_any_set_is_refused(node: Node) -> None:
    async def script(ex: PipeEnd) -> None:
        await first_symbols(ex, 25)
        await ex.send(cbor.encode({"t": "sync.end", "have": (1 << 40) + 1}))
        await until_closed(ex)

    refused_with(node, await respond(node, script), Reason.BAD_FIELD)


@pytest.mark.parametrize(("more", "reason"), [
    (More(1, 32), Reason.BAD_FIELD),  # not from the symbols received
    (More(32, 33), Reason.BAD_FIELD),  # not the next batch
    (More(32, 4096), Reason.LIMIT_EXCEEDED),  # past the session's limit
])
async def test_a_more_that_is_not_the_next_batch_is_refused(node: Node, more: More,
                                                             reason: Reason) -> None:
    async def script(ex: PipeEnd) -> None:
        assert len((await first_symbols(ex, 21)).cnt) == 32
        await ex.send(encode_message(more))
        await until_closed(ex)

    refused_with(node, await respond(node, script), reason)


async def test_an_initiator_that_asks_until_the_limit_is_refused_there(node: Node) -> None:
    # n_I = 0, n_R = 20: the limit is 2 * 20 + 1024 = 1064 symbols.
    async def script(ex: PipeEnd) -> None:
        m = len((await first_symbols(ex, 0)).cnt)
        limit = max_symbols(0, 20)
        while next_batch(m, limit):
            k = next_batch(m, limit)
            await ex.send(encode_message(More(m, k)))
            batch = reconcile.decode_message(await ex.receive(FOREVER))
            assert isinstance(batch, Batch) and batch.start == m and len(batch.cnt) == k
            m += k
        assert m == limit
        await ex.send(encode_message(More(m, 32)))
        await until_closed(ex)

    refused_with(node, await respond(node, script), Reason.LIMIT_EXCEEDED)


def initiator_keys(node: Node, extra: list[bytes], lacking: int) -> list[bytes]:
    """The responder's keys without its first ``lacking``, with ``extra``."""
    return sorted(node.svc._keys()[lacking:] + extra)


async def reconcile_as_initiator(ex: PipeEnd, keys: list[bytes]) -> reconcile.Initiator:
    m = reconcile.Initiator(keys)
    await ex.send(m.start())
    while not m.done:
        for out in m.receive(await ex.receive(FOREVER)):
            await ex.send(out)
    return m


async def test_invalid_items_are_dropped_counted_and_not_acked(node: Node) -> None:
    valid = [el(40), el(41), el(42)]
    invalid = [forged_signature(POOL[43]), credit_bytes(44, net="othernet"), b"\xff junk",
               credit_bytes(45, ts=NOW + 30_001), signed_by_other(1), slash_bytes()[:-3]]
    extra = [v.key for v in valid] + [hashlib.sha256(b"x%d" % i).digest()
                                      for i in range(len(invalid))]
    wanted_ids = node.svc._keys()[:2]
    raw_of = {e.key: e.raw for e in map(el, range(20))}
    got: dict[str, Any] = {}

    async def script(ex: PipeEnd) -> None:
        m = await reconcile_as_initiator(ex, initiator_keys(node, extra, 2))
        assert m.missing == wanted_ids and len(m.extra) == len(extra)
        items = [*invalid[:3], *[v.raw for v in valid], *invalid[3:]]
        for i, data in enumerate(items):
            await ex.send(transfer.encode_item(data, EPOCH - 2 + i % 2))
        got["items"] = [transfer.decode_item(await ex.receive(FOREVER)) for _ in wanted_ids]
        got["ack"] = transfer.decode_ack(await ex.receive(FOREVER), len(items))
        await until_closed(ex)

    before = node.state()
    assert await respond(node, script) is None
    assert got["ack"] == len(valid)
    assert sorted(node.rejects) == sorted([
        Reason.BAD_SIGNATURE, Reason.WRONG_NETWORK, Reason.INDEFINITE_LENGTH,
        Reason.CLOCK_SKEW, Reason.SIGNER_MISMATCH, Reason.TRUNCATED])
    _, held, count = node.state()
    assert set(held) == set(before[1]) | {v.id for v in valid}
    assert count == before[2] + len(valid)
    # The wanted elements came with the settlements this node holds them in.
    assert [(i.element, i.settle) for i in got["items"]] == [
        (raw_of[k], node.svc.ledger.held[CID_PREFIX + k][1]) for k in wanted_ids]
    assert node.sessions("responder", "merged") == 1


async def test_a_frame_that_is_not_an_item_ends_the_session_keeping_what_came(
        node: Node) -> None:
    new = el(50)

    async def script(ex: PipeEnd) -> None:
        await reconcile_as_initiator(ex, initiator_keys(node, [new.key, bytes(32)], 0))
        await ex.send(transfer.encode_item(new.raw, EPOCH))
        await ex.send(transfer.encode_ack(1))  # instead of the second item
        await until_closed(ex)

    refused_with(node, await respond(node, script), Reason.BAD_STATE)
    assert new.id in node.state()[1]  # acknowledged or not, it is durable


async def test_an_item_with_an_absurd_settlement_is_refused(node: Node) -> None:
    new = el(51)

    async def script(ex: PipeEnd) -> None:
        await reconcile_as_initiator(ex, initiator_keys(node, [new.key], 0))
        await ex.send(cbor.encode({"t": "sync.item", "el": new.raw,
                                   "settle": transfer.MAX_EPOCH + 1}))
        await until_closed(ex)

    before = node.state()
    refused_with(node, await respond(node, script), Reason.BAD_FIELD)
    assert node.state() == before


async def test_an_initiator_that_announces_items_and_sends_none_times_out(
        node: Node, short_waits: None) -> None:
    # A hello with a huge n, then an end that squares with it: the responder waits for the
    # first item no longer than one frame wait.
    async def script(ex: PipeEnd) -> None:
        await first_symbols(ex, 1 << 40)
        await ex.send(encode_message(End((1 << 40) - 20)))
        await until_closed(ex)

    before, t0 = node.state(), trio.current_time()
    raised = await respond(node, script)
    assert isinstance(raised, trio.TooSlowError)
    took(t0, FRAME_S)
    assert node.state() == before


async def test_a_silent_initiator_times_out(node: Node, short_waits: None) -> None:
    async def script(ex: PipeEnd) -> None:
        await until_closed(ex)

    t0 = trio.current_time()
    assert isinstance(await respond(node, script), trio.TooSlowError)
    took(t0, FRAME_S)


# -- honest services converge --------------------------------------------------------------


def two_nodes(tmp: Path, a_held: list[tuple[Element, int]], b_held: list[tuple[Element, int]],
              a_roots: dict[int, bytes] | None = None) -> tuple[Node, Node]:
    a = Node(tmp, "a", a_held, roots=a_roots)
    b = Node(tmp, "b", b_held)
    a.net.peers["b"] = b.svc.serve
    b.net.peers["a"] = a.svc.serve
    return a, b


async def sync(a: Node, b: Node) -> str:
    with trio.fail_after(GUARD_S):
        async with trio.open_nursery() as nursery:
            a.net.nursery = b.net.nursery = nursery
            result = await a.svc.sync_with("b")
    assert a.net.far_errors == []
    return result


async def test_two_honest_services_converge_with_their_settlements(tmp_path: Path) -> None:
    common = [(el(i), P.epoch(el(i).ts)) for i in range(30)]
    # Each also holds elements the other lacks, some of them settled late.
    only_a = [(el(i), P.epoch(el(i).ts) + i % 2) for i in range(30, 45)]
    only_b = [(el(i), P.epoch(el(i).ts) + i % 3) for i in range(45, 70)]
    a, b = two_nodes(tmp_path, common + only_a, common + only_b)
    assert await sync(a, b) == "merged"
    want = {e.id: s for e, s in common + only_a + only_b}
    assert a.state() == b.state()
    assert a.state()[1] == want
    # By gossip they would have settled now; a sync item carries the sender's epoch.
    assert all(s < P.first_open(NOW) for s in want.values())
    for e in range(EPOCH - 4, EPOCH + 1):
        assert a.svc.ledger.tree(e).root == b.svc.ledger.tree(e).root
    assert a.sessions("initiator", "merged") == 1 and b.sessions("responder", "merged") == 1
    assert a.rejects == [] and b.rejects == []
    # Once equal, a session is one round trip.
    assert await sync(a, b) == "same"
    assert b.sessions("responder", "same") == 1
    assert a.state() == b.state()


async def test_a_session_never_moves_a_settlement_into_a_frozen_epoch(tmp_path: Path) -> None:
    # a has fixed its roots through EPOCH - 2: what b settled in EPOCH - 3 or - 2 settles
    # in EPOCH - 1 at a; b learns a's elements with a's settlements.
    frozen = EPOCH - 2
    only_b = [(el(i), P.epoch(el(i).ts)) for i in range(60, 72)]
    only_a = [(el(i), frozen + 1) for i in range(72, 80)]
    a, b = two_nodes(tmp_path, only_a, only_b, a_roots={frozen: bytes(32)})
    assert a.svc.ledger.frozen == frozen
    assert await sync(a, b) == "merged"
    held_a, held_b = a.state()[1], b.state()[1]
    assert set(held_a) == set(held_b)
    for e, s in only_b:
        assert held_a[e.id] == max(s, frozen + 1) and held_b[e.id] == s
    for e, s in only_a:
        assert held_b[e.id] == s


async def test_a_responder_gives_at_most_one_sessions_items(tmp_path: Path,
                                                            monkeypatch: Any) -> None:
    # RCN-8: at most MAX_SESSION_ITEMS go each way; the rest waits for the next session.
    monkeypatch.setattr(transfer, "MAX_SESSION_ITEMS", 8)
    a, b = two_nodes(tmp_path, [], [(el(i), P.epoch(el(i).ts)) for i in range(20)])
    assert await sync(a, b) == "merged"
    assert len(a.svc.ledger) == 8
    assert await sync(a, b) == "merged"
    assert await sync(a, b) == "merged"
    assert await sync(a, b) == "same"
    assert a.state() == b.state()
