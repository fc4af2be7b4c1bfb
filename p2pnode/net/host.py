"""The py-libp2p shell: host construction and the workarounds py-libp2p 0.8 needs.

This is the only module tree that imports libp2p. Each workaround names the default
behaviour it fixes (spec/03-network.md §6 lists them for other implementers).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import multiaddr
from libp2p import new_host
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service

from p2pnode.identity import Identity

OUTBOUND_QUEUE_SIZE = 1024
GOSSIPSUB_PROTOCOLS = [TProtocol("/meshsub/1.1.0"), TProtocol("/meshsub/1.0.0")]


def kad_protocol_id(net: str) -> str:
    return f"/p2pnode/{net}/kad/1.0.0"


def caps_topic(net: str) -> str:
    return f"/p2pnode/{net}/caps/1"


_patched_net: str | None = None


def patch_libp2p(net: str) -> None:
    """Process-wide fixes of py-libp2p 0.8.1 defaults. Idempotent for one network id."""
    global _patched_net
    if _patched_net is not None:
        if _patched_net != net:
            raise RuntimeError(
                f"this process already speaks network {_patched_net!r}; "
                f"py-libp2p's DHT protocol id is process-wide, run {net!r} in another process"
            )
        return
    import libp2p.kad_dht.common as kad_common
    import libp2p.kad_dht.kad_dht as kad_main
    import libp2p.kad_dht.peer_routing as kad_routing
    import libp2p.kad_dht.provider_store as kad_providers
    import libp2p.kad_dht.value_store as kad_values
    import libp2p.network.swarm as swarm
    import libp2p.pubsub.pubsub as pubsub_mod
    import libp2p.pubsub.rpc_queue as rpc_queue

    # Every dial waited 250 ms (happy eyeballs between transports); we run TCP only.
    swarm._HAPPY_EYEBALLS_DELAY = 0  # type: ignore[attr-defined]
    # Subscription and outbound RPC queues of 32 slots drop messages silently under a
    # burst; we read subscriptions promptly and bound our own publish rate (spec 03 §4).
    pubsub_mod.SUBSCRIPTION_CHANNEL_SIZE = OUTBOUND_QUEUE_SIZE  # type: ignore[attr-defined]
    rpc_queue.OutBoundQueueSize = OUTBOUND_QUEUE_SIZE  # type: ignore[attr-defined]
    # The queue classes bound the size as a default argument at import, so the module
    # constant alone changes nothing: set the defaults themselves.
    rpc_queue.PriorityQueue.__init__.__defaults__ = (OUTBOUND_QUEUE_SIZE,)
    rpc_defaults = rpc_queue.RpcQueue.__init__.__defaults__ or (0, 1 << 20)
    rpc_queue.RpcQueue.__init__.__defaults__ = (OUTBOUND_QUEUE_SIZE, rpc_defaults[1])
    # KadDHT ignores protocol_prefix on the wire and always speaks /ipfs/kad/1.0.0, which
    # would merge our DHT with IPFS's. The id is imported by name into each module.
    pid = TProtocol(kad_protocol_id(net))
    for mod in (kad_common, kad_main, kad_routing, kad_providers, kad_values):
        mod.PROTOCOL_ID = pid  # type: ignore[attr-defined]
    # libp2p logs at INFO into the root logger; keep its records out of ours.
    # Without a handler Python's last-resort handler would print its warnings as bare text.
    lp = logging.getLogger("libp2p")
    lp.propagate = False
    lp.setLevel(logging.WARNING)
    if not lp.handlers:
        lp.addHandler(logging.NullHandler())
    _patched_net = net


def libp2p_key_pair(identity: Identity) -> KeyPair:
    priv = Ed25519PrivateKey.from_bytes(identity.seed)
    return KeyPair(priv, priv.get_public_key())


def build_host(identity: Identity) -> Any:
    """A TCP host with Noise as the only security protocol and Yamux as the only muxer.

    py-libp2p's default also offers TLS, SECIO and /plaintext/2.0.0; over plaintext a
    dialer can claim any PeerID, which would void every signer == sender check we make.
    Mplex is left out because its streams hang under concurrent use.
    """
    kp = libp2p_key_pair(identity)
    sec_opt = {
        NOISE_PROTOCOL_ID: NoiseTransport(kp, noise_privkey=new_x25519_key_pair().private_key)
    }
    muxer_opt = {TProtocol(YAMUX_PROTOCOL_ID): Yamux}
    return new_host(key_pair=kp, sec_opt=sec_opt, muxer_opt=muxer_opt)


@dataclass
class NetStack:
    """A running host with its pubsub router and DHT."""

    host: Any
    pubsub: Pubsub
    gossipsub: GossipSub
    dht: KadDHT
    net: str

    @property
    def peer_id(self) -> str:
        return str(self.host.get_id().to_base58())

    def listen_addrs(self) -> list[str]:
        return [str(a) for a in self.host.get_addrs()]

    def connected_peers(self) -> list[str]:
        return [p.to_base58() for p in self.host.get_connected_peers()]


class ListenAddressInUse(OSError):
    pass


def check_listen_addrs(listen: list[str]) -> None:
    """Refuse a fixed TCP port that another process already listens on.

    py-libp2p listens with SO_REUSEPORT (for hole punching), so a second node on the same
    port starts "successfully" and the kernel then splits incoming dials between two
    different PeerIDs. A probe bind without SO_REUSEPORT fails in that case.
    """
    import socket

    for addr in listen:
        parts = addr.strip("/").split("/")
        if len(parts) < 4 or parts[2] != "tcp" or parts[0] not in ("ip4", "ip6"):
            continue
        host, port = parts[1], int(parts[3])
        if port == 0:
            continue
        family = socket.AF_INET if parts[0] == "ip4" else socket.AF_INET6
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # SO_REUSEADDR lets a restarted node take its port despite old TIME_WAIT
            # connections; only a live listener makes the bind fail.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as e:
                raise ListenAddressInUse(
                    e.errno, f"cannot listen on {addr}: {e.strerror} (another node or "
                    "program is using this port; choose another with --listen)") from e


@asynccontextmanager
async def run_stack(
    identity: Identity, net: str, listen: list[str], *, heartbeat_s: int = 1,
    configure_dht: Callable[[KadDHT], None] | None = None,
) -> AsyncIterator[NetStack]:
    """Start host, GossipSub and Kad-DHT; stop them all when the block exits.

    ``configure_dht`` runs before the host listens, so no peer ever meets the DHT's
    py-libp2p defaults (``p2pnode.net.kad.harden_dht``: spec 03 §5.2, §5.3)."""
    check_listen_addrs(listen)  # before patching: a refused start changes nothing
    patch_libp2p(net)
    host = build_host(identity)
    gossipsub = GossipSub(
        protocols=GOSSIPSUB_PROTOCOLS,
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=heartbeat_s,
        # The built-in limit of 10 msg/s per peer and topic drops silently; our
        # validators apply their own per-peer limits with reason codes.
        spam_protection_enabled=False,
        # On loopback every peer shares one IP; mesh diversity would starve the mesh.
        eclipse_protection_enabled=False,
    )
    pubsub = Pubsub(host, gossipsub, strict_signing=True)
    dht = KadDHT(host, DHTMode.SERVER, enable_random_walk=False)
    if configure_dht is not None:
        configure_dht(dht)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(host.run([multiaddr.Multiaddr(a) for a in listen]))
        await stack.enter_async_context(background_trio_service(pubsub))
        await stack.enter_async_context(background_trio_service(gossipsub))
        await pubsub.wait_until_ready()
        await stack.enter_async_context(background_trio_service(dht))
        yield NetStack(host=host, pubsub=pubsub, gossipsub=gossipsub, dht=dht, net=net)
