"""Framed messages over libp2p streams, every read bounded by size and deadline."""

from __future__ import annotations

from typing import Any

import trio
from libp2p.exceptions import BaseLibp2pError

from p2pnode.wire.framing import FrameDecoder, encode_frame
from p2pnode.wire.reasons import Reason, WireError

READ_CHUNK = 65536


class FramedStream:
    """Wrap an INetStream: ``send(payload)`` and ``receive(timeout)`` whole frames."""

    def __init__(self, stream: Any, max_frame: int) -> None:
        self.stream = stream
        self.decoder = FrameDecoder(max_frame)

    async def send(self, payload: bytes) -> None:
        try:
            await self.stream.write(encode_frame(payload))
        except (BaseLibp2pError, trio.BrokenResourceError, trio.ClosedResourceError) as e:
            # py-libp2p raises its own errors for a reset, closed or broken stream: one
            # reason for them all, so that no libp2p type leaves p2pnode/net.
            raise WireError(Reason.TRUNCATED, "stream closed while sending") from e

    async def receive(self, timeout: float) -> bytes:
        """The next frame; WireError(TRUNCATED) if the peer closes first, TooSlowError on
        timeout, WireError(TOO_LARGE) as soon as the prefix announces too many bytes."""
        with trio.fail_after(timeout):
            while True:
                frame = self.decoder.next_frame()
                if frame is not None:
                    return frame
                try:
                    chunk = await self.stream.read(READ_CHUNK)
                except (BaseLibp2pError, trio.BrokenResourceError,
                        trio.ClosedResourceError) as e:
                    # py-libp2p signals the end of a stream by raising, not by b"".
                    raise WireError(Reason.TRUNCATED, "stream ended mid-frame") from e
                if not chunk:
                    raise WireError(Reason.TRUNCATED, "stream closed mid-frame")
                self.decoder.feed(chunk)

    async def close(self) -> None:
        try:
            await self.stream.close()
        except Exception:  # closing a reset stream raises; nothing left to do
            pass

    async def reset(self) -> None:
        try:
            await self.stream.reset()
        except Exception:
            pass
