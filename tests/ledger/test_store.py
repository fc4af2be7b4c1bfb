"""The ledger's SQLite store (spec 07 LGR-15): what is added comes back, settlements are
lowered in place, roots are kept, and a file is bound to its network's epoch parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pnode.ledger import samples
from p2pnode.ledger.elements import Element, Kind, open_element
from p2pnode.ledger.state import Ledger, Params
from p2pnode.ledger.store import LedgerStore, ParamsMismatch
from p2pnode.wire.cid import CID_PREFIX

NET = "devnet"
NOW = 1_700_000_000_000
PARAMS = Params(epoch_len_ms=20_000, grace_ms=5_000)
REQUESTER = samples.identity("requester")
WORKERS = [samples.identity("worker %d" % i).public_key for i in range(3)]


def credit(i: int) -> Element:
    data = samples.credit(REQUESTER, NET, WORKERS[i % 3], 100 + i, NOW - 100_000 + i * 7_000, i)
    return open_element(data, net=NET, now_ms=NOW)


def slash(i: int) -> Element:
    return Element(id=CID_PREFIX + bytes([i]) * 32, kind=Kind.SLASH, account=WORKERS[0],
                   payer=REQUESTER.public_key, amount=0, ts=NOW - 50_000, job=bytes(34),
                   raw=b"slash %d" % i)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


def test_added_elements_come_back_as_they_were(path: Path) -> None:
    items = [(credit(i), PARAMS.epoch(credit(i).ts) + i % 2) for i in range(10)]
    items.append((slash(1), 3))
    store = LedgerStore(path, PARAMS)
    assert store.add(items, NOW) == len(items)
    assert store.count() == len(items)
    assert sorted(store.load(), key=lambda x: x[0].id) == sorted(items, key=lambda x: x[0].id)
    store.close()
    again = LedgerStore(path, PARAMS)
    loaded = {el.id: (el, s) for el, s in again.load()}
    assert loaded == {el.id: (el, s) for el, s in items}
    assert again.count() == len(items)
    # The raw bytes of what is held, in the order asked; unknown ids are left out.
    ids = [items[3][0].id, b"\x12\x20" + bytes(32), items[0][0].id]
    assert again.raw(ids) == [items[3][0].raw, items[0][0].raw]
    again.close()


def test_a_restored_ledger_equals_the_one_stored(path: Path) -> None:
    ledger = Ledger(PARAMS)
    store = LedgerStore(path, PARAMS)
    for i in range(12):
        el = credit(i)
        s = ledger.add(el, NOW)
        assert s is not None
        store.add([(el, s)], NOW)
    store.close()
    restored = Ledger(PARAMS)
    again = LedgerStore(path, PARAMS)
    for el, s in again.load():
        restored.restore(el, s)
    again.close()
    assert restored.held == ledger.held
    assert restored.fingerprint() == ledger.fingerprint()
    last = PARAMS.epoch(NOW)
    assert restored.tree(last).root == ledger.tree(last).root


def test_a_second_add_updates_the_settlement(path: Path) -> None:
    store = LedgerStore(path, PARAMS)
    el = credit(0)
    assert store.add([(el, 9)], NOW) == 1
    assert store.add([(el, 7)], NOW + 1) == 1
    assert list(store.load()) == [(el, 7)]
    assert store.count() == 1
    store.close()
    again = LedgerStore(path, PARAMS)
    assert list(again.load()) == [(el, 7)]
    again.close()


def test_roots_are_saved_and_loaded(path: Path) -> None:
    store = LedgerStore(path, PARAMS)
    assert store.roots() == {}
    store.save_root(4, b"\x01" * 32, 10, 3)
    store.save_root(5, b"\x02" * 32, 12, 3)
    store.save_root(5, b"\x03" * 32, 13, 4)  # replaced
    store.close()
    again = LedgerStore(path, PARAMS)
    assert again.roots() == {4: (b"\x01" * 32, 10, 3), 5: (b"\x03" * 32, 13, 4)}
    again.close()


@pytest.mark.parametrize("other", [Params(epoch_len_ms=30_000, grace_ms=5_000),
                                   Params(epoch_len_ms=20_000, grace_ms=4_000),
                                   Params()])
def test_other_params_are_refused(path: Path, other: Params) -> None:
    store = LedgerStore(path, PARAMS)
    store.add([(credit(0), 1)], NOW)
    store.close()
    with pytest.raises(ParamsMismatch):
        LedgerStore(path, other)
    # The file is untouched: the right parameters still open it with its element.
    same = LedgerStore(path, PARAMS)
    assert same.count() == 1
    same.close()


def test_the_integrity_check(path: Path) -> None:
    store = LedgerStore(path, PARAMS)
    store.add([(credit(i), 1) for i in range(5)], NOW)
    assert store.check() == "ok"
    store.close()


def test_an_empty_add_changes_nothing(path: Path) -> None:
    store = LedgerStore(path, PARAMS)
    assert store.add([], NOW) == 0
    assert store.count() == 0 and list(store.load()) == []
    store.close()


def test_items_sizes_and_a_load_without_bytes(path: Path) -> None:
    store = LedgerStore(path, PARAMS)
    els = [credit(i) for i in range(4)]
    store.add([(e, 5 + i) for i, e in enumerate(els)], NOW)
    assert store.items([els[2].id, bytes(34), els[0].id]) == [(els[2].raw, 7), (els[0].raw, 5)]
    assert store.size() == (4, sum(len(e.raw) for e in els))
    bare = {e.id: (e, s) for e, s in store.load(raw=False)}
    assert {i: s for i, (_, s) in bare.items()} == {e.id: 5 + i for i, e in enumerate(els)}
    for e in els:
        got = bare[e.id][0]
        assert got.raw == b""
        assert (got.kind, got.account, got.payer, got.amount, got.ts, got.job) == \
            (e.kind, e.account, e.payer, e.amount, e.ts, e.job)
    store.close()
