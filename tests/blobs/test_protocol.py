"""The sans-IO half of blob/1: codecs, the server's answer, the request and response readers."""

from __future__ import annotations

import itertools

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pnode.blobs.protocol import (
    CHUNK_SIZE,
    MAX_HEADER_SIZE,
    MAX_REASON_LEN,
    MAX_REQUEST_SIZE,
    BlobFound,
    BlobReceiver,
    BlobRefused,
    BlobRequest,
    BlobRequestReader,
    BlobResponseReader,
    ChunkReceived,
    HeaderReceived,
    Refused,
    ResponseEvent,
    TransferComplete,
    answer,
    body_frames,
    decode_response,
)
from p2pnode.wire import cbor
from p2pnode.wire.cid import cid_of
from p2pnode.wire.framing import FrameDecoder, encode_frame, encode_uvarint
from p2pnode.wire.reasons import Reason, WireError

U64 = (1 << 64) - 1
cids = st.binary(min_size=32, max_size=32).map(lambda d: b"\x12\x20" + d)
sizes = st.integers(min_value=0, max_value=U64)
CID = cid_of(b"content")


def reason_of(fn: object, *args: object) -> Reason:
    with pytest.raises(WireError) as e:
        fn(*args)  # type: ignore[operator]
    return e.value.reason


# -- codecs ------------------------------------------------------------------------------


@given(cids, sizes)
def test_request_round_trip(cid: bytes, max_size: int) -> None:
    req = BlobRequest(cid, max_size)
    raw = req.encode()
    assert len(raw) <= MAX_REQUEST_SIZE
    assert BlobRequest.decode(raw) == req
    assert cbor2.loads(raw) == {"cid": cid, "max": max_size}


@given(sizes)
def test_found_round_trip(size: int) -> None:
    raw = BlobFound(size).encode()
    assert len(raw) <= MAX_HEADER_SIZE
    assert decode_response(raw) == BlobFound(size)


@given(st.sampled_from(list(Reason)))
def test_refused_round_trip(reason: Reason) -> None:
    assert len(reason.value) <= MAX_REASON_LEN
    raw = BlobRefused(reason).encode()
    assert len(raw) <= MAX_HEADER_SIZE
    assert decode_response(raw) == BlobRefused(reason)


@given(st.binary(max_size=80))
def test_decoders_raise_only_wire_errors(data: bytes) -> None:
    for decode in (BlobRequest.decode, decode_response):
        try:
            decode(data)
        except WireError:
            pass


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"cid": CID, "max": 1, "x": 0}, Reason.UNKNOWN_FIELD),
        ({"cid": CID}, Reason.BAD_FIELD),
        ({"max": 1}, Reason.BAD_FIELD),
        ({"cid": CID[:-1], "max": 1}, Reason.BAD_FIELD),
        ({"cid": CID + b"\x00", "max": 1}, Reason.BAD_FIELD),
        ({"cid": b"\x12\x21" + CID[2:], "max": 1}, Reason.BAD_FIELD),
        ({"cid": "not bytes", "max": 1}, Reason.BAD_FIELD),
        ({"cid": CID, "max": -1}, Reason.BAD_FIELD),
        ({"cid": CID, "max": True}, Reason.BAD_FIELD),
        ({"cid": CID, "max": b"1"}, Reason.BAD_FIELD),
        ([CID, 1], Reason.BAD_FIELD),
    ],
)
def test_request_decode_rejects(obj: object, reason: Reason) -> None:
    assert reason_of(BlobRequest.decode, cbor.encode(obj)) is reason


def test_request_decode_rejects_non_canonical_and_oversized_input() -> None:
    unsorted = cbor2.dumps({"max": 1, "cid": CID})
    assert reason_of(BlobRequest.decode, unsorted) is Reason.NON_CANONICAL
    padded = cbor.encode({"cid": CID, "max": 1}) + b"\x00" * MAX_REQUEST_SIZE
    assert reason_of(BlobRequest.decode, padded) is Reason.TOO_LARGE


