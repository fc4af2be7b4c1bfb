"""Content-addressed blobs on disk, indexed in SQLite.

Layout under ``root``::

    root/<2 hex>/<68 hex>      one file per blob: the hex cid, sharded by the first
                               digest byte (the cid itself always starts with 1220)
    root/tmp/                  files being written; emptied when the store opens

Index: ``blobs(cid BLOB PRIMARY KEY, size INTEGER, created_ms INTEGER, used_ms INTEGER)``.

The store holds at most ``quota_bytes`` and lets blobs go by the policy of
``p2pnode.blobs.retention`` (spec 05 §4.4): a put that would go over the quota first evicts
unpinned blobs, least recently used first, and is refused with ``StoreFull`` if that cannot
make room; ``collect`` evicts unpinned blobs unused for ``retention_s``. Pins are held in
memory by their owners (the market's shells pin what their open jobs need). Files being
written under ``tmp/`` are not counted until committed; a writer stops as soon as its blob
alone would exceed the quota.

A blob is durable before ``put`` returns its cid: the content is written to a temporary
file and fsynced, renamed to its final name, the directory fsynced, and then the index row
is committed (WAL, synchronous=FULL). A crash between two of those steps leaves either a
temporary file (removed on open), a named file without a row (re-hashed on open and
indexed if it hashes to its name, else removed) or nothing. ``delete`` removes the file
before the row, so a crash never brings back a deleted blob. An index row whose file is
gone is dropped on open and on the first read that notices.

One ``BlobStore`` per ``root``. Its methods may be called from worker threads (the libp2p
shell runs large writes in one); they serialise their own use of the SQLite connection.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from p2pnode.blobs.protocol import CHUNK_SIZE, MAX_BLOB_SIZE
from p2pnode.blobs.retention import GcPlan, HeldBlob, RetentionPolicy, plan_gc
from p2pnode.log import event
from p2pnode.wire.cid import CID_PREFIX, CID_SIZE, CidHasher, check_cid, cid_of
from p2pnode.wire.reasons import Reason, WireError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    cid BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
"""
log = logging.getLogger("p2pnode.blobs")
# Defaults of the node's `blobs_quota_bytes` and `blobs_retention_s` (spec 05 §4.4).
DEFAULT_QUOTA_BYTES = 4 << 30
DEFAULT_RETENTION_S = 86_400
TMP_DIR = "tmp"
_TMP_SUFFIX = ".part"
_SYNC_FULL = 2


class StoreFull(OSError):
    """A put that does not fit under the quota even after evicting every unpinned blob.

    An ``OSError`` (ENOSPC): to the market it is this node's own disk being full, never
    the fault of the peer whose blob was being fetched."""

    reason = Reason.LIMIT_EXCEEDED

    def __init__(self, size: int, usage: int, quota: int) -> None:
        super().__init__(errno.ENOSPC, "blob store quota: %d bytes do not fit (%d of %d held, "
                         "pinned or recent)" % (size, usage, quota))
        self.size = size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobWriter:
    """Streams one blob into the store: ``write`` pieces, then ``commit`` (or ``abort``).

    The content is hashed as it is written; ``commit`` fsyncs, installs it under its cid
    and returns the cid. With ``expected_cid`` a mismatch raises WireError(HASH_MISMATCH)
    and nothing is stored. Used as a context manager, leaving the block uncommitted aborts.
    """

    def __init__(self, store: BlobStore, expected_cid: bytes | None = None) -> None:
        self._store = store
        self._expected = check_cid(expected_cid) if expected_cid is not None else None
        fd, name = tempfile.mkstemp(dir=store.root / TMP_DIR, suffix=_TMP_SUFFIX)
        self._path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._hasher = CidHasher()
        self.size = 0
        self._closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise RuntimeError("writer already committed or aborted")
        if self.size + len(data) > self._store.max_blob_size:
            self.abort()
            raise WireError(
                Reason.TOO_LARGE, "blob exceeds %d bytes" % self._store.max_blob_size)
        quota = self._store.policy.quota_bytes
        if self.size + len(data) > quota:  # could never fit: stop writing it now
            self.abort()
            self._store._refused(self.size + len(data))
            raise StoreFull(self.size + len(data), self._store.usage, quota)
        self._file.write(data)
        self._hasher.update(data)
        self.size += len(data)

    def commit(self) -> bytes:
        if self._closed:
            raise RuntimeError("writer already committed or aborted")
        cid = self._hasher.cid()
        if self._expected is not None and cid != self._expected:
            self.abort()
            raise WireError(Reason.HASH_MISMATCH, "content does not hash to the expected cid")
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._store._install(self._path, cid, self.size)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return cid

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()


