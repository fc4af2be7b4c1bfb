"""The :class:`p2pnode.ports.Transport` of the job market over py-libp2p."""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID

from p2pnode.blobs.store import BlobStore
from p2pnode.net import dht as dhtx
from p2pnode.net.blob_protocol import NoStream, fetch_blob_to_store
from p2pnode.net.host import NetStack
from p2pnode.net.job_protocol import job_protocol_id, make_job_handler, open_exchange
from p2pnode.net.peering import dial
from p2pnode.net.streams import FramedStream
from p2pnode.ports import JobHandler, TransportError
from p2pnode.wire.reasons import Reason

CONNECT_TIMEOUT_S = 5.0
log = logging.getLogger("p2pnode.net")


class Libp2pTransport:
    def __init__(self, stack: NetStack, net: str, on_reject: Callable[[Reason], None]) -> None:
        self.stack = stack
        self.net = net
        self.on_reject = on_reject
        self.peer_id = stack.peer_id

    def serve_jobs(self, handler: JobHandler) -> None:
        self.stack.host.set_stream_handler(job_protocol_id(self.net),
                                           make_job_handler(self.net, handler, self.on_reject))

    async def open_job(self, peer: str) -> FramedStream:
        return await open_exchange(self.stack.host, peer, self.net)

    async def fetch_blob(self, peer: str, cid: bytes, store: BlobStore, *, max_size: int,
                         timeout: float) -> None:
        try:
            await fetch_blob_to_store(self.stack.host, peer, cid, store, net=self.net,
                                      max_size=max_size, timeout=timeout)
        except NoStream as e:
            raise TransportError(str(e)) from e

    async def dht_put(self, key: str, value: bytes, timeout: float) -> bool:
        return await dhtx.put_value(self.stack.dht, key, value, timeout)

    async def dht_get(self, key: str, timeout: float) -> bytes | None:
        return await dhtx.get_value(self.stack.dht, key, timeout)

    async def provide(self, key: str, timeout: float) -> bool:
        return await dhtx.provide(self.stack.dht, key, timeout)

    async def find_providers(self, key: str, timeout: float) -> list[str]:
        out = []
        for info in await dhtx.find_providers(self.stack.dht, key, timeout):
            peer = info.peer_id.to_base58()
            if peer == self.peer_id:
                continue
            try:
                with trio.fail_after(CONNECT_TIMEOUT_S):
                    await self.stack.host.connect(info)
            except (trio.TooSlowError, BaseLibp2pError, OSError):
                continue
            out.append(peer)
        return out

    def connected(self, peer: str) -> bool:
        return peer in self.stack.connected_peers()

    async def reconnect(self, peer: str, addrs: list[str]) -> bool:
        """A stream could not be opened to ``peer``: close its older connections, which a
        restarted peer leaves behind dead (py-libp2p keeps opening streams on them), and
        keep the newest, which the peer's current process made; with only one, dial
        afresh before dropping it."""
        network = self.stack.host.get_network()
        conns = network.get_connections(ID.from_base58(peer))
        for conn in conns[:-1]:
            with trio.move_on_after(CONNECT_TIMEOUT_S):
                try:
                    await conn.close()
                except (BaseLibp2pError, OSError) as e:
                    log.debug("closing a connection to %s: %s", peer, e)
        if len(conns) > 1:
            return True
        if conns:
            with trio.move_on_after(CONNECT_TIMEOUT_S):
                try:
                    await conns[0].close()
                except (BaseLibp2pError, OSError) as e:
                    log.debug("closing a connection to %s: %s", peer, e)
        return await self.ensure_connected(peer, addrs)

    async def ensure_connected(self, peer: str, addrs: list[str]) -> bool:
        if self.connected(peer):
            return True
        for addr in addrs:
            ok, _ = await dial(self.stack, f"{addr}/p2p/{peer}", timeout=CONNECT_TIMEOUT_S)
            if ok:
                return True
        return False