def test_request_constructor_checks_fields() -> None:
    assert reason_of(BlobRequest, b"short", 1) is Reason.BAD_FIELD
    assert reason_of(BlobRequest, CID, -1) is Reason.BAD_FIELD
    assert reason_of(BlobRequest, CID, 1 << 64) is Reason.BAD_FIELD


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"size": 1}, Reason.BAD_FIELD),
        ({"ok": 1, "size": 1}, Reason.BAD_FIELD),
        ({"ok": None, "size": 1}, Reason.BAD_FIELD),
        ({"ok": True}, Reason.BAD_FIELD),
        ({"ok": True, "size": -1}, Reason.BAD_FIELD),
        ({"ok": True, "size": "1"}, Reason.BAD_FIELD),
        ({"ok": True, "size": 1, "reason": "busy"}, Reason.UNKNOWN_FIELD),
        ({"ok": False}, Reason.BAD_FIELD),
        ({"ok": False, "reason": "busy", "size": 1}, Reason.UNKNOWN_FIELD),
        ({"ok": False, "reason": "no_such_reason"}, Reason.BAD_FIELD),
        ({"ok": False, "reason": ""}, Reason.BAD_FIELD),
        ({"ok": False, "reason": b"busy"}, Reason.BAD_FIELD),
        ({"ok": False, "reason": "x" * 33}, Reason.BAD_FIELD),
        ([True, 1], Reason.BAD_FIELD),
    ],
)
def test_response_decode_rejects(obj: object, reason: Reason) -> None:
    assert reason_of(decode_response, cbor.encode(obj)) is reason


def test_answer() -> None:
    req = BlobRequest(CID, 100)
    assert answer(req, None) == BlobRefused(Reason.NOT_FOUND)
    assert answer(req, 101) == BlobRefused(Reason.TOO_LARGE)
    assert answer(req, 100) == BlobFound(100)
    assert answer(req, 0) == BlobFound(0)


def test_body_frames_are_full_chunks_and_one_shorter_last() -> None:
    content = bytes(range(256)) * 600  # 153600 bytes
    dec = FrameDecoder(CHUNK_SIZE)
    dec.feed(body_frames(content))
    frames = list(iter(dec.next_frame, None))
    assert [len(f) for f in frames] == [CHUNK_SIZE, CHUNK_SIZE, 153600 - 2 * CHUNK_SIZE]
    assert b"".join(frames) == content
    assert body_frames(b"") == b""


# -- BlobReceiver ------------------------------------------------------------------------


def test_receiver_accepts_the_exact_content_in_any_pieces() -> None:
    content = b"0123456789" * 10
    r = BlobReceiver(cid_of(content), max_size=100)
    r.announce(100)
    for i in range(0, 100, 7):
        assert not r.complete
        r.feed(content[i : i + 7])
    assert r.complete and r.remaining == 0
    r.finish()


def test_receiver_refuses_an_announced_size_over_max() -> None:
    r = BlobReceiver(CID, max_size=10)
    assert reason_of(r.announce, 11) is Reason.TOO_LARGE
    BlobReceiver(CID, max_size=10).announce(10)


def test_receiver_refuses_bytes_past_the_announced_size() -> None:
    r = BlobReceiver(cid_of(b"abc"), max_size=100)
    r.announce(3)
    r.feed(b"ab")
    assert reason_of(r.feed, b"cd") is Reason.TOO_LARGE
    assert r.received == 2  # the offending piece was not counted


def test_receiver_detects_a_hash_mismatch() -> None:
    r = BlobReceiver(cid_of(b"abc"), max_size=100)
    r.announce(3)
    r.feed(b"abd")
    assert reason_of(r.finish) is Reason.HASH_MISMATCH


def test_receiver_detects_short_content() -> None:
    r = BlobReceiver(cid_of(b"abc"), max_size=100)
    r.announce(3)
    r.feed(b"ab")
    assert reason_of(r.finish) is Reason.TRUNCATED


def test_receiver_empty_blob() -> None:
    r = BlobReceiver(cid_of(b""), max_size=0)
    r.announce(0)
    assert r.complete
    r.finish()


# -- BlobResponseReader ------------------------------------------------------------------


def run_reader(
    reader: BlobResponseReader, pieces: list[bytes], eof: bool = False
) -> list[ResponseEvent]:
    events: list[ResponseEvent] = []
    feed = iter(pieces)
    while True:
        ev = reader.next_event()
        if ev is None:
            piece = next(feed, None)
            if piece is None:
                if not eof:
                    return events
                reader.receive_eof()
                eof = False
                continue
            reader.receive_data(piece)
            continue
        events.append(ev)
        if isinstance(ev, Refused | TransferComplete):
            return events


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def wire(content: bytes) -> bytes:
    return encode_frame(BlobFound(len(content)).encode()) + body_frames(content)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=3 * CHUNK_SIZE), st.lists(st.integers(), max_size=12))
def test_reader_reassembles_any_split_of_the_stream(size: int, cuts: list[int]) -> None:
    content = bytes(i * 7 % 251 for i in range(size))
    reader = BlobResponseReader(cid_of(content), max_size=size)
    events = run_reader(reader, split(wire(content), cuts))
    assert events[0] == HeaderReceived(size)
    assert isinstance(events[-1], TransferComplete) and reader.done
    chunks = [e.data for e in events if isinstance(e, ChunkReceived)]
    assert b"".join(chunks) == content
    assert all(0 < len(c) <= CHUNK_SIZE for c in chunks)


