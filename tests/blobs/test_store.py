"""BlobStore: content addressing, durability, recovery on open, limits, concurrency."""

from __future__ import annotations

import io
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from p2pnode.blobs.store import TMP_DIR, BlobStore
from p2pnode.wire.cid import cid_of
from p2pnode.wire.reasons import Reason, WireError


def make(tmp: Path, **kw: object) -> BlobStore:
    return BlobStore(tmp / "blobs", tmp / "state.db", **kw)  # type: ignore[arg-type]


def blob_file(store: BlobStore, cid: bytes) -> Path:
    return store.root / cid[2:3].hex() / cid.hex()


def tmp_files(store: BlobStore) -> list[Path]:
    return list((store.root / TMP_DIR).iterdir())


def test_put_get_and_layout(tmp_path: Path) -> None:
    store = make(tmp_path, clock=lambda: 1234.5)
    data = b"hello blob"
    cid = store.put(data)
    assert cid == cid_of(data) and len(cid) == 34
    assert store.get(cid) == data
    assert store.has(cid) and store.size(cid) == len(data)
    assert blob_file(store, cid).read_bytes() == data
    assert store.count() == 1 and store.total_size() == len(data)
    row = store._db.execute("SELECT size, created_ms FROM blobs WHERE cid=?", (cid,)).fetchone()
    assert row == (len(data), 1234500)
    assert tmp_files(store) == []


def test_put_is_idempotent_and_empty_blob_works(tmp_path: Path) -> None:
    store = make(tmp_path)
    assert store.put(b"x") == store.put(b"x")
    empty = store.put(b"")
    assert store.get(empty) == b"" and store.size(empty) == 0
    assert store.count() == 2


def test_unknown_and_malformed_cids(tmp_path: Path) -> None:
    store = make(tmp_path)
    missing = cid_of(b"never stored")
    assert store.get(missing) is None and store.open(missing) is None
    assert not store.has(missing) and store.size(missing) is None
    assert not store.verify(missing) and not store.delete(missing)
    for bad in (b"", b"\x12\x20" + bytes(31), b"\x13\x20" + bytes(32)):
        with pytest.raises(WireError) as e:
            store.has(bad)
        assert e.value.reason is Reason.BAD_FIELD


def test_a_put_is_committed_when_it_returns(tmp_path: Path) -> None:
    store = make(tmp_path)
    cid = store.put(b"committed")
    # Another connection sees the row at once: no transaction was left open.
    other = sqlite3.connect(str(tmp_path / "state.db"))
    try:
        assert other.execute("SELECT size FROM blobs WHERE cid=?", (cid,)).fetchone() == (9,)
    finally:
        other.close()
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_blobs_survive_reopen(tmp_path: Path) -> None:
    store = make(tmp_path)
    cids = [store.put(os.urandom(n)) for n in (0, 1, 70_000)]
    contents = [store.get(c) for c in cids]
    store.close()
    again = make(tmp_path)
    assert [again.get(c) for c in cids] == contents
    assert again.count() == 3


def test_open_drops_rows_whose_file_is_missing_or_truncated(tmp_path: Path) -> None:
    store = make(tmp_path)
    keep, gone, cut = store.put(b"keep"), store.put(b"gone"), store.put(b"truncated later")
    store.close()
    blob_file(store, gone).unlink()
    blob_file(store, cut).write_bytes(b"trunc")
    again = make(tmp_path)
    assert again.has(keep) and not again.has(gone) and not again.has(cut)
    assert not blob_file(again, cut).exists()
    assert again.count() == 1


def test_open_removes_stray_temp_files(tmp_path: Path) -> None:
    store = make(tmp_path)
    w = store.writer()
    w.write(b"half written")  # a crash here leaves the temp file behind
    assert len(tmp_files(store)) == 1
    (store.root / TMP_DIR / "other.part").write_bytes(b"junk")
    store.close()
    again = make(tmp_path)
    assert tmp_files(again) == [] and again.count() == 0


def test_open_indexes_a_renamed_file_whose_row_was_never_written(tmp_path: Path) -> None:
    store = make(tmp_path)
    good, bad = store.put(b"good orphan"), store.put(b"bad orphan")
    with store._db:
        store._db.execute("DELETE FROM blobs")
    store.close()
    blob_file(store, bad).write_bytes(b"bad orphaN")  # same size, other bytes
    foreign = store.root / "ab" / "not-a-cid"
    foreign.parent.mkdir(exist_ok=True)
    foreign.write_bytes(b"left alone")
    again = make(tmp_path)
    assert again.get(good) == b"good orphan"
    assert not again.has(bad) and not blob_file(again, bad).exists()
    assert foreign.exists()


