"""Dialling peers with a deadline; DHT routing-table upkeep after a connection."""

from __future__ import annotations

import logging
from typing import Any

import trio
from libp2p.peer.peerinfo import info_from_p2p_addr
from multiaddr import Multiaddr

log = logging.getLogger("p2pnode.net")


async def dial(stack: Any, addr: str, timeout: float = 5.0) -> tuple[bool, str]:
    """Connect to ``/ip4/.../tcp/.../p2p/<id>``; return (ok, error text)."""
    try:
        info = info_from_p2p_addr(Multiaddr(addr))
    except Exception as e:  # multiaddr raises several types for bad input
        return False, f"bad multiaddr: {e}"
    try:
        with trio.fail_after(timeout):
            await stack.host.connect(info)
            await stack.dht.add_peer(info.peer_id)
    except trio.TooSlowError:
        return False, "timeout"
    except Exception as e:  # a refused or failed dial must never stop the node
        return False, f"{type(e).__name__}: {e}"
    return True, ""
