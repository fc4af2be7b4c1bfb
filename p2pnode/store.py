"""Node state in SQLite (``state.db`` in the node home).

Writes that the node acknowledges to anyone are committed (WAL, synchronous=FULL) before
the acknowledgement leaves, so ``kill -9`` loses nothing acknowledged.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- peers this node has seen, with the addresses they advertised: redialled at start
CREATE TABLE IF NOT EXISTS peers (
    peer_id TEXT PRIMARY KEY, addrs TEXT NOT NULL, seen_ms INTEGER NOT NULL);
-- jobs this node requested: the signed spec and the requester machine's state (JSON)
CREATE TABLE IF NOT EXISTS req_jobs (
    id BLOB PRIMARY KEY, spec BLOB NOT NULL, state TEXT NOT NULL, row TEXT NOT NULL,
    created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS req_jobs_state ON req_jobs(state);
-- receipts this node signed as a requester (spec 06 RCP-1), by their content id
CREATE TABLE IF NOT EXISTS receipts (
    id BLOB PRIMARY KEY, job BLOB NOT NULL, lease INTEGER NOT NULL, raw BLOB NOT NULL,
    ts_ms INTEGER NOT NULL, UNIQUE(job, lease));
-- jobs this node worked on
CREATE TABLE IF NOT EXISTS work_jobs (
    id BLOB PRIMARY KEY, spec BLOB NOT NULL, state TEXT NOT NULL, row TEXT NOT NULL,
    updated_ms INTEGER NOT NULL);
"""
# Retention deletes at most this many rows per transaction, so that one sweep never holds
# the lock (and the event loop's next write) for long; the caller loops until done.
PRUNE_BATCH = 500
_PRUNABLE = {"req_jobs": "updated_ms", "work_jobs": "updated_ms", "peers": "seen_ms"}


F = TypeVar("F", bound=Callable[..., Any])


