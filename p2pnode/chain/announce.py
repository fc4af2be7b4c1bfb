"""Anchor announcements on ``/p2pnode/<net>/anchors/1`` (spec 08 ANC-4, ANC-5).

    anchor.announce v1, signed by a node when it fixes an epoch's root:
      net, epoch, root (32 bytes), count, ts (ms)

Before it anchors an epoch, an anchorer compares its root with those others announced for
that epoch; if one differs it does not anchor (its ledger may lack elements: it reconciles
first). ``Announcements`` keeps them, bounded in epochs and in signers. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from p2pnode.jobs.model import MAX_NET_LEN
from p2pnode.wire import envelope
from p2pnode.wire.body import SealedBody
from p2pnode.wire.fields import bstr, map_exact, text, uint
from p2pnode.wire.reasons import Reason, WireError

T_ANNOUNCE = "anchor.announce"
VERSION = 1
ANNOUNCE_MAX_SIZE = 256
# ANC-4: an announcement of an epoch more than this many epochs before the receiver's newest
# closed one is stale; one after the receiver's current epoch comes from the future.
MAX_EPOCHS_BACK = 16
# ANC-4: the epochs and the signers per epoch a node keeps.
KEEP_EPOCHS = 16
MAX_SIGNERS = 256

envelope.register_type(T_ANNOUNCE, {VERSION}, ANNOUNCE_MAX_SIZE)

_KEYS = frozenset({"net", "epoch", "root", "count", "ts"})


@dataclass(frozen=True, slots=True)
class AnchorAnnounce(SealedBody):
    T: ClassVar[str] = T_ANNOUNCE
    V: ClassVar[int] = VERSION
    net: str
    epoch: int
    root: bytes
    count: int
    ts: int


@dataclass(frozen=True, slots=True)
class Announced:
    signer: bytes
    body: AnchorAnnounce


def open_announce(data: bytes, *, net: str, current: int, closed: int,
                  verified: envelope.SignatureCache | None = None) -> Announced:
    """ANC-4: the announcement in ``data`` for a receiver whose current epoch is ``current``
    and newest closed one ``closed``; raises WireError with the reason."""
    env = envelope.open_envelope(data, expected_type=T_ANNOUNCE, verified=verified)
    m = map_exact(env.body, _KEYS, T_ANNOUNCE)
    a = AnchorAnnounce(net=text(m["net"], MAX_NET_LEN, "net", nonempty=True),
                       epoch=uint(m["epoch"], "epoch"),
                       root=bstr(m["root"], "root", size=32), count=uint(m["count"], "count"),
                       ts=uint(m["ts"], "ts"))
    if a.net != net:
        raise WireError(Reason.WRONG_NETWORK, a.net)
    if a.epoch > current:
        raise WireError(Reason.CLOCK_SKEW, "an epoch that has not begun here")
    if a.epoch + MAX_EPOCHS_BACK < closed:
        raise WireError(Reason.EXPIRED, "an epoch long closed")
    return Announced(env.signer, a)


class Announcements:
    """Roots announced per epoch, by signer: the newest KEEP_EPOCHS epochs, MAX_SIGNERS each."""

    def __init__(self) -> None:
        self.by_epoch: dict[int, dict[bytes, bytes]] = {}

    def add(self, a: Announced) -> bool:
        """Keep ``a``; False if it was held already or there is no room."""
        held = self.by_epoch.get(a.body.epoch)
        if held is None:
            if len(self.by_epoch) >= KEEP_EPOCHS and a.body.epoch < min(self.by_epoch):
                return False
            held = self.by_epoch[a.body.epoch] = {}
            while len(self.by_epoch) > KEEP_EPOCHS:
                del self.by_epoch[min(self.by_epoch)]
        if a.signer in held or len(held) >= MAX_SIGNERS:
            return False
        held[a.signer] = a.body.root
        return True

    def disagree(self, epoch: int, root: bytes, me: bytes) -> list[bytes]:
        """ANC-5: the signers other than ``me`` who announced another root for ``epoch``."""
        return sorted(s for s, r in self.by_epoch.get(epoch, {}).items()
                      if s != me and r != root)

    def snapshot(self) -> dict[int, dict[bytes, bytes]]:
        return {e: dict(v) for e, v in self.by_epoch.items()}
