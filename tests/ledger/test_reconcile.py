"""sync/1 sessions: outcomes, byte cost, the message codecs and hostile peers."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pnode.ledger import riblt
from p2pnode.ledger.bench_reconcile import reconcile_figures, replicas
from p2pnode.ledger.reconcile import (
    MAX_BATCH,
    MAX_SYNC_MESSAGE,
    MAX_WANT,
    MIN_BATCH,
    Batch,
    End,
    Hello,
    Initiator,
    Message,
    More,
    Responder,
    Same,
    Want,
    decode_message,
    encode_message,
    fingerprint,
    first_batch,
    max_symbols,
    next_batch,
    run_session,
)
from p2pnode.wire import cbor
from p2pnode.wire.reasons import Reason, WireError


def keyset(count: int, tag: bytes = b"k") -> list[bytes]:
    return [hashlib.sha256(tag + i.to_bytes(8, "little")).digest() for i in range(count)]


def check_session(ki: list[bytes], kr: list[bytes]) -> None:
    r = run_session(ki, kr)
    assert r.missing == sorted(set(kr) - set(ki))
    assert r.extra == sorted(set(ki) - set(kr))
    assert r.wanted == r.missing
    assert r.same == (set(ki) == set(kr))
    assert r.total_bytes == sum(len(m) for _, m in r.transcript)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 300), st.integers(0, 300), st.integers(0, 300), st.binary(max_size=4))
def test_sessions_find_the_difference(common: int, only_i: int, only_r: int, tag: bytes) -> None:
    keys = keyset(common + only_i + only_r, tag)
    check_session(keys[:common + only_i], keys[:common] + keys[common + only_i:])


@settings(max_examples=25, deadline=None)
@given(st.sets(st.binary(min_size=32, max_size=32), max_size=80), st.data())
def test_sessions_on_arbitrary_keys(pool: set[bytes], data: st.DataObject) -> None:
    keys = sorted(pool)
    side = data.draw(st.lists(st.sampled_from("ir2"), min_size=len(keys), max_size=len(keys)))
    check_session([k for k, s in zip(keys, side, strict=True) if s != "r"],
                  [k for k, s in zip(keys, side, strict=True) if s != "i"])


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2000), st.binary(max_size=4))
def test_identical_sets_take_one_round_trip(n: int, tag: bytes) -> None:
    keys = keyset(n, tag)
    r = run_session(keys, reversed(keys))
    assert r.same and r.rounds == 1 and not r.missing and not r.extra
    assert [d for d, _ in r.transcript] == ["i>r", "r>i"]
    assert decode_message(r.transcript[1][1]) == Same()
    assert r.total_bytes < 1000


@pytest.mark.parametrize(("ni", "nr"), [(0, 1), (1, 0), (0, 1500), (1500, 0), (1, 1)])
def test_small_and_one_sided(ni: int, nr: int) -> None:
    keys = keyset(ni + nr, b"os")
    check_session(keys[:ni], keys[ni:])


def test_many_wants_are_split() -> None:
    keys = keyset(2500, b"w")
    r = run_session(keys[:200], keys)
    wants = [decode_message(m) for d, m in r.transcript if d == "i>r"][-4:]
    assert [type(w) for w in wants] == [Want, Want, Want, End]
    assert [len(w.ids) for w in wants[:3] if isinstance(w, Want)] == [MAX_WANT, MAX_WANT, 252]
    assert r.missing == sorted(keys[200:]) and r.wanted == r.missing


def test_transcript_is_deterministic_and_alternates() -> None:
    ki, kr = replicas(3000, 100, 5, "scattered")
    a, b = run_session(ki, kr), run_session(set(ki), kr)
    assert a.transcript == b.transcript
    types = [type(decode_message(m)) for _, m in a.transcript]
    assert types[:2] == [Hello, Batch] and types[-1] == End
    assert a.rounds == sum(t is Batch for t in types)
    assert all(t is More for t in types[2:-2:2])
    assert a.bytes_i2r + a.bytes_r2i == a.total_bytes


def test_byte_cost_scattered() -> None:
    ki, kr = replicas(20_000, 200, 3, "scattered")
    r = run_session(ki, kr)
    assert len(r.missing) == len(r.extra) == 100
    assert r.total_bytes / 200 < 120
    same = run_session(ki, ki)
    assert same.rounds == 1 and same.total_bytes < 1000


def test_bench_figures_small() -> None:
    fig = reconcile_figures(n=4000, diff=100, seed=2)
    cases = {c["case"]: c for c in fig["reconcile"]}
    assert set(cases) == {"newest", "scattered"}
    for c in cases.values():
        assert c["n"] == 4000 and c["diff"] == 100 and c["full_bytes"] == 128_000
        assert c["bytes_per_diff"] == c["bytes"] / 100 < 130
        assert c["ratio"] == c["bytes"] / 128_000 and c["rounds"] >= 1
    assert fig["identical"]["rounds"] == 1 and fig["identical"]["bytes"] < 1000


def test_batch_sizes() -> None:
    assert first_batch(10, 10) == MIN_BATCH and first_batch(0, 101) == 152
    assert first_batch(10**6, 0) == MAX_BATCH
    assert [next_batch(m, 10**6) for m in (32, 64, 96, 9000)] == [32, 32, 48, MAX_BATCH]
    assert next_batch(1000, 1010) == 10 and next_batch(1010, 1010) == 0
    assert max_symbols(1, 1) == 1028 and max_symbols(10**6, 10**6) == 1 << 18


# --- codecs --------------------------------------------------------------------------------

MESSAGES: list[Message] = [
    Hello(7, bytes(16)), Same(), Batch(0, bytes(80), (3, 0)), More(64, 32),
    Want((bytes(32), b"\x01" * 32)), End(5),
]


@pytest.mark.parametrize("msg", MESSAGES)
def test_messages_round_trip(msg: Message) -> None:
    data = encode_message(msg)
    assert decode_message(data) == msg
    assert cbor.encode(cbor.decode(data)) == data


def raw(**fields: object) -> bytes:
    return cbor.encode(fields)


@pytest.mark.parametrize(("data", "reason"), [
    (b"\xff", Reason.INDEFINITE_LENGTH),
    (b"", Reason.TRUNCATED),
    (b"\x00", Reason.BAD_FIELD),
    (raw(t=1), Reason.BAD_FIELD),
    (raw(t="sync.nope"), Reason.UNKNOWN_TYPE),
    (raw(t="sync.same", x=1), Reason.UNKNOWN_FIELD),
    (raw(t="sync.hello", n=1), Reason.BAD_FIELD),
    (raw(t="sync.hello", n=(1 << 40) + 1, fp=bytes(16)), Reason.BAD_FIELD),
    (raw(t="sync.hello", n=1, fp=bytes(15)), Reason.BAD_FIELD),
    (raw(t="sync.more", **{"from": 0}, count=0), Reason.BAD_FIELD),
    (raw(t="sync.more", **{"from": 0}, count=MAX_BATCH + 1), Reason.BAD_FIELD),
    (raw(t="sync.more", **{"from": -1}, count=32), Reason.BAD_FIELD),
    (raw(t="sync.symbols", **{"from": 0}, sym=bytes(79), cnt=[1, 1]), Reason.BAD_FIELD),
    (raw(t="sync.symbols", **{"from": 0}, sym=b"", cnt=[]), Reason.BAD_FIELD),
    (raw(t="sync.symbols", **{"from": 0}, sym=bytes(40), cnt=[-1]), Reason.BAD_FIELD),
    (raw(t="sync.symbols", **{"from": 0}, sym=bytes(40), cnt=[(1 << 40) + 1]), Reason.BAD_FIELD),
    (raw(t="sync.want", ids=[]), Reason.BAD_FIELD),
    (raw(t="sync.want", ids=[b"\x01" * 32, bytes(32)]), Reason.BAD_FIELD),
    (raw(t="sync.want", ids=[bytes(32)] * 2), Reason.BAD_FIELD),
    (raw(t="sync.want", ids=[bytes(31)]), Reason.BAD_FIELD),
    (raw(t="sync.end", have="1"), Reason.BAD_FIELD),
    (bytes(MAX_SYNC_MESSAGE + 1), Reason.TOO_LARGE),
])
def test_decoder_refuses(data: bytes, reason: Reason) -> None:
    with pytest.raises(WireError) as e:
        decode_message(data)
    assert e.value.reason == reason


def test_largest_batch_fits() -> None:
    big = Batch(0, bytes(40 * MAX_BATCH), (1 << 40,) * MAX_BATCH)
    assert len(encode_message(big)) <= MAX_SYNC_MESSAGE
    assert decode_message(encode_message(big)) == big


# --- hostile peers -------------------------------------------------------------------------

def refused(machine: Initiator | Responder, msg: Message | bytes, reason: Reason) -> None:
    with pytest.raises(WireError) as e:
        machine.receive(msg if isinstance(msg, bytes) else encode_message(msg))
    assert e.value.reason == reason
    with pytest.raises(WireError) as e:  # a failed machine takes nothing more
        machine.receive(encode_message(Same()))
    assert e.value.reason == Reason.BAD_STATE


def opened(keys_i: list[bytes], keys_r: list[bytes]) -> tuple[Initiator, Responder, Batch]:
    ini, res = Initiator(keys_i), Responder(keys_r)
    [first] = res.receive(ini.start())
    batch = decode_message(first)
    assert isinstance(batch, Batch)
    return ini, res, batch


K = keyset(60, b"h")


def test_initiator_refuses_bad_batches() -> None:
    _, _, b = opened(K[:40], K[20:])
    cases: list[tuple[Message | bytes, Reason]] = [
        (Batch(1, b.sym, b.cnt), Reason.BAD_FIELD),  # wrong from
        (Batch(0, b.sym[:-40], b.cnt[:-1]), Reason.BAD_FIELD),  # not the size asked
        (More(0, 32), Reason.BAD_STATE),
        (Hello(1, bytes(16)), Reason.BAD_STATE),
        (b"\x81\x00", Reason.BAD_FIELD),
    ]
    for bad, reason in cases:
        ini = Initiator(K[:40])
        ini.start()
        refused(ini, bad, reason)
    refused(Initiator(K), Same(), Reason.BAD_STATE)  # before start


def test_initiator_refuses_a_batch_once_done() -> None:
    ini, _, b = opened(K[:40], K[1:41])
    out = ini.receive(encode_message(b))
    assert ini.done and [type(decode_message(m)) for m in out] == [Want, End]
    refused(ini, b, Reason.BAD_STATE)


def test_initiator_refuses_symbols_contradicting_its_set() -> None:
    ini = Initiator(K)
    ini.start()
    mine = riblt.Encoder(K).extend(MIN_BATCH)
    k = K[3]  # claim that only the responder holds a key the initiator holds
    words = bytearray(mine.to_bytes())
    at = 40 * 5
    x = int.from_bytes(words[at:at + 32], "little") ^ int.from_bytes(k, "little")
    c = int.from_bytes(words[at + 32:at + 40], "little") ^ riblt.check(k)
    words[at:at + 40] = x.to_bytes(32, "little") + c.to_bytes(8, "little")
    cnt = list(mine.count.tolist())
    cnt[5] += 1
    refused(ini, Batch(0, bytes(words), tuple(cnt)), Reason.BAD_FIELD)


def test_initiator_gives_up_on_symbols_that_never_decode() -> None:
    ini = Initiator(K[:10])
    ini.start()
    n_r = 50
    limit = max_symbols(10, n_r)
    msg: Message = Batch(0, bytes(40 * first_batch(10, n_r)),
                         (n_r,) + (7,) * (first_batch(10, n_r) - 1))
    rounds = 0
    with pytest.raises(WireError) as e:
        while True:
            rounds += 1
            assert rounds < 100
            [more] = ini.receive(encode_message(msg))
            req = decode_message(more)
            assert isinstance(req, More) and req.start + req.count <= limit
            msg = Batch(req.start, bytes(40 * req.count), (7,) * req.count)
    assert e.value.reason == Reason.LIMIT_EXCEEDED
    assert ini.rounds == rounds and rounds <= 20


def test_responder_refuses_bad_requests() -> None:
    cases: list[tuple[Message, Reason]] = [
        (More(0, 32), Reason.BAD_FIELD),  # wrong from
        (More(MIN_BATCH, 40), Reason.BAD_FIELD),  # not the next batch
        (Hello(40, bytes(16)), Reason.BAD_STATE),
        (Want((K[0],)), Reason.BAD_FIELD),  # not held
        (End(3), Reason.BAD_FIELD),  # does not square with n and the wants
        (Same(), Reason.BAD_STATE),
    ]
    for bad, reason in cases:
        _, res, _ = opened(K[:40], K[20:])
        refused(res, bad, reason)
    _, res, _ = opened(K[:40], K[20:])
    res.receive(encode_message(Want((max(K[20:]),))))
    refused(res, Want((min(K[20:]),)), Reason.BAD_FIELD)  # ids increase across messages
    refused(Responder(K), More(0, 32), Reason.BAD_STATE)
    refused(Responder(K), End(0), Reason.BAD_STATE)


def test_responder_refuses_more_after_want_and_after_end() -> None:
    _, res, _ = opened(K[:40], K[20:])
    res.receive(encode_message(Want((K[45],))))
    refused(res, More(MIN_BATCH, MIN_BATCH), Reason.BAD_STATE)
    ini, res, b = opened(K[:40], K[2:42])
    for m in ini.receive(encode_message(b)):
        assert res.receive(m) == []
    assert res.done and res.have == 2 and res.wanted == sorted(K[40:42])
    refused(res, Want((K[45],)), Reason.BAD_STATE)


def test_responder_enforces_max_symbols() -> None:
    res = Responder(K[:1])
    res.receive(encode_message(Hello(1, bytes(16))))
    limit, m = max_symbols(1, 1), MIN_BATCH
    while m < limit:
        k = next_batch(m, limit)
        [out] = res.receive(encode_message(More(m, k)))
        got = decode_message(out)
        assert isinstance(got, Batch) and got.start == m and len(got.cnt) == k
        m += k
    assert m == limit
    refused(res, More(m, MIN_BATCH), Reason.LIMIT_EXCEEDED)


def test_keys_are_checked() -> None:
    with pytest.raises(ValueError):
        Initiator([b"short"])
    with pytest.raises(ValueError):
        Responder([K[0], K[0]])
    assert fingerprint(sorted(K)) != fingerprint(sorted(K[1:]))
