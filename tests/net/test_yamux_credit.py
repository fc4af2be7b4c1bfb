"""Yamux receive credit between two real hosts: one WINDOW_UPDATE per half window read,
not one per read (spec 03 §6, the Yamux row)."""

from __future__ import annotations

import struct
from typing import Any

import trio

from tests.blobs.helpers import peer_of, two_hosts

PROTO = "/p2pnode-test/credit/1"
MSG = 1024
WINDOW = 256 * 1024  # Yamux's initial window
TYPE_WINDOW_UPDATE = 1
LIMIT_S = 30


async def _transfer(total: int) -> tuple[bytes, list[int]]:
    """The client writes ``total`` bytes in 1 KiB writes; the server reads them 1 KiB at
    a time. Returns what the server read and the increments of the WINDOW_UPDATE frames
    the server sent on that stream."""
    got = bytearray()
    updates: list[int] = []
    done = trio.Event()
    payload = bytes(i % 251 for i in range(total))

    async def handler(stream: Any) -> None:
        muxed = stream.muxed_stream
        conn = muxed.conn
        write_frame = conn._write_frame

        async def counting(data: bytes) -> None:
            _, typ, _, sid, length = struct.unpack(">BBHII", data[:12])
            if typ == TYPE_WINDOW_UPDATE and sid == muxed.stream_id and length:
                updates.append(length)
            await write_frame(data)

        conn._write_frame = counting
        while len(got) < total:
            chunk = await stream.read(MSG)
            if not chunk:
                break
            got.extend(chunk)
        done.set()

    with trio.fail_after(LIMIT_S):
        async with two_hosts() as (server, client):
            server.host.set_stream_handler(PROTO, handler)
            stream = await client.host.new_stream(peer_of(server), [PROTO])
            for i in range(0, total, MSG):
                await stream.write(payload[i:i + MSG])
            await done.wait()
            await stream.close()
    return bytes(got), updates


async def test_credit_goes_back_once_per_half_window() -> None:
    total = 3 * WINDOW  # the writer would stall after one window without credit
    got, updates = await _transfer(total)
    assert got == bytes(i % 251 for i in range(total))
    # Six half windows read: six updates, each for what was read since the last one.
    assert len(updates) == total // (WINDOW // 2)
    assert all(u >= WINDOW // 2 for u in updates)


async def test_reads_within_half_a_window_send_no_update() -> None:
    got, updates = await _transfer(WINDOW // 2 - MSG)
    assert len(got) == WINDOW // 2 - MSG
    assert updates == []
