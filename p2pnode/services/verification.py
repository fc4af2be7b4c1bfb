"""Fetching an output before it is judged (spec 04 VER-1): the requester's shell of
:class:`p2pnode.jobs.verify.FetchAttempts`."""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from p2pnode.blobs.store import BlobStore
from p2pnode.identity import peer_id_str
from p2pnode.jobs.requester import CheckOutput
from p2pnode.jobs.verify import FETCH_RETRY_MS, FetchAttempts
from p2pnode.log import event
from p2pnode.ports import Transport, TransportError
from p2pnode.wire.reasons import Reason, WireError

log = logging.getLogger("p2pnode.requester")

BLOB_TIMEOUT_S = 60.0
# VER-1: a busy worker is fetched from again after this (never blamed for it).
BUSY_RETRY_S = 1.0


async def fetch_output(transport: Transport, blobs: BlobStore, c: CheckOutput, max_size: int,
                       addrs_of: Callable[[str], list[str]]) -> Reason | None:
    """Fetch ``c``'s output into ``blobs``: None once it is there, else the reason to
    reject the result for (VER-1). The caller bounds the whole by the verification
    deadline (LEASE-12)."""
    peer = peer_id_str(c.worker)
    attempts = FetchAttempts()
    while True:
        try:
            await transport.fetch_blob(peer, c.output, blobs,
                                            max_size=max_size,
                                            timeout=BLOB_TIMEOUT_S)
            return None
        except WireError as e:
            what, reason = attempts.on_failure(e.reason)
            no_stream = False
        except trio.TooSlowError:
            what, reason = attempts.on_failure(Reason.TRUNCATED)
            no_stream = False
        except TransportError:
            what, reason = attempts.on_failure(Reason.NOT_FOUND)
            no_stream = True
        except OSError as e:  # our own disk: nothing the worker did; try again
            event(log, "job.output.store_error", logging.WARNING, job=c.job.hex(),
                  error=str(e))
            await trio.sleep(BUSY_RETRY_S)
            continue
        if what == "reject":
            return reason
        if what == "wait":
            await trio.sleep(BUSY_RETRY_S)
            continue
        # Not provably the worker's fault: make sure a connection is up (dialling its
        # advertised address if none is; an open one, and the stream that will carry
        # the verdict, is never dropped) and try again.
        await trio.sleep(FETCH_RETRY_MS / 1000)
        if no_stream:  # a dead connection: the one the verdict goes on is newer
            await transport.reconnect(peer, addrs_of(peer))
        else:
            await transport.ensure_connected(peer, addrs_of(peer))
        event(log, "job.output.refetch", logging.DEBUG, job=c.job.hex(),
              attempt=attempts.failures, reason=reason.value)