class BlobStore:
    """Blobs by content id, durable before acknowledged (see the module docstring).

    ``db`` is a path (the store opens its own connection: WAL, synchronous=FULL) or an
    open connection made with ``check_same_thread=False``, which the store does not close;
    pass a path when other code uses the same connection in transactions, because this
    store may write from a worker thread.
    """

    def __init__(
        self,
        root: Path | str,
        db: sqlite3.Connection | Path | str,
        *,
        max_blob_size: int = MAX_BLOB_SIZE,
        quota_bytes: int = DEFAULT_QUOTA_BYTES,
        retention_s: float = DEFAULT_RETENTION_S,
        clock: Callable[[], float] = time.time,
        on_evict: Callable[[str, int], None] | None = None,
        on_refuse: Callable[[int], None] | None = None,
    ) -> None:
        """``on_evict(why, count)`` (why: ``expired`` or ``pressure``) and
        ``on_refuse(size)`` are told of what the quota and retention did (for metrics)."""
        self.root = Path(root)
        self.max_blob_size = max_blob_size
        self.policy = RetentionPolicy(quota_bytes=quota_bytes,
                                      retention_ms=int(retention_s * 1000))
        self._clock = clock
        self._on_evict = on_evict
        self._on_refuse = on_refuse
        self._lock = threading.RLock()
        self._pins: dict[Hashable, frozenset[bytes]] = {}
        self._touched: dict[bytes, int] = {}  # last uses not yet written to the index
        self._usage = 0
        if isinstance(db, sqlite3.Connection):
            self._db = db
            self._owns_db = False
        else:
            self._db = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False)
            self._owns_db = True
            self._db.execute("PRAGMA journal_mode=WAL")
        # An acknowledged put must survive power loss; FULL is what the node uses.
        if int(self._db.execute("PRAGMA synchronous").fetchone()[0]) < _SYNC_FULL:
            self._db.execute("PRAGMA synchronous=FULL")
        with self._db:
            self._db.executescript(_SCHEMA)
            cols = {r[1] for r in self._db.execute("PRAGMA table_info(blobs)")}
            if "used_ms" not in cols:  # an index from before retention
                self._db.execute("ALTER TABLE blobs ADD COLUMN used_ms INTEGER")
        (self.root / TMP_DIR).mkdir(parents=True, exist_ok=True)
        self._recover()
        self._usage = self.total_size()

    # -- paths and index -----------------------------------------------------------------

    def path(self, cid: bytes) -> Path:
        """Where the blob's file lies (whether or not it is held)."""
        return self._path(cid)

    def _path(self, cid: bytes) -> Path:
        return self.root / cid[2:3].hex() / cid.hex()

    def _indexed_size(self, cid: bytes) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT size FROM blobs WHERE cid=?", (cid,)).fetchone()
        return None if row is None else int(row[0])

    def _drop_row(self, cid: bytes) -> None:
        with self._lock:
            with self._db:
                self._db.execute("DELETE FROM blobs WHERE cid=?", (cid,))
            self._usage = self.total_size()

    def _install(self, tmp: Path, cid: bytes, size: int) -> None:
        """Move a synced temporary file to its final name and index it (durably)."""
        final = self._path(cid)
        with self._lock:
            if self._indexed_size(cid) is not None and final.exists():
                tmp.unlink()
                self._touch(cid)
                return
            self._make_room(size)
            if not final.parent.is_dir():
                final.parent.mkdir(exist_ok=True)
                _fsync_dir(self.root)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
            self._index(cid, size)

    def _index(self, cid: bytes, size: int) -> None:
        now = int(self._clock() * 1000)
        with self._lock, self._db:
            n = self._db.execute(
                "INSERT OR IGNORE INTO blobs(cid, size, created_ms, used_ms) "
                "VALUES(?, ?, ?, ?)", (cid, size, now, now)).rowcount
            self._usage += size if n else 0

    def _touch(self, cid: bytes) -> None:
        # In memory until the next sweep or close: a read (the blob server's, on the event
        # loop) must not cost a synced write. A crash loses only how recent the use was.
        with self._lock:
            self._touched[cid] = int(self._clock() * 1000)

    def _flush_touched(self) -> None:
        with self._lock:
            if self._touched:
                with self._db:
                    self._db.execute("BEGIN")
                    self._db.executemany("UPDATE blobs SET used_ms=? WHERE cid=?",
                                         [(t, c) for c, t in self._touched.items()])
                self._touched.clear()

    # -- quota and retention (spec 05 §4.4) ----------------------------------------------

    def pin(self, owner: Hashable, cids: Iterable[bytes]) -> None:
        """Keep ``cids`` (held or still to come) for ``owner`` until ``unpin(owner)``."""
        with self._lock:
            self._pins[owner] = self._pins.get(owner, frozenset()) | frozenset(cids)

    def unpin(self, owner: Hashable) -> None:
        with self._lock:
            self._pins.pop(owner, None)

    def pinned(self) -> frozenset[bytes]:
        with self._lock:
            return frozenset().union(*self._pins.values())

    @property
    def usage(self) -> int:
        """Bytes held (the quota counts the blobs' sizes)."""
        return self._usage

    def _held(self) -> list[HeldBlob]:
        rows = self._db.execute(
            "SELECT cid, size, coalesce(used_ms, created_ms) FROM blobs").fetchall()
        return [HeldBlob(bytes(c), int(n), self._touched.get(bytes(c), int(u)))
                for c, n, u in rows]

    def _evict(self, plan: GcPlan) -> None:
        for why, cids in (("expired", plan.expired), ("pressure", plan.pressure)):
            if not cids:
                continue
            for cid in cids:  # files before rows, as in ``delete``
                with contextlib.suppress(FileNotFoundError):
                    self._path(cid).unlink()
                self._touched.pop(cid, None)
            with self._db:  # one transaction (the connection autocommits otherwise)
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM blobs WHERE cid=?", [(c,) for c in cids])
            if self._on_evict is not None:
                self._on_evict(why, len(cids))
        if plan.evict:
            self._usage = self.total_size()
            event(log, "blobs.evicted", logging.INFO if plan.pressure else logging.DEBUG,
                  expired=len(plan.expired), pressure=len(plan.pressure),
                  usage=self._usage, quota=self.policy.quota_bytes)

    def _make_room(self, size: int) -> None:
        """Called under the lock before ``size`` new bytes are installed."""
        if self._usage + size <= self.policy.quota_bytes:
            return
        plan = plan_gc(self._held(), self.pinned(), int(self._clock() * 1000), self.policy,
                       size)
        if not plan.fits:
            self._refused(size)
            raise StoreFull(size, self._usage, self.policy.quota_bytes)
        self._evict(plan)

    def _refused(self, size: int) -> None:
        if self._on_refuse is not None:
            self._on_refuse(size)
        event(log, "blobs.quota.refused", logging.WARNING, size=size, usage=self._usage,
              quota=self.policy.quota_bytes)

    def collect(self) -> GcPlan:
        """Evict unpinned blobs unused for the retention time (and any excess over the
        quota, which a lowered quota leaves); the periodic sweep."""
        with self._lock:
            self._flush_touched()
            plan = plan_gc(self._held(), self.pinned(), int(self._clock() * 1000),
                           self.policy)
            self._evict(plan)
            return plan

    def _recover(self) -> None:
        for p in (self.root / TMP_DIR).iterdir():
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                p.unlink()
        with self._lock:
            rows = self._db.execute("SELECT cid, size FROM blobs").fetchall()
        indexed = set()
        for cid, size in rows:
            cid = bytes(cid)
            path = self._path(cid)
            try:
                ok = path.stat().st_size == size
            except FileNotFoundError:
                ok = False
            if ok:
                indexed.add(cid)
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self._drop_row(cid)
        for shard in self.root.iterdir():
            if shard.name == TMP_DIR or not shard.is_dir() or len(shard.name) != 2:
                continue
            for f in shard.iterdir():
                try:
                    cid = bytes.fromhex(f.name)
                except ValueError:
                    continue  # not ours
                if len(cid) != CID_SIZE or not cid.startswith(CID_PREFIX) or cid in indexed:
                    continue
                if cid[2:3].hex() != shard.name:
                    continue
                # Renamed but not indexed: that put never returned. The file was synced
                # before its rename, so it is kept if it hashes to its name.
                size = f.stat().st_size
                if size <= self.max_blob_size and self._hash_file(f) == cid:
                    self._index(cid, size)
                else:
                    f.unlink()

    @staticmethod
    def _hash_file(path: Path) -> bytes:
        h = CidHasher()
        with open(path, "rb") as f:
            while chunk := f.read(16 * CHUNK_SIZE):
                h.update(chunk)
        return h.cid()

    # -- public API ----------------------------------------------------------------------

    def writer(self, expected_cid: bytes | None = None) -> BlobWriter:
        """A streaming writer; see :class:`BlobWriter`."""
        return BlobWriter(self, expected_cid)

    def put(self, data: bytes | bytearray | memoryview) -> bytes:
        """Store ``data``; return its cid once durable. WireError(TOO_LARGE) over the limit."""
        if len(data) > self.max_blob_size:
            raise WireError(Reason.TOO_LARGE, "%d > %d bytes" % (len(data), self.max_blob_size))
        cid = cid_of(bytes(data))
        if self.has(cid) and self._path(cid).exists():
            self._touch(cid)  # a put of held content is a use of it
            return cid
        with self.writer(cid) as w:
            w.write(data)
            return w.commit()

    def put_file(self, src: BinaryIO | Path | str) -> bytes:
        """Store the content of a file or binary stream without holding it in memory."""
        if isinstance(src, Path | str):
            with open(src, "rb") as f:
                return self.put_file(f)
        with self.writer() as w:
            while chunk := src.read(16 * CHUNK_SIZE):
                w.write(chunk)
            return w.commit()

    def has(self, cid: bytes) -> bool:
        return self._indexed_size(check_cid(cid)) is not None

    def size(self, cid: bytes) -> int | None:
        return self._indexed_size(check_cid(cid))

    def open(self, cid: bytes) -> BinaryIO | None:
        """The blob's file opened for reading, or None. The caller closes it.

        The open file stays readable even if the blob is deleted meanwhile."""
        if not self.has(cid):
            return None
        try:
            f = open(self._path(cid), "rb")  # noqa: SIM115 (the caller closes it)
        except FileNotFoundError:
            self._drop_row(cid)
            return None
        self._touch(cid)
        return f

    def get(self, cid: bytes) -> bytes | None:
        f = self.open(cid)
        if f is None:
            return None
        with f:
            return f.read()

    def delete(self, cid: bytes) -> bool:
        """Remove a blob; True if it was held."""
        check_cid(cid)
        with self._lock:
            held = self._indexed_size(cid) is not None
            # File before row: a crash in between leaves a row without a file, which the
            # next open drops, rather than a file the next open would index again.
            with contextlib.suppress(FileNotFoundError):
                self._path(cid).unlink()
            self._drop_row(cid)
        return held

    def verify(self, cid: bytes) -> bool:
        """Re-hash the stored file; True if it is held and still hashes to ``cid``."""
        size = self.size(cid)
        if size is None:
            return False
        path = self._path(cid)
        try:
            return path.stat().st_size == size and self._hash_file(path) == cid
        except FileNotFoundError:
            return False

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM blobs").fetchone()[0])

    def total_size(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT coalesce(sum(size), 0) FROM blobs")
                       .fetchone()[0])

    def close(self) -> None:
        with contextlib.suppress(sqlite3.ProgrammingError):  # a borrowed db closed first
            self._flush_touched()
        if self._owns_db:
            self._db.close()
