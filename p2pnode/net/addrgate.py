"""The address policy on py-libp2p's peerstore (spec 03 ADDR-7): an address a peer reports
in identify, or a DHT answer carries, is kept for dialling only if the policy allows it.

py-libp2p dials whatever its peerstore holds: its auto-connector dials known peers, a DHT
lookup dials the closer peers an answer names, and opening a stream to a peer without a
connection dials it. Every address enters the peerstore through ``add_addrs``, so that is
where the gate stands; the policy itself is the core's (``p2pnode.addrpolicy``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from multiaddr import Multiaddr

from p2pnode.addrpolicy import AddrDrop

AddrCheck = Callable[[str], AddrDrop | None]


def gate_peerstore(host: Any, check: AddrCheck, on_drop: Callable[[AddrDrop], None]) -> None:
    """Make ``host``'s peerstore drop every address ``check`` refuses (counted by reason)."""
    peerstore = host.get_peerstore()
    add_addrs = peerstore.add_addrs

    def gated_add_addrs(peer_id: Any, addrs: Sequence[Multiaddr], ttl: int = 0) -> None:
        kept = []
        own = f"/p2p/{peer_id}"
        for addr in addrs:
            # Identify's signed peer records name the peer itself at the end of each address.
            text = str(addr)
            why = check(text[: -len(own)] if text.endswith(own) else text)
            if why is None:
                kept.append(addr)
            else:
                on_drop(why)
        if kept:
            add_addrs(peer_id, kept, ttl)

    peerstore.add_addrs = gated_add_addrs
