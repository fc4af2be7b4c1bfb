"""NodeStore retention: terminal rows older than the cutoff go in bounded batches; a job
that can still resume never does."""

from __future__ import annotations

from pathlib import Path

from p2pnode.store import NodeStore

TERMINAL = ("completed", "failed")


def test_prune_deletes_old_terminal_rows_in_batches_and_keeps_open_ones(
        tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "state.db")
    for i in range(25):
        store.save_req_job(bytes([i]), b"spec", "completed" if i % 5 else "published",
                           {"i": i}, 0, 1_000 + i)
    store.save_req_job(b"new", b"spec", "completed", {}, 0, 9_000)
    store.save_work_job(b"w-old", b"spec", "accepted", {}, 1_000)
    store.save_work_job(b"w-run", b"spec", "running", {}, 1_000)
    store.save_peer("old-peer", ["/ip4/127.0.0.1/tcp/1"], 1_000)
    store.save_peer("new-peer", ["/ip4/127.0.0.1/tcp/2"], 9_000)

    batches = []
    while (n := store.prune("req_jobs", 5_000, TERMINAL, limit=7)) > 0:
        batches.append(n)
    assert batches == [7, 7, 6]
    left = {jid: row for jid, _spec, row, _c in store.req_jobs()}
    assert set(left) == {bytes([i]) for i in range(0, 25, 5)} | {b"new"}
    assert store.prune("work_jobs", 5_000, ("accepted", "failed")) == 1
    assert [j for j, *_ in store.work_jobs()] == [b"w-run"]
    assert store.prune("peers", 5_000) == 1
    assert store.peer_addrs("old-peer") == [] and store.peer_addrs("new-peer")
    assert store.row_counts() == {"req_jobs": 6, "work_jobs": 1, "peers": 1}
    store.close()
