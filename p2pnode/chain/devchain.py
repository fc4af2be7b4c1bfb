"""``devchain``: the embedded chain, an append-only, hash-linked log of signed blocks in one
SQLite file (spec 08, draft). It makes the checks the EVM contract makes, with the same
reason codes (``base.ChainReason``), so a single-machine network needs no set-up:

    block  = {h: height, prev: hash of block h-1 (32 zero bytes for 0), ts: s,
              sender: Ed25519 key, kind: "genesis" | "anchor" | "bind" | "claim", body}
    hash   = SHA-256("p2pnode/devchain/v1" || canonical CBOR of the block)
    sig    = the sender's Ed25519 signature of the hash

Genesis (height 0) fixes the anchorers and the schedule. Several processes may share the
file (a local testnet): every append is one ``BEGIN IMMEDIATE`` transaction that reads the
tip, checks the transaction against the state derived so far, and writes the block and its
effect. :meth:`DevChain.verify` replays the log from genesis. For one machine only: there
is no consensus, only a file.
"""

from __future__ import annotations

import functools
import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from p2pnode.chain.base import (
    Anchor,
    ChainError,
    ChainReason,
    Claim,
    Schedule,
    anchor_refusal,
    claim_refusal,
)
from p2pnode.identity import Identity, verify
from p2pnode.wire import cbor

