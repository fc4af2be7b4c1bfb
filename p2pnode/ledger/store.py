"""The ledger's SQLite store (``ledger.db`` in the node home; spec 07 LGR-15).

An element is committed (WAL, synchronous=FULL) before :meth:`LedgerStore.add` returns,
and the node acknowledges one (accepts it on gossip, answers a sync) only after that, so a
node killed at any point comes back with every element it acknowledged. Rows keep what
the element's check established, so a restart does not verify signatures again: the file
is the node's own. Roots of closed epochs are kept as computed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from p2pnode.ledger.elements import Element, Kind
from p2pnode.ledger.state import Params

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS elements (
    id BLOB PRIMARY KEY, kind TEXT NOT NULL, account BLOB NOT NULL, payer BLOB NOT NULL,
    amount INTEGER NOT NULL, ts INTEGER NOT NULL, job BLOB NOT NULL, raw BLOB NOT NULL,
    settle INTEGER NOT NULL, arrived INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS elements_settle ON elements(settle);
CREATE TABLE IF NOT EXISTS roots (
    epoch INTEGER PRIMARY KEY, root BLOB NOT NULL, count INTEGER NOT NULL,
    accounts INTEGER NOT NULL);
"""


class ParamsMismatch(ValueError):
    pass


class LedgerStore:
    def __init__(self, path: Path, params: Params) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        want = {"schema_version": str(SCHEMA_VERSION), "epoch_len_ms": str(params.epoch_len_ms),
                "grace_ms": str(params.grace_ms)}
        with self._lock, self.db:
            have = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
            if have and any(have.get(k) != v for k, v in want.items()):
                raise ParamsMismatch(
                    f"{path} was made with epoch_len_ms={have.get('epoch_len_ms')} "
                    f"grace_ms={have.get('grace_ms')}; this node has "
                    f"{params.epoch_len_ms} and {params.grace_ms} (a network's epochs "
                    "are one setting for all its nodes)")
            self.db.executemany("INSERT OR IGNORE INTO meta(key, value) VALUES(?, ?)",
                                list(want.items()))

    def add(self, items: Iterable[tuple[Element, int]], arrived_ms: int) -> int:
        """Commit elements with their settlement epochs (an element held already takes the
        new epoch: the ledger lowers one to a peer's claim); durable when it returns."""
        rows = [(el.id, el.kind.value, el.account, el.payer, el.amount, el.ts, el.job, el.raw,
                 settle, arrived_ms) for el, settle in items]
        with self._lock, self.db:
            before = self.db.total_changes
            self.db.executemany("INSERT INTO elements VALUES(?,?,?,?,?,?,?,?,?,?) ON CONFLICT"
                                "(id) DO UPDATE SET settle=excluded.settle", rows)
            return self.db.total_changes - before

    def load(self, raw: bool = True) -> Iterator[tuple[Element, int]]:
        """Every element with its settlement epoch; without its bytes unless ``raw``."""
        col = "raw" if raw else "x''"
        with self._lock:
            rows = self.db.execute("SELECT id, kind, account, payer, amount, ts, job, "
                                   f"{col}, settle FROM elements").fetchall()
        for i, kind, account, payer, amount, ts, job, raw, settle in rows:
            yield Element(id=bytes(i), kind=Kind(kind), account=bytes(account),
                          payer=bytes(payer), amount=int(amount), ts=int(ts), job=bytes(job),
                          raw=bytes(raw)), int(settle)

    def items(self, ids: Iterable[bytes]) -> list[tuple[bytes, int]]:
        """(bytes, settlement epoch) of the elements of ``ids`` held, in that order."""
        with self._lock:
            out = []
            for i in ids:
                row = self.db.execute("SELECT raw, settle FROM elements WHERE id=?",
                                      (i,)).fetchone()
                if row is not None:
                    out.append((bytes(row[0]), int(row[1])))
            return out

    def raw(self, ids: Iterable[bytes]) -> list[bytes]:
        return [r for r, _ in self.items(ids)]

    def size(self) -> tuple[int, int]:
        """(elements, bytes of their wire forms) held."""
        with self._lock:
            n, b = self.db.execute("SELECT count(*), coalesce(sum(length(raw)), 0) "
                                   "FROM elements").fetchone()
        return int(n), int(b)

    def save_root(self, epoch: int, root: bytes, count: int, accounts: int) -> None:
        with self._lock, self.db:
            self.db.execute("INSERT OR REPLACE INTO roots VALUES(?,?,?,?)",
                            (epoch, root, count, accounts))

    def roots(self) -> dict[int, tuple[bytes, int, int]]:
        with self._lock:
            rows = self.db.execute("SELECT epoch, root, count, accounts FROM roots").fetchall()
        return {int(e): (bytes(r), int(c), int(a)) for e, r, c, a in rows}

    def count(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT count(*) FROM elements").fetchone()[0])

    def check(self) -> str:
        with self._lock:
            return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self.db.close()
