"""The libp2p side of ``/p2pnode/<net>/job/1`` (spec/04-jobs.md §5): one exchange per
stream, each message one frame holding a signed envelope."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID

from p2pnode.identity import public_key_from_peer_id
from p2pnode.jobs.model import MAX_FRAME
from p2pnode.net.streams import FramedStream
from p2pnode.ports import TransportError
from p2pnode.wire.reasons import Reason, WireError

EXCHANGE_TIMEOUT_S = 10.0


def job_protocol_id(net: str) -> TProtocol:
    return TProtocol(f"/p2pnode/{net}/job/1")


def remote_public_key(stream: Any) -> bytes:
    """The Ed25519 key the Noise handshake authenticated for this stream's peer."""
    peer: ID = stream.muxed_conn.peer_id
    return public_key_from_peer_id(peer.to_bytes())


Handler = Callable[[FramedStream, bytes, bytes], Awaitable[None]]


def make_job_handler(handle: Handler, on_error: Callable[[Reason], None]) -> Any:
    """Wrap ``handle(framed, remote_key, first_frame)``; no error escapes into the host."""

    async def handler(stream: Any) -> None:
        framed = FramedStream(stream, MAX_FRAME)
        try:
            remote = remote_public_key(stream)
            first = await framed.receive(EXCHANGE_TIMEOUT_S)
            await handle(framed, remote, first)
        except WireError as e:
            on_error(e.reason)
        except trio.TooSlowError:
            on_error(Reason.TRUNCATED)
        except Exception:  # a broken peer must never take the node down
            on_error(Reason.MALFORMED)
        finally:
            await framed.close()

    return handler


async def open_exchange(host: Any, peer_id: str, net: str) -> FramedStream:
    """A new ``/job/1`` stream; TransportError if none can be had in EXCHANGE_TIMEOUT_S."""
    try:
        with trio.fail_after(EXCHANGE_TIMEOUT_S):
            stream = await host.new_stream(ID.from_base58(peer_id), [job_protocol_id(net)])
    except (trio.TooSlowError, BaseLibp2pError, OSError, ValueError) as e:
        raise TransportError(f"no stream to {peer_id}: {e}") from e
    return FramedStream(stream, MAX_FRAME)


async def request(host: Any, peer_id: str, net: str, payload: bytes,
                  timeout: float = EXCHANGE_TIMEOUT_S) -> bytes:
    """Send one message, return the one reply."""
    framed = await open_exchange(host, peer_id, net)
    try:
        await framed.send(payload)
        return await framed.receive(timeout)
    finally:
        await framed.close()
