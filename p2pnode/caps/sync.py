"""The held-ads exchange on ``/p2pnode/<net>/caps-sync/1`` (spec/02-capabilities.md §7).

A node that meets a peer on the caps topic asks it once for the ads it holds, so that a new
node knows the network within one round trip instead of one ad interval. This module is the
exchange's rules, pure: what an answer holds (SYNC-3), how an answer is read and bounded
(SYNC-4), and whom to ask when (SYNC-1, SYNC-2). Each ad of an answer is then checked by
``p2pnode.caps.table.validate_ad`` with ``synced=True`` (SYNC-5).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from p2pnode.caps.model import AD_MAX_SIZE
from p2pnode.caps.table import TableEntry
from p2pnode.wire.framing import FrameDecoder
from p2pnode.wire.reasons import Reason, WireError

# spec 02 §7.2, parameters
SYNC_MAX_ADS = 200
"""Ads in one answer; equal to FWD_BURST (RL-3), which every answer spends from."""
SYNC_IDLE_TIMEOUT_S = 5.0
"""The asking side waits at most this long for the stream and for each read."""
SYNC_STREAM_MAX_S = 10.0
"""One exchange, either side, in all."""
SYNC_STREAMS_PER_PEER = 2
MAX_SYNC_STREAMS = 32
SYNC_STREAM_RATE = 0.2
"""New answers per second one peer may ask for, after its burst."""
SYNC_STREAM_BURST = 4
SYNC_PULLS_IN_FLIGHT = 4
"""Exchanges a node asks for at once (a bootstrap node meets many peers together)."""


def answer_ads(entries: Iterable[TableEntry], now_ms: int, own: bytes | None,
               own_peer_id: str, asker: str = "", limit: int = SYNC_MAX_ADS) -> list[bytes]:
    """The envelopes a node sends in a held-ads answer (SYNC-3): its own latest ad first,
    then the live ads of its table, newest ``ts`` first, at most ``limit`` in all; never the
    asking peer's own ad, which it holds already."""
    out: list[bytes] = [own] if own else []
    held = sorted((e for e in entries
                   if e.raw and e.peer_id not in (own_peer_id, asker)
                   and e.ad.expires_at_ms() > now_ms),
                  key=lambda e: (-e.ad.ts, e.peer_id))
    out.extend(e.raw for e in held[: max(0, limit - len(out))])
    return out


class AnswerReader:
    """Splits the bytes of a held-ads answer into ads, within the bounds of SYNC-4.

    ``feed`` returns the ads completed by ``data``. The first breach ends the answer: a
    frame over ``AD_MAX_SIZE`` or an ad past ``max_ads`` (TOO_LARGE), a broken prefix (the
    reasons of FRM-*), or, at ``finish``, an answer that ends inside a frame (TRUNCATED).
    It is kept in ``error``, and nothing is read after it; the ads before it stand.
    """

    def __init__(self, max_ads: int = SYNC_MAX_ADS) -> None:
        self.max_ads = max_ads
        self.count = 0
        self.error: WireError | None = None
        self._frames = FrameDecoder(AD_MAX_SIZE)

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        if self.error is not None:
            return out
        self._frames.feed(data)
        try:
            while (frame := self._frames.next_frame()) is not None:
                if self.count >= self.max_ads:
                    raise WireError(Reason.TOO_LARGE, "more than %d ads" % self.max_ads)
                self.count += 1
                out.append(frame)
        except WireError as e:
            self.error = e
        return out

    def finish(self) -> None:
        """The stream ended."""
        if self.error is None and self._frames.buffered:
            self.error = WireError(Reason.TRUNCATED, "answer ended inside a frame")


@dataclass(frozen=True, slots=True)
class Pull:
    """Ask ``peer`` for its held ads (an effect for the shell to carry out)."""

    peer: str


class PullSchedule:
    """Whom to ask (SYNC-1, SYNC-2): every peer once per appearance on the caps topic.

    ``peers`` maps each peer subscribed to the topic to a token that changes when the
    peer's pubsub stream does, so a peer that reconnects or restarts is asked again. The
    memory is the current topic peers and nothing else.
    """

    def __init__(self, self_id: str) -> None:
        self.self_id = self_id
        self._asked: dict[str, int] = {}

    def due(self, peers: Mapping[str, int]) -> list[Pull]:
        for gone in [p for p in self._asked if p not in peers]:
            del self._asked[gone]
        out: list[Pull] = []
        for peer, token in sorted(peers.items()):
            if peer != self.self_id and self._asked.get(peer) != token:
                self._asked[peer] = token
                out.append(Pull(peer))
        return out
