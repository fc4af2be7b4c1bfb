"""The held-ads exchange's rules (spec 02 §9): what an answer holds (SYNC-3), how one is read
(SYNC-4), whom to ask (SYNC-1, SYNC-2) and how its ads are checked (SYNC-5)."""

from __future__ import annotations

from p2pnode.caps.model import AD_MAX_SIZE
from p2pnode.caps.sync import SYNC_MAX_ADS, AnswerReader, Pull, PullSchedule, answer_ads
from p2pnode.caps.table import MAX_CLOCK_SKEW_MS, CapTable, validate_ad
from p2pnode.identity import Identity, peer_id_bytes
from p2pnode.wire.framing import encode_frame
from p2pnode.wire.reasons import Accept, Reason, Reject
from tests.caps.ads import NET, NOW_MS, make_ad

ALICE = Identity(bytes(range(32)))
BOB = Identity(bytes(range(32, 64)))
CAROL = Identity(bytes(range(64, 96)))


def _table(*ads: tuple[Identity, int]) -> CapTable:
    t = CapTable()
    for ident, ts in ads:
        data = make_ad(ts=ts).encode(ident)
        t.update(ident.peer_id, make_ad(ts=ts), NOW_MS, raw=data)
    return t


def test_answer_puts_own_ad_first_then_newest_and_respects_the_limit() -> None:
    t = _table((BOB, NOW_MS - 5000), (CAROL, NOW_MS - 1000), (ALICE, NOW_MS))
    own = make_ad(ts=NOW_MS, seq=99).encode(ALICE)
    out = answer_ads(t.live(NOW_MS), NOW_MS, own, ALICE.peer_id)
    # Alice's table entry is not sent twice; Carol's ad is newer than Bob's.
    assert out == [own, t.get(CAROL.peer_id).raw, t.get(BOB.peer_id).raw]  # type: ignore
    assert answer_ads(t.live(NOW_MS), NOW_MS, own, ALICE.peer_id, limit=2) == out[:2]
    # Bob asks: his own ad is not sent back to him.
    assert answer_ads(t.live(NOW_MS), NOW_MS, own, ALICE.peer_id, asker=BOB.peer_id) == out[:2]
    assert answer_ads(t.live(NOW_MS), NOW_MS, None, ALICE.peer_id, limit=1) == out[1:2]


def test_answer_leaves_out_expired_ads_and_ads_held_without_bytes() -> None:
    t = _table((BOB, NOW_MS - 179_000))
    t.update(CAROL.peer_id, make_ad(), NOW_MS)  # stored without its envelope
    assert len(answer_ads(t.live(NOW_MS), NOW_MS, None, ALICE.peer_id)) == 1
    assert answer_ads(t.live(NOW_MS + 1000), NOW_MS + 1000, None, ALICE.peer_id) == []


def test_reader_splits_frames_across_chunks() -> None:
    ads = [make_ad(seq=i).encode(BOB) for i in range(3)]
    stream = b"".join(encode_frame(a) for a in ads)
    reader = AnswerReader()
    got = [a for i in range(0, len(stream), 7) for a in reader.feed(stream[i:i + 7])]
    reader.finish()
    assert got == ads and reader.error is None


def _cut(reader: AnswerReader) -> Reason | None:
    return None if reader.error is None else reader.error.reason


def test_reader_refuses_an_oversized_frame_at_its_prefix_keeping_the_ads_before() -> None:
    reader = AnswerReader()
    got = reader.feed(encode_frame(b"a") + encode_frame(b"x" * (AD_MAX_SIZE + 1))[:4])
    assert got == [b"a"] and _cut(reader) is Reason.TOO_LARGE
    assert reader.feed(encode_frame(b"b")) == []  # nothing is read after the breach


def test_reader_refuses_more_than_max_ads() -> None:
    reader = AnswerReader()
    assert len(reader.feed(encode_frame(b"a") * (SYNC_MAX_ADS + 1))) == SYNC_MAX_ADS
    assert _cut(reader) is Reason.TOO_LARGE


def test_reader_refuses_an_answer_cut_inside_a_frame() -> None:
    reader = AnswerReader()
    reader.feed(encode_frame(b"abc")[:-1])
    reader.finish()
    assert _cut(reader) is Reason.TRUNCATED


def test_schedule_asks_each_topic_peer_once_per_appearance() -> None:
    s = PullSchedule(ALICE.peer_id)
    assert s.due({ALICE.peer_id: 1, BOB.peer_id: 1}) == [Pull(BOB.peer_id)]
    assert s.due({BOB.peer_id: 1}) == []
    assert s.due({BOB.peer_id: 2}) == [Pull(BOB.peer_id)]  # a new pubsub stream
    assert s.due({}) == []
    assert s.due({BOB.peer_id: 2}) == [Pull(BOB.peer_id)]  # it left and came back


def _synced(data: bytes, now_ms: int = NOW_MS) -> object:
    return validate_ad(data, net=NET, now_ms=now_ms, source=None, held_seq=lambda _: None,
                       synced=True)[0]


def test_a_synced_ad_may_be_older_than_the_skew_bound_but_not_expired() -> None:
    old = make_ad(ts=NOW_MS - MAX_CLOCK_SKEW_MS - 60_000).encode(BOB)
    assert isinstance(_synced(old), Accept)
    gossiped = validate_ad(old, net=NET, now_ms=NOW_MS, source=peer_id_bytes(BOB.public_key),
                           held_seq=lambda _: None)[0]
    assert gossiped == Reject(Reason.CLOCK_SKEW, gossiped.detail)  # type: ignore[union-attr]
    assert _synced(make_ad(ts=NOW_MS - 180_000).encode(BOB)) == Reject(Reason.EXPIRED)


def test_a_synced_ad_from_the_future_is_still_refused() -> None:
    verdict = _synced(make_ad(ts=NOW_MS + MAX_CLOCK_SKEW_MS + 1).encode(BOB))
    assert isinstance(verdict, Reject) and verdict.reason is Reason.CLOCK_SKEW
    assert isinstance(_synced(make_ad(ts=NOW_MS + MAX_CLOCK_SKEW_MS).encode(BOB)), Accept)


def test_a_synced_ad_keeps_its_bytes_for_the_next_answer() -> None:
    data = make_ad().encode(CAROL)
    _, validated = validate_ad(data, net=NET, now_ms=NOW_MS, source=None,
                               held_seq=lambda _: None, synced=True)
    assert validated is not None and validated.raw == data
    assert validated.peer_id == CAROL.peer_id