def test_reader_reports_a_refusal() -> None:
    reader = BlobResponseReader(CID, 10)
    events = run_reader(reader, [encode_frame(BlobRefused(Reason.NOT_FOUND).encode())])
    assert events == [Refused(Reason.NOT_FOUND)] and reader.done


def reader_failure(pieces: list[bytes], content: bytes = b"content", max_size: int = 1000,
                   eof: bool = False) -> Reason:
    reader = BlobResponseReader(cid_of(content), max_size)
    with pytest.raises(WireError) as e:
        run_reader(reader, pieces, eof=eof)
    with pytest.raises(RuntimeError):
        reader.next_event()
    return e.value.reason


def test_reader_refuses_size_over_max_from_the_header_alone() -> None:
    header = encode_frame(BlobFound(1001).encode())
    assert reader_failure([header]) is Reason.TOO_LARGE


def test_reader_refuses_an_oversized_header_from_its_prefix() -> None:
    assert reader_failure([encode_uvarint(MAX_HEADER_SIZE + 1)]) is Reason.TOO_LARGE


def test_reader_refuses_an_oversized_body_frame_from_its_prefix() -> None:
    header = encode_frame(BlobFound(200_000).encode())
    pieces = [header, encode_uvarint(CHUNK_SIZE + 1)]
    assert reader_failure(pieces, max_size=200_000) is Reason.TOO_LARGE


def test_reader_refuses_a_frame_past_the_announced_size() -> None:
    pieces = [encode_frame(BlobFound(7).encode()), encode_frame(b"conte"), encode_frame(b"nt!")]
    assert reader_failure(pieces) is Reason.TOO_LARGE


def test_reader_refuses_bytes_after_the_content() -> None:
    assert reader_failure([wire(b"content") + b"\x01"]) is Reason.TOO_LARGE
    reader = BlobResponseReader(cid_of(b"content"), 100)
    run_reader(reader, [wire(b"content")])
    with pytest.raises(WireError) as e:
        reader.receive_data(b"more")
    assert e.value.reason is Reason.TOO_LARGE


def test_reader_refuses_an_empty_body_frame() -> None:
    pieces = [encode_frame(BlobFound(7).encode()), encode_frame(b"")]
    assert reader_failure(pieces) is Reason.BAD_FIELD


def test_reader_detects_a_hash_mismatch() -> None:
    assert reader_failure([wire(b"contenT")]) is Reason.HASH_MISMATCH


def test_reader_detects_an_early_end() -> None:
    assert reader_failure([], eof=True) is Reason.TRUNCATED
    assert reader_failure([wire(b"content")[:-2]], eof=True) is Reason.TRUNCATED
    assert reader_failure([wire(b"content")[:3]], eof=True) is Reason.TRUNCATED


def test_reader_refuses_a_malformed_header() -> None:
    assert reader_failure([encode_frame(b"\xff")]) is Reason.INDEFINITE_LENGTH
    assert reader_failure([encode_frame(cbor.encode({"ok": True}))]) is Reason.BAD_FIELD


# -- BlobRequestReader -------------------------------------------------------------------


@given(cids, sizes, st.lists(st.integers(), max_size=5))
def test_request_reader_any_split(cid: bytes, max_size: int, cuts: list[int]) -> None:
    req = BlobRequest(cid, max_size)
    reader = BlobRequestReader()
    got = None
    for piece in split(encode_frame(req.encode()), cuts):
        assert got is None
        reader.receive_data(piece)
        got = reader.next_request()
    assert got == req


def request_failure(data: bytes, eof: bool = False) -> Reason:
    reader = BlobRequestReader()
    reader.receive_data(data)
    if eof:
        reader.receive_eof()
    with pytest.raises(WireError) as e:
        reader.next_request()
    return e.value.reason


def test_request_reader_rejects() -> None:
    good = encode_frame(BlobRequest(CID, 5).encode())
    assert request_failure(good + b"\x00") is Reason.TRAILING_BYTES
    assert request_failure(good[:-1], eof=True) is Reason.TRUNCATED
    assert request_failure(b"", eof=True) is Reason.TRUNCATED
    assert request_failure(encode_uvarint(MAX_REQUEST_SIZE + 1)) is Reason.TOO_LARGE
    assert request_failure(b"\xff" * 10) is Reason.MALFORMED
    assert request_failure(encode_frame(b"hello")) is Reason.TRUNCATED
    assert request_failure(encode_frame(b"\x00")) is Reason.BAD_FIELD