def test_size_limit(tmp_path: Path) -> None:
    store = make(tmp_path, max_blob_size=10)
    assert store.put(b"0123456789")
    with pytest.raises(WireError) as e:
        store.put(b"0123456789A")
    assert e.value.reason is Reason.TOO_LARGE
    with pytest.raises(WireError) as e:
        store.put_file(io.BytesIO(b"x" * 11))
    assert e.value.reason is Reason.TOO_LARGE
    assert store.count() == 1 and tmp_files(store) == []


def test_put_file_streams_from_a_path_or_a_stream(tmp_path: Path) -> None:
    store = make(tmp_path)
    data = os.urandom(300_000)
    src = tmp_path / "input.bin"
    src.write_bytes(data)
    assert store.put_file(src) == cid_of(data) == store.put_file(io.BytesIO(data))
    assert store.get(cid_of(data)) == data and store.count() == 1


def test_writer_with_expected_cid_stores_nothing_on_mismatch(tmp_path: Path) -> None:
    store = make(tmp_path)
    with store.writer(expected_cid=cid_of(b"expected")) as w:
        w.write(b"something else")
        with pytest.raises(WireError) as e:
            w.commit()
    assert e.value.reason is Reason.HASH_MISMATCH
    assert store.count() == 0 and tmp_files(store) == []
    with store.writer(expected_cid=cid_of(b"expected")) as w:
        w.write(b"expec")
        w.write(b"ted")
        assert w.commit() == cid_of(b"expected")
    assert store.get(cid_of(b"expected")) == b"expected"


def test_writer_left_uncommitted_aborts(tmp_path: Path) -> None:
    store = make(tmp_path)
    with pytest.raises(KeyError), store.writer() as w:
        w.write(b"partial")
        raise KeyError("the transfer failed")
    assert tmp_files(store) == [] and store.count() == 0
    with pytest.raises(RuntimeError):
        w.write(b"more")


def test_concurrent_puts_of_the_same_content(tmp_path: Path) -> None:
    store = make(tmp_path)
    data = os.urandom(200_000)
    n = 8
    barrier = threading.Barrier(n)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(store.put(data))
        except BaseException as e:  # collected and re-raised by the test
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [cid_of(data)] * n
    assert store.count() == 1 and store.get(cid_of(data)) == data
    assert tmp_files(store) == []


def test_concurrent_puts_of_different_content(tmp_path: Path) -> None:
    store = make(tmp_path)
    blobs = [os.urandom(10_000 + i) for i in range(16)]
    threads = [threading.Thread(target=store.put, args=(b,)) for b in blobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count() == 16
    assert all(store.get(cid_of(b)) == b for b in blobs)


def test_delete(tmp_path: Path) -> None:
    store = make(tmp_path)
    cid = store.put(b"to delete")
    f = store.open(cid)
    assert f is not None
    assert store.delete(cid)
    assert not store.delete(cid)
    assert store.get(cid) is None and not blob_file(store, cid).exists()
    with f:  # a reader that opened it first still reads it whole
        assert f.read() == b"to delete"
    store.close()
    assert not make(tmp_path).has(cid)


def test_verify_detects_a_corrupted_file(tmp_path: Path) -> None:
    store = make(tmp_path)
    cid = store.put(b"pristine")
    assert store.verify(cid)
    blob_file(store, cid).write_bytes(b"pristinE")
    assert not store.verify(cid)
    blob_file(store, cid).write_bytes(b"short")
    assert not store.verify(cid)


def test_a_file_removed_behind_the_store_is_dropped_on_read(tmp_path: Path) -> None:
    store = make(tmp_path)
    cid = store.put(b"vanishes")
    blob_file(store, cid).unlink()
    assert store.get(cid) is None
    assert not store.has(cid)


def test_open_reads_in_chunks(tmp_path: Path) -> None:
    store = make(tmp_path)
    data = os.urandom(150_000)
    cid = store.put(data)
    f = store.open(cid)
    assert f is not None
    with f:
        parts = iter(lambda: f.read(65536), b"")
        assert b"".join(parts) == data


def test_a_shared_connection_is_used_and_left_open(tmp_path: Path) -> None:
    db = sqlite3.connect(str(tmp_path / "shared.db"), isolation_level=None,
                         check_same_thread=False)
    store = BlobStore(tmp_path / "blobs", db)
    cid = store.put(b"shared")
    store.close()
    assert db.execute("SELECT count(*) FROM blobs").fetchone() == (1,)
    assert BlobStore(tmp_path / "blobs", db).get(cid) == b"shared"
    db.close()