DOMAIN = b"p2pnode/devchain/v1"
ZERO = bytes(32)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY, hash BLOB NOT NULL, block BLOB NOT NULL, sig BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS anchors (
    epoch INTEGER PRIMARY KEY, root BLOB NOT NULL, count INTEGER NOT NULL,
    anchorer TEXT NOT NULL, at INTEGER NOT NULL, height INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS payees (account BLOB PRIMARY KEY, payee TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS claimed (account BLOB PRIMARY KEY, amount TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS paid (payee TEXT PRIMARY KEY, amount TEXT NOT NULL);
"""


F = TypeVar("F", bound=Callable[..., Any])


def _locked(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(self: DevChain, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return fn(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def block_hash(block: dict[str, Any]) -> bytes:
    return hashlib.sha256(DOMAIN + cbor.encode(block)).digest()


class DevChain:
    """The devchain file as seen by one sender (a node's identity)."""

    name = "devchain"

    def __init__(self, path: Path, identity: Identity,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.identity = identity
        self.sender = identity.public_key.hex()
        self.clock = clock
        # One connection, used from the event loop's worker threads one at a time.
        self._lock = threading.RLock()
        self.db = sqlite3.connect(str(path), isolation_level=None, timeout=30.0,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    # -- genesis --------------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, identity: Identity, anchorers: Sequence[str],
               schedule: Schedule, clock: Callable[[], float] = time.time) -> DevChain:
        """Make the chain (its genesis block) unless the file has one already."""
        chain = cls(path, identity, clock)
        if not 1 <= len(anchorers) <= 64:
            raise ValueError("1 to 64 anchorers")
        body = {"anchorers": [bytes.fromhex(a) for a in anchorers],
                "epoch_len_s": schedule.epoch_len_s, "grace_s": schedule.grace_s,
                "fallback_s": schedule.fallback_s}
        with chain._tx():
            if chain._tip() is None:
                chain._append("genesis", body)
        return chain

    @_locked
    def genesis(self) -> tuple[list[str], Schedule]:
        row = self.db.execute("SELECT block FROM blocks WHERE height = 0").fetchone()
        if row is None:
            raise ChainError(ChainReason.UNAVAILABLE, f"{self.path} has no genesis block")
        b = cbor.decode(bytes(row[0]))["body"]
        return ([a.hex() for a in b["anchorers"]],
                Schedule(b["epoch_len_s"], b["grace_s"], b["fallback_s"]))

    # -- the log --------------------------------------------------------------------------

    def _tx(self) -> Any:
        db, lock = self.db, self._lock

        class _Tx:
            def __enter__(self) -> None:
                lock.acquire()
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
                try:
                    db.execute("COMMIT" if exc_type is None else "ROLLBACK")
                finally:
                    lock.release()

        return _Tx()

    def _tip(self) -> tuple[int, bytes, int] | None:
        row = self.db.execute("SELECT height, hash, block FROM blocks "
                              "ORDER BY height DESC LIMIT 1").fetchone()
        if row is None:
            return None
        return int(row[0]), bytes(row[1]), int(cbor.decode(bytes(row[2]))["ts"])

    def _append(self, kind: str, body: dict[str, Any]) -> tuple[int, int, str]:
        """Write the next block (inside a transaction); (height, ts, hash hex)."""
        tip = self._tip()
        height, prev, last_ts = (0, ZERO, 0) if tip is None else (tip[0] + 1, tip[1], tip[2])
        ts = max(int(self.clock()), last_ts)
        block = {"h": height, "prev": prev, "ts": ts, "sender": self.identity.public_key,
                 "kind": kind, "body": body}
        h = block_hash(block)
        self.db.execute("INSERT INTO blocks VALUES(?,?,?,?)",
                        (height, h, cbor.encode(block), self.identity.sign(h)))
        return height, ts, h.hex()

    def _now(self) -> int:
        tip = self._tip()
        return max(int(self.clock()), tip[2] if tip else 0)

    # -- transactions ---------------------------------------------------------------------

    def anchor(self, epoch: int, root: bytes, count: int) -> Anchor:
        anchorers, schedule = self.genesis()
        with self._tx():
            self._check_anchor(epoch, root, self.sender, self._now(), anchorers, schedule)
            height, ts, tx = self._append("anchor", {"epoch": epoch, "root": root,
                                                     "count": count})
            self.db.execute("INSERT INTO anchors VALUES(?,?,?,?,?,?)",
                            (epoch, root, count, self.sender, ts, height))
        return Anchor(epoch, root, count, self.sender, ts, tx)

    def _check_anchor(self, epoch: int, root: bytes, sender: str, now: int,
                      anchorers: Sequence[str], schedule: Schedule) -> None:
        newest = self.latest()
        why = anchor_refusal(epoch, root, held=self.root_of(epoch),
                             newest=None if newest is None else newest[0], sender=sender,
                             now_s=now, anchorers=anchorers, schedule=schedule)
        if why is not None:
            raise ChainError(why, f"epoch {epoch} by {sender[:16]}")

    def bind(self, account: bytes, payee: str) -> None:
        anchorers, _ = self.genesis()
        if self.sender not in anchorers:
            raise ChainError(ChainReason.NOT_ANCHORER, "only an anchorer binds")
        with self._tx():
            self._append("bind", {"account": account, "payee": payee})
            self.db.execute("INSERT OR REPLACE INTO payees VALUES(?,?)", (account, payee))

    def claim(self, account: bytes, cumulative: int, proof: Sequence[bytes]) -> Claim:
        with self._tx():
            newest = self.latest()
            payee = self.payee_of(account)
            claimed = self.claimed(account)
            why = claim_refusal(account, cumulative, proof,
                                newest=None if newest is None else newest[1],
                                claimed=claimed, bound=payee is not None)
            if why is not None:
                raise ChainError(why, account.hex()[:16])
            assert newest is not None and payee is not None
            epoch = newest[0]
            paid = cumulative - claimed
            _, _, tx = self._append("claim", {"account": account, "cumulative": cumulative,
                                              "proof": list(proof)})
            self.db.execute("INSERT OR REPLACE INTO claimed VALUES(?,?)",
                            (account, str(cumulative)))
            self.db.execute("INSERT OR REPLACE INTO paid VALUES(?,?)",
                            (payee, str(self.paid_to(payee) + paid)))
        return Claim(account, payee, cumulative, paid, epoch, tx)

    # -- views ----------------------------------------------------------------------------

    def is_anchorer_key(self, key: bytes) -> bool:
        return key.hex() in self.genesis()[0]

    @_locked
    def root_of(self, epoch: int) -> bytes | None:
        row = self.db.execute("SELECT root FROM anchors WHERE epoch = ?", (epoch,)).fetchone()
        return bytes(row[0]) if row else None

    @_locked
    def latest(self) -> tuple[int, bytes] | None:
        row = self.db.execute("SELECT epoch, root FROM anchors ORDER BY epoch DESC "
                              "LIMIT 1").fetchone()
        return (int(row[0]), bytes(row[1])) if row else None

    @_locked
    def anchors(self, since: int = 0) -> list[Anchor]:
        rows = self.db.execute("SELECT a.epoch, a.root, a.count, a.anchorer, a.at, b.hash "
                               "FROM anchors a JOIN blocks b ON b.height = a.height "
                               "WHERE a.epoch >= ? ORDER BY a.epoch", (since,)).fetchall()
        return [Anchor(int(e), bytes(r), int(c), str(a), int(t), bytes(h).hex())
                for e, r, c, a, t, h in rows]

    @_locked
    def claimed(self, account: bytes) -> int:
        row = self.db.execute("SELECT amount FROM claimed WHERE account = ?",
                              (account,)).fetchone()
        return int(row[0]) if row else 0

    @_locked
    def payee_of(self, account: bytes) -> str | None:
        row = self.db.execute("SELECT payee FROM payees WHERE account = ?",
                              (account,)).fetchone()
        return str(row[0]) if row else None

    @_locked
    def paid_to(self, payee: str) -> int:
        row = self.db.execute("SELECT amount FROM paid WHERE payee = ?", (payee,)).fetchone()
        return int(row[0]) if row else 0

    @_locked
    def height(self) -> int:
        tip = self._tip()
        return -1 if tip is None else tip[0]

    @_locked
    def verify(self) -> int:
        """Replay the log: every block links to the one before, hashes to its hash and is
        signed by its sender; the blocks checked. Raises ChainError(BAD_PROOF) otherwise."""
        prev, n = ZERO, 0
        for height, h, raw, sig in self.db.execute(
                "SELECT height, hash, block, sig FROM blocks ORDER BY height"):
            block = cbor.decode(bytes(raw))
            if block["h"] != height or block["prev"] != prev or block_hash(block) != bytes(h):
                raise ChainError(ChainReason.BAD_PROOF, f"block {height} does not link")
            if not verify(block["sender"], bytes(h), bytes(sig)):
                raise ChainError(ChainReason.BAD_PROOF, f"block {height} is not signed")
            prev, n = bytes(h), n + 1
        return n

    @_locked
    def close(self) -> None:
        self.db.close()
