"""devchain's own properties: a hash-linked log of signed blocks that several processes
share, that survives a restart and whose tampering is found by replaying it."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from p2pnode.chain.base import ChainError, ChainReason
from p2pnode.chain.devchain import DevChain
from p2pnode.wire import cbor
from tests.chain.dev_world import DevWorld
from tests.chain.world import SCHEDULE

E = 50
ROOT = bytes(range(32))[::-1]


def test_the_log_links_and_verifies_and_survives_a_reopen(tmp_path: Path) -> None:
    w = DevWorld(tmp_path)
    w.set_time(SCHEDULE.closes_at(E))
    w.chain(2).anchor(E, ROOT, 3)  # E % 3 = 2
    w.chain(0).bind(bytes(32), "someone")
    assert w.chain(0).height() == 2 and w.chain(0).verify() == 3
    w.close()
    again = DevChain(w.path, w.ids[1])
    assert again.latest() == (E, ROOT) and again.payee_of(bytes(32)) == "someone"
    assert again.genesis() == ([i.public_key.hex() for i in w.ids[:3]], SCHEDULE)
    again.close()


@pytest.mark.parametrize("field, value", [("body", {"epoch": E, "root": bytes(32), "count": 9}),
                                          ("ts", 1), ("prev", bytes(32))])
def test_a_changed_block_is_found_by_the_replay(tmp_path: Path, field: str,
                                                value: object) -> None:
    w = DevWorld(tmp_path)
    w.set_time(SCHEDULE.closes_at(E))
    w.chain(2).anchor(E, ROOT, 3)
    db = w.chain(0).db
    raw = db.execute("SELECT block FROM blocks WHERE height = 1").fetchone()[0]
    block = cbor.decode(bytes(raw))
    block[field] = value
    db.execute("UPDATE blocks SET block = ? WHERE height = 1", (cbor.encode(block),))
    with pytest.raises(ChainError) as e:
        w.chain(0).verify()
    assert e.value.reason is ChainReason.BAD_PROOF
    w.close()


def test_a_forged_signature_is_found_by_the_replay(tmp_path: Path) -> None:
    w = DevWorld(tmp_path)
    db = w.chain(0).db
    db.execute("UPDATE blocks SET sig = ? WHERE height = 0", (bytes(64),))
    with pytest.raises(ChainError, match="not signed"):
        w.chain(0).verify()
    w.close()


def _anchor_in_process(path: str, seed: bytes, now: int, out: multiprocessing.Queue[str]
                       ) -> None:
    from p2pnode.identity import Identity

    chain = DevChain(Path(path), Identity(seed), clock=lambda: now)
    try:
        chain.anchor(E, ROOT, 1)
        out.put("anchored")
    except ChainError as e:
        out.put(e.reason.value)


def test_processes_sharing_the_file_anchor_an_epoch_once(tmp_path: Path) -> None:
    w = DevWorld(tmp_path)
    now = SCHEDULE.closes_at(E) + 10 * SCHEDULE.fallback_s  # every anchorer is due
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=_anchor_in_process,
                         args=(str(w.path), w.ids[i].seed, now, out)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = sorted(out.get(timeout=5) for _ in procs)
    assert results == ["anchored", "root_exists", "root_exists"]
    assert w.chain(0).verify() == 2
    w.close()
