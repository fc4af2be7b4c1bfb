"""Cases for length-prefixed frames on streams (spec/01-encoding.md §4.1).

``frames``: split ``stream.bin``, followed by the end of the stream, into frames of at most
``max_frame`` bytes; yields ``frames.json``, the payloads in hex.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from conformance.model import Case, Expected, Inputs, reject, valid
from p2pnode.wire.reasons import Reason


def _frames(name: str, stream: str | bytes, max_frame: int, expected: Expected, desc: str,
            rules: tuple[str, ...]) -> Case:
    data = bytes.fromhex(stream) if isinstance(stream, str) else stream
    return Case(name, Inputs({"stream.bin": data}, {"max_frame": max_frame}), expected, desc,
                rules)


def frames() -> Iterator[Case]:
    yield _frames("empty_stream", "", 64, valid({"frames.json": []}),
                  "no bytes: no frames", ("FRM-1",))
    yield _frames("one_frame", "03616263", 64, valid({"frames.json": ["616263"]}),
                  "a 3-byte frame", ("FRM-1",))
    yield _frames("two_frames", "0161" + "026263", 64, valid({"frames.json": ["61", "6263"]}),
                  "two frames back to back", ("FRM-1",))
    yield _frames("empty_frame", "00", 64, valid({"frames.json": [""]}),
                  "a frame of length 0 is a frame", ("FRM-1", "FRM-4"))
    yield _frames("len_127", "7f" + "aa" * 127, 200, valid({"frames.json": ["aa" * 127]}),
                  "127, the largest one-byte prefix", ("FRM-1", "FRM-2"))
    yield _frames("len_128", "8001" + "bb" * 128, 200, valid({"frames.json": ["bb" * 128]}),
                  "128 takes two bytes: 0x80 0x01, least significant group first",
                  ("FRM-1", "FRM-2"))
    yield _frames("len_300", "ac02" + "cc" * 300, 300, valid({"frames.json": ["cc" * 300]}),
                  "300 = 0xac 0x02, exactly max_frame", ("FRM-1", "FRM-3"))
    yield _frames("too_large", "ad02", 300, reject(Reason.TOO_LARGE),
                  "a prefix of 301 where 300 is the limit: refused before any payload",
                  ("FRM-3",))
    yield _frames("too_large_second", "0161" + "8101", 64, reject(Reason.TOO_LARGE),
                  "a good frame, then a prefix of 129", ("FRM-3",))
    yield _frames("huge_prefix", "ffffffffffffffff7f", 1 << 20, reject(Reason.TOO_LARGE),
                  "a 9-byte prefix of 2^63-1", ("FRM-2", "FRM-3"))
    yield _frames("prefix_not_minimal", "8000", 64, reject(Reason.NON_CANONICAL),
                  "0 in two bytes", ("FRM-2",))
    yield _frames("prefix_not_minimal_nonzero", "8100" + "dd", 64,
                  reject(Reason.NON_CANONICAL), "1 in two bytes", ("FRM-2",))
    yield _frames("prefix_ten_bytes", "ff" * 9 + "01", 1 << 20, reject(Reason.MALFORMED),
                  "a prefix of 10 bytes", ("FRM-2",))
    yield _frames("prefix_nine_continuing", "ff" * 9, 1 << 20, reject(Reason.MALFORMED),
                  "nine bytes that all say another follows", ("FRM-2",))
    yield _frames("truncated_payload", "05616263", 64, reject(Reason.TRUNCATED),
                  "a prefix of 5 and 3 bytes, then the end", ("FRM-4",))
    yield _frames("truncated_prefix", "80", 64, reject(Reason.TRUNCATED),
                  "the stream ends inside a prefix", ("FRM-4",))
    yield _frames("truncated_after_frames", "0161" + "02", 64, reject(Reason.TRUNCATED),
                  "one frame, then the prefix of another and the end", ("FRM-4",))


HANDLERS: dict[str, Callable[[], Iterator[Case]]] = {"frames": frames}