def _locked(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(self: NodeStore, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return fn(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class NodeStore:
    """One SQLite connection, used from the event loop and from worker threads (writes
    that fsync run off the event loop); a lock serialises every use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        self.db.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', ?)",
            (str(SCHEMA_VERSION).encode(),),
        )

    @_locked
    def next_counter(self, name: str, floor: int = 1) -> int:
        """Increment a persisted counter to at least ``floor`` and return it; durable
        before it returns."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT INTO counters(name, value) VALUES(?, max(1, ?)) "
                "ON CONFLICT(name) DO UPDATE SET value = max(value + 1, ?)",
                (name, floor, floor),
            )
            row = self.db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
        return int(row[0])

    @_locked
    def counter(self, name: str) -> int:
        row = self.db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
        return int(row[0]) if row else 0

    # -- peers ----------------------------------------------------------------------------

    @_locked
    def save_peer(self, peer_id: str, addrs: list[str], now_ms: int) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO peers(peer_id, addrs, seen_ms) VALUES(?,?,?) ON CONFLICT(peer_id) "
                "DO UPDATE SET addrs=excluded.addrs, seen_ms=excluded.seen_ms",
                (peer_id, json.dumps(addrs), now_ms))

    @_locked
    def peer_addrs(self, peer_id: str) -> list[str]:
        """Where ``peer_id`` was last seen ([] if never)."""
        row = self.db.execute("SELECT addrs FROM peers WHERE peer_id = ?", (peer_id,)).fetchone()
        return list(json.loads(row[0])) if row else []

    @_locked
    def known_peers(self, since_ms: int, limit: int) -> list[tuple[str, list[str]]]:
        rows = self.db.execute(
            "SELECT peer_id, addrs FROM peers WHERE seen_ms >= ? ORDER BY seen_ms DESC LIMIT ?",
            (since_ms, limit))
        return [(str(p), list(json.loads(a))) for p, a in rows]

    # -- jobs ---------------------------------------------------------------------------

    @_locked
    def save_req_job(self, job_id: bytes, spec: bytes, state: str, row: dict[str, Any],
                     created_ms: int, now_ms: int) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO req_jobs(id, spec, state, row, created_ms, updated_ms) "
                "VALUES(?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET state=excluded.state, "
                "row=excluded.row, updated_ms=excluded.updated_ms",
                (job_id, spec, state, json.dumps(row), created_ms, now_ms))

    @_locked
    def req_jobs(self, states: tuple[str, ...] | None = None
                 ) -> list[tuple[bytes, bytes, dict[str, Any], int]]:
        q = "SELECT id, spec, row, created_ms FROM req_jobs"
        args: tuple[str, ...] = ()
        if states:
            q += " WHERE state IN (%s)" % ",".join("?" * len(states))
            args = states
        return [(bytes(jid), bytes(spec), json.loads(row), int(created))
                for jid, spec, row, created in self.db.execute(q + " ORDER BY created_ms", args)]

    @_locked
    def save_receipt(self, receipt_id: bytes, job: bytes, lease: int, raw: bytes,
                     ts_ms: int) -> bytes:
        """Store a receipt, durable before it returns; one per (job, lease): a second one
        for the same lease is not stored and the first one's raw bytes come back."""
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO receipts(id, job, lease, raw, ts_ms) "
                            "VALUES(?,?,?,?,?)", (receipt_id, job, lease, raw, ts_ms))
            row = self.db.execute("SELECT raw FROM receipts WHERE job=? AND lease=?",
                                  (job, lease)).fetchone()
        return bytes(row[0])

    @_locked
    def delete_receipt(self, job: bytes, lease: int) -> None:
        with self.db:
            self.db.execute("DELETE FROM receipts WHERE job=? AND lease=?", (job, lease))

    @_locked
    def receipts(self, job: bytes | None = None) -> list[bytes]:
        q, args = "SELECT raw FROM receipts", ()
        if job is not None:
            q, args = q + " WHERE job=?", (job,)  # type: ignore[assignment]
        return [bytes(r[0]) for r in self.db.execute(q + " ORDER BY ts_ms", args)]

    @_locked
    def receipt_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM receipts").fetchone()[0])

    @_locked
    def save_work_job(self, job_id: bytes, spec: bytes, state: str, row: dict[str, Any],
                      now_ms: int) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO work_jobs(id, spec, state, row, updated_ms) VALUES(?,?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET state=excluded.state, row=excluded.row, "
                "updated_ms=excluded.updated_ms",
                (job_id, spec, state, json.dumps(row), now_ms))

    @_locked
    def work_jobs(self, states: tuple[str, ...] | None = None
                  ) -> list[tuple[bytes, bytes, str, dict[str, Any]]]:
        q = "SELECT id, spec, state, row FROM work_jobs"
        args: tuple[str, ...] = ()
        if states:
            q += " WHERE state IN (%s)" % ",".join("?" * len(states))
            args = states
        return [(bytes(jid), bytes(spec), str(state), json.loads(row))
                for jid, spec, state, row in self.db.execute(q, args)]

    # -- retention ------------------------------------------------------------------------

    @_locked
    def prune(self, table: str, before_ms: int, states: tuple[str, ...] | None = None,
              limit: int = PRUNE_BATCH) -> int:
        """Delete up to ``limit`` rows of ``table`` last written before ``before_ms`` (and,
        for job tables, in one of ``states``: the caller names the terminal ones, so a job
        that can still resume is never deleted). Returns how many went; run it off the
        event loop, in a loop until it returns less than ``limit``."""
        column = _PRUNABLE[table]
        where = f"{column} < ?"
        args: list[Any] = [before_ms]
        if states is not None:
            where += " AND state IN (%s)" % ",".join("?" * len(states))
            args += states
        with self.db:
            n = self.db.execute(
                f"DELETE FROM {table} WHERE rowid IN "
                f"(SELECT rowid FROM {table} WHERE {where} LIMIT ?)", (*args, limit)).rowcount
        return int(n)

    @_locked
    def row_counts(self) -> dict[str, int]:
        return {t: int(self.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
                for t in _PRUNABLE}

    @_locked
    def close(self) -> None:
        self.db.close()
