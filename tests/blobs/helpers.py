"""Two real libp2p hosts on 127.0.0.1 for blob transfer tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from p2pnode.identity import Identity
from p2pnode.net.host import NetStack, run_stack
from p2pnode.net.peering import dial

# py-libp2p's DHT protocol id is process-wide; the other integration tests use this one.
NET = "testnet"
LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


@asynccontextmanager
async def two_hosts() -> AsyncIterator[tuple[NetStack, NetStack]]:
    """A server and a client host, the client connected to the server."""
    async with (
        run_stack(Identity.generate(), NET, LOOPBACK) as server,
        run_stack(Identity.generate(), NET, LOOPBACK) as client,
    ):
        ok, err = await dial(client, server.listen_addrs()[0])
        assert ok, err
        yield server, client


def peer_of(stack: NetStack) -> Any:
    return stack.host.get_id()
