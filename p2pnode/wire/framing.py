"""Length-prefixed frames for stream protocols (spec/01-encoding.md §4.1, FRM-1 to FRM-4).

A frame is ``uvarint(len) || payload`` (unsigned LEB128, as multiformats' unsigned-varint,
at most 9 bytes, minimal encoding). Each stream protocol states its own frame size limit.
"""

from __future__ import annotations

from p2pnode.wire.reasons import Reason, WireError

MAX_VARINT_BYTES = 9


def encode_uvarint(n: int) -> bytes:
    if n < 0 or n >= 1 << 63:
        raise ValueError("uvarint out of range")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_frame(payload: bytes) -> bytes:
    return encode_uvarint(len(payload)) + payload


class FrameDecoder:
    """Feed bytes in, take whole frames out; never buffers more than one oversized prefix."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_frame(self) -> bytes | None:
        """The next complete frame, or None if more bytes are needed."""
        n = 0
        shift = 0
        for i, b in enumerate(self._buf):
            if i >= MAX_VARINT_BYTES:
                raise WireError(Reason.MALFORMED, "length prefix too long")
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if b == 0 and i > 0:
                    raise WireError(Reason.NON_CANONICAL, "length prefix not minimal")
                if n > self.max_frame:
                    raise WireError(Reason.TOO_LARGE, "frame of %d > %d" % (n, self.max_frame))
                start = i + 1
                if len(self._buf) - start < n:
                    return None
                frame = bytes(self._buf[start : start + n])
                del self._buf[: start + n]
                return frame
        if len(self._buf) >= MAX_VARINT_BYTES:
            raise WireError(Reason.MALFORMED, "length prefix too long")
        return None

    @property
    def buffered(self) -> int:
        return len(self._buf)
