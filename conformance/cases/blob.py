"""Cases for content ids and /blob/1 (spec/05-content.md).

``cid``: the content id of ``content.bin`` (BLOB-1); yields ``cid.txt``.
``request``: a server reads ``stream.bin`` from a client, then the end of the stream, and
answers from ``held`` (content id hex -> size) (BLOB-2 to BLOB-6); yields ``request.json``
and ``response.bin`` (the response frame).
``receive``: a client that asked for ``cid`` with ``max`` reads ``stream.bin`` from the
server, then the end of the stream (BLOB-8 to BLOB-13); yields ``content.bin``. A refusal by
the server is ``ignore`` with the server's reason (BLOB-14).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

from conformance.model import Case, Expected, Inputs, ignore, reject, valid
from p2pnode.blobs.protocol import CHUNK_SIZE
from p2pnode.wire import cbor
from p2pnode.wire.framing import encode_frame, encode_uvarint
from p2pnode.wire.reasons import Reason

U64 = (1 << 64) - 1
CONTENT = b"hello, p2pnode\n" * 3
CID = "1220" + hashlib.sha256(CONTENT).hexdigest()
EMPTY_CID = "1220e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
BIG = bytes(i % 251 for i in range(CHUNK_SIZE + 1000))
BIG_CID = "1220" + hashlib.sha256(BIG).hexdigest()


def cid() -> Iterator[Case]:
    yield Case("empty", Inputs({"content.bin": b""}), valid({"cid.txt": EMPTY_CID}),
               "the empty blob: 0x1220 and SHA-256 of nothing", ("BLOB-1",))
    yield Case("abc", Inputs({"content.bin": b"abc"}), valid({"cid.txt": "1220ba7816bf8f01cf"
               "ea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}),
               'FIPS 180-2\'s "abc"', ("BLOB-1",))
    yield Case("sample", Inputs({"content.bin": CONTENT}), valid({"cid.txt": CID}),
               "the sample content of the receive vectors", ("BLOB-1",))


def _request_frame(obj: Any) -> bytes:
    return encode_frame(cbor.encode(obj))


def _req(name: str, stream: bytes, expected: Expected, desc: str, rules: tuple[str, ...],
         held: dict[str, int] | None = None) -> Case:
    return Case(name, Inputs({"stream.bin": stream}, {"held": held or {CID: len(CONTENT)}}),
                expected, desc, rules)


def _found(size: int) -> bytes:
    return encode_frame(cbor.encode({"ok": True, "size": size}))


def _refused(reason: str) -> bytes:
    return encode_frame(cbor.encode({"ok": False, "reason": reason}))


def request() -> Iterator[Case]:
    c = bytes.fromhex(CID)
    good = _request_frame({"cid": c, "max": 1 << 20})
    yield _req("found", good, valid({"request.json": {"cid": CID, "max": str(1 << 20)},
                                     "response.bin": _found(len(CONTENT))}),
               "a held blob of 45 bytes: BlobFound", ("BLOB-2", "BLOB-3", "BLOB-5"))
    yield _req("not_found", good, valid({"response.bin": _refused("not_found")}),
               "a blob the server does not hold", ("BLOB-5",), held={EMPTY_CID: 0})
    yield _req("larger_than_max", _request_frame({"cid": c, "max": len(CONTENT) - 1}),
               valid({"response.bin": _refused("too_large")}),
               "a held blob one byte larger than max", ("BLOB-5",))
    yield _req("exactly_max", _request_frame({"cid": c, "max": len(CONTENT)}),
               valid({"response.bin": _found(len(CONTENT))}), "size equal to max",
               ("BLOB-5",))
    yield _req("empty_blob_max_zero", _request_frame({"cid": bytes.fromhex(EMPTY_CID),
                                                      "max": 0}),
               valid({"response.bin": _found(0)}), "the empty blob with max 0", ("BLOB-5",),
               held={EMPTY_CID: 0})
    yield _req("max_u64", _request_frame({"cid": c, "max": U64}),
               valid({"request.json": {"cid": CID, "max": str(U64)}}),
               "max 2^64-1: the largest request, %d bytes" % len(
                   _request_frame({"cid": c, "max": U64})), ("BLOB-3",))
    yield _req("frame_too_large", encode_uvarint(65) + bytes(65), reject(Reason.TOO_LARGE),
               "a request frame of 65 bytes", ("BLOB-2",))
    yield _req("prefix_too_large", encode_uvarint(1 << 30), reject(Reason.TOO_LARGE),
               "a prefix announcing 1 GiB, nothing after it", ("BLOB-2",))
    yield _req("trailing_bytes", good + b"\x00", reject(Reason.TRAILING_BYTES),
               "a byte after the request frame", ("BLOB-2",))
    yield _req("two_requests", good + good, reject(Reason.TRAILING_BYTES),
               "two request frames", ("BLOB-2",))
    yield _req("empty_stream", b"", reject(Reason.TRUNCATED), "the client sent nothing",
               ("BLOB-2",))
    yield _req("truncated", good[:-1], reject(Reason.TRUNCATED),
               "the stream ends one byte before the request does", ("BLOB-2",))
    yield _req("unknown_field", _request_frame({"cid": c, "max": 1, "x": 0}),
               reject(Reason.UNKNOWN_FIELD), 'an extra field "x"', ("BLOB-3",))
    yield _req("missing_max", _request_frame({"cid": c}), reject(Reason.BAD_FIELD),
               "no max", ("BLOB-3",))
    yield _req("max_negative", _request_frame({"cid": c, "max": -1}), reject(Reason.BAD_FIELD),
               "max -1", ("BLOB-3",))
    yield _req("max_bool", _request_frame({"cid": c, "max": True}), reject(Reason.BAD_FIELD),
               "max true", ("BLOB-3",))
    yield _req("cid_short", _request_frame({"cid": c[:33], "max": 1}),
               reject(Reason.BAD_FIELD), "a 33-byte cid", ("BLOB-1", "BLOB-3"))
    yield _req("cid_not_sha256", _request_frame({"cid": b"\x00\x20" + c[2:], "max": 1}),
               reject(Reason.BAD_FIELD), "a 34-byte cid with the identity hash code",
               ("BLOB-1", "BLOB-3"))
    yield _req("cid_text", _request_frame({"cid": CID[:30], "max": 1}),
               reject(Reason.BAD_FIELD), "a cid as text", ("BLOB-3",))
    yield _req("not_a_map", _request_frame([c, 1]), reject(Reason.BAD_FIELD),
               "an array", ("BLOB-3",))
    unsorted = encode_frame(b"\xa2" + cbor.encode("max") + cbor.encode(1) + cbor.encode("cid")
                            + cbor.encode(c))
    yield _req("keys_not_canonical", unsorted, reject(Reason.NON_CANONICAL),
               "max before cid: the codec's reason", ("BLOB-3", "ENC-6"))
    yield _req("prefix_not_minimal", b"\x80\x00", reject(Reason.NON_CANONICAL),
               "a two-byte prefix of 0", ("BLOB-2", "FRM-2"))


def _recv(name: str, stream: bytes, expected: Expected, desc: str, rules: tuple[str, ...],
          *, cid_hex: str = CID, max_size: int = 1 << 20) -> Case:
    return Case(name, Inputs({"stream.bin": stream}, {"cid": cid_hex, "max": str(max_size)}),
                expected, desc, rules)


def _body(content: bytes, chunk: int = CHUNK_SIZE) -> bytes:
    return b"".join(encode_frame(content[i:i + chunk]) for i in range(0, len(content), chunk))


def receive() -> Iterator[Case]:
    ok = _found(len(CONTENT)) + _body(CONTENT)
    yield _recv("one_frame", ok, valid({"content.bin": CONTENT}),
                "BlobFound(45) and one body frame", ("BLOB-7", "BLOB-13"))
    yield _recv("small_frames", _found(len(CONTENT)) + _body(CONTENT, 1),
                valid({"content.bin": CONTENT}),
                "45 body frames of one byte: senders should fill frames, receivers take "
                "any size up to the chunk size", ("BLOB-7", "BLOB-10"))
    yield _recv("empty_blob", _found(0), valid({"content.bin": b""}),
                "the empty blob has no body frame", ("BLOB-7",), cid_hex=EMPTY_CID)
    yield _recv("two_chunks", _found(len(BIG)) + _body(BIG), valid({"content.bin": BIG}),
                "a full 65536-byte frame and a 1000-byte one", ("BLOB-7", "BLOB-10"),
                cid_hex=BIG_CID)
    yield _recv("size_equal_max", ok, valid(), "size equal to max", ("BLOB-9",),
                max_size=len(CONTENT))
    yield _recv("refused_not_found", _refused("not_found"), ignore(Reason.NOT_FOUND),
                "the server does not hold it", ("BLOB-14",))
    yield _recv("refused_busy", _refused("busy"), ignore(Reason.BUSY),
                "the server has no free slot", ("BLOB-14",))
    yield _recv("refused_too_large", _refused("too_large"), ignore(Reason.TOO_LARGE),
                "the server holds it, larger than max", ("BLOB-14",))
    yield _recv("header_too_large", encode_uvarint(65) + bytes(65), reject(Reason.TOO_LARGE),
                "a response frame of 65 bytes", ("BLOB-8",))
    yield _recv("header_unknown_field", encode_frame(cbor.encode({"ok": True, "size": 45,
                                                                  "x": 0})) + _body(CONTENT),
                reject(Reason.UNKNOWN_FIELD), 'BlobFound with an extra field "x"',
                ("BLOB-8",))
    yield _recv("refused_with_size", encode_frame(cbor.encode({"ok": False, "reason": "busy",
                                                               "size": 1})),
                reject(Reason.UNKNOWN_FIELD), "BlobRefused with a size", ("BLOB-8",))
    yield _recv("header_no_ok", encode_frame(cbor.encode({"size": 45})) + _body(CONTENT),
                reject(Reason.BAD_FIELD), "a header without ok", ("BLOB-8",))
    yield _recv("header_ok_int", encode_frame(cbor.encode({"ok": 1, "size": 45})),
                reject(Reason.BAD_FIELD), "ok as the integer 1", ("BLOB-8",))
    yield _recv("header_not_map", encode_frame(cbor.encode([True, 45])),
                reject(Reason.BAD_FIELD), "a header that is an array", ("BLOB-8",))
    # BLOB-8's order: the map, then ok (which selects the variant), then the variant's
    # unknown keys, its missing keys, its fields
    for name, header, reason, desc in (
            ("order_ok_before_unknown", {"ok": 1, "x": 0}, Reason.BAD_FIELD,
             'ok the integer 1 and an extra key "x": ok is checked first, since it decides '
             "which keys are known"),
            ("order_no_ok_before_unknown", {"size": 45, "x": 0}, Reason.BAD_FIELD,
             'no ok and an extra key "x": ok is checked first'),
            ("order_unknown_before_missing", {"ok": True, "x": 0}, Reason.UNKNOWN_FIELD,
             'BlobFound without size and with an extra key "x": unknown keys first'),
            ("order_unknown_before_size", {"ok": True, "size": -1, "x": 0},
             Reason.UNKNOWN_FIELD, 'BlobFound with size -1 and an extra key "x": unknown '
             "keys before the fields"),
            ("order_unknown_before_reason", {"ok": False, "reason": "sorry", "x": 0},
             Reason.UNKNOWN_FIELD, 'BlobRefused with the reason "sorry" and an extra key '
             '"x": unknown keys before the fields'),
            ("found_with_reason", {"ok": True, "reason": "busy", "size": 45},
             Reason.UNKNOWN_FIELD, "BlobFound with a reason: reason is a key of BlobRefused "
             "only"),
            ("found_without_size", {"ok": True}, Reason.BAD_FIELD, "BlobFound without size")):
        yield _recv(name, encode_frame(cbor.encode(header)) + _body(CONTENT),
                    reject(reason), desc, ("BLOB-8",))
    yield _recv("size_negative", encode_frame(cbor.encode({"ok": True, "size": -1})),
                reject(Reason.BAD_FIELD), "size -1", ("BLOB-8",))
    yield _recv("reason_unknown", _refused("sorry"), reject(Reason.BAD_FIELD),
                'a reason that is not a reason code: "sorry"', ("BLOB-8",))
    yield _recv("reason_empty", _refused(""), reject(Reason.BAD_FIELD), "an empty reason",
                ("BLOB-8",))
    yield _recv("header_not_canonical", encode_frame(b"\xa2" + cbor.encode("size")
                                                     + cbor.encode(45) + cbor.encode("ok")
                                                     + cbor.encode(True)) + _body(CONTENT),
                reject(Reason.NON_CANONICAL), "size before ok", ("BLOB-8",))
    yield _recv("size_over_max", ok, reject(Reason.TOO_LARGE),
                "BlobFound(45) where max is 44: refused before any content", ("BLOB-9",),
                max_size=len(CONTENT) - 1)
    yield _recv("body_frame_too_large", _found(CHUNK_SIZE + 2) + encode_uvarint(CHUNK_SIZE + 1),
                reject(Reason.TOO_LARGE),
                "a body frame prefix of 65537, refused from the prefix", ("BLOB-10",),
                cid_hex="1220" + "00" * 32)
    yield _recv("empty_body_frame", _found(len(CONTENT)) + b"\x00" + _body(CONTENT),
                reject(Reason.BAD_FIELD), "an empty body frame", ("BLOB-10",))
    yield _recv("frame_past_size", _found(len(CONTENT) - 1) + _body(CONTENT),
                reject(Reason.TOO_LARGE), "a 45-byte frame after BlobFound(44)",
                ("BLOB-11",))
    yield _recv("bytes_after_content", ok + b"\x01\x00", reject(Reason.TOO_LARGE),
                "a frame after the announced size", ("BLOB-11",))
    yield _recv("truncated_content", _found(len(CONTENT)) + _body(CONTENT[:-1]),
                reject(Reason.TRUNCATED), "the stream ends one byte short", ("BLOB-12",))
    yield _recv("truncated_frame", ok[:-1], reject(Reason.TRUNCATED),
                "the stream ends inside the body frame", ("BLOB-12",))
    yield _recv("no_header", b"", reject(Reason.TRUNCATED), "the server sent nothing",
                ("BLOB-12",))
    other = CONTENT[:-1] + b"!"
    yield _recv("hash_mismatch", _found(len(other)) + _body(other),
                reject(Reason.HASH_MISMATCH), "45 bytes whose last differs", ("BLOB-13",))
    yield _recv("order_size_before_hash", _found(len(other) + 1) + _body(other),
                reject(Reason.TRUNCATED),
                "a wrong and short content: the stream's end is met before the hash",
                ("BLOB-12", "BLOB-13"))


HANDLERS: dict[str, Callable[[], Iterator[Case]]] = {
    "cid": cid, "request": request, "receive": receive}
