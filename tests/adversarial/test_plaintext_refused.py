"""A dialer that offers only /plaintext/2.0.0 is refused (FOUNDATIONS: Noise only).

Over plaintext a peer states any public key it likes, so it could claim any PeerID and
every signer == source check would be void. The node must not negotiate it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.custom_types import TProtocol
from libp2p.network.exceptions import SwarmException
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from p2pnode.identity import Identity
from p2pnode.net.host import build_host, libp2p_key_pair
from tests.adversarial.attacker import LOOPBACK, node_addr
from tests.integration.helpers import running_nodes, wait_for

TEST_TIMEOUT_S = 30


def plaintext_host(identity: Identity) -> Any:
    kp = libp2p_key_pair(identity)
    return new_host(
        key_pair=kp,
        sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(kp)},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
    )


@asynccontextmanager
async def running(host: Any) -> AsyncIterator[Any]:
    async with host.run([multiaddr.Multiaddr(LOOPBACK)]):
        yield host


def addr_of(host: Any) -> multiaddr.Multiaddr:
    a = str(host.get_addrs()[0])
    if "/p2p/" not in a:
        a = f"{a}/p2p/{host.get_id().to_base58()}"
    return multiaddr.Multiaddr(a)


def peer_ids(host: Any) -> set[str]:
    return {p.to_base58() for p in host.get_connected_peers()}


async def test_plaintext_dialer_is_refused_and_noise_dialer_is_not(tmp_path: Path) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with running_nodes(tmp_path, 1) as (node,):
            plain_id, noise_id = Identity.generate(), Identity.generate()
            target = info_from_p2p_addr(multiaddr.Multiaddr(node_addr(node)))
            async with running(plaintext_host(plain_id)) as plain, \
                    running(build_host(noise_id)) as noise:
                failed = False
                try:
                    await plain.connect(target)
                except SwarmException:
                    failed = True
                assert failed, "a plaintext-only dialer got a connection"
                assert node.peer_id not in peer_ids(plain)

                await noise.connect(target)
                assert node.peer_id in peer_ids(noise)
                # Once the node lists the Noise dialer, it has settled every earlier dial:
                # the plaintext one is not among its peers.
                await wait_for(lambda: noise_id.peer_id in node.stack.connected_peers())
                assert plain_id.peer_id not in node.stack.connected_peers()
                assert plain_id.peer_id not in {p["peer_id"] for p in node.peers()}


async def test_the_plaintext_dialer_itself_works_against_a_plaintext_listener() -> None:
    """Control: the refusal above is the node's doing, not a broken dialer."""
    with trio.fail_after(TEST_TIMEOUT_S):
        a_id, b_id = Identity.generate(), Identity.generate()
        async with running(plaintext_host(a_id)) as a, running(plaintext_host(b_id)) as b:
            await a.connect(info_from_p2p_addr(addr_of(b)))
            assert b_id.peer_id in peer_ids(a)
            await wait_for(lambda: a_id.peer_id in peer_ids(b))
