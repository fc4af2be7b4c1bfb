"""LGR-17: a ledger's store is bounded; a peer flooding it with valid credits of free keys
is refused at the bound with limit_exceeded, and what the node holds is kept."""

from __future__ import annotations

import random
from pathlib import Path

from prometheus_client import CollectorRegistry

from p2pnode.ledger import samples
from p2pnode.ledger.state import Params
from p2pnode.ledger.store import LedgerStore
from p2pnode.ports import Exchange
from p2pnode.services.ledger import LedgerMetrics, LedgerService
from p2pnode.wire.reasons import Ignore, Reason

NET = "bounds"
NOW = 1_700_000_000_000


class _Gossip:
    peer_id = "self"

    def set_validator(self, topic: str, validate: object) -> None:
        pass

    async def publish(self, topic: str, data: bytes) -> None:
        pass


class _Sync:
    def serve_sync(self, handle: object) -> None:
        pass

    async def open_sync(self, peer: str) -> Exchange:
        raise AssertionError("no sessions here")


def _service(tmp: Path, rejects: list[Reason], **kw: int) -> LedgerService:
    params = Params()
    return LedgerService(net=NET, params=params, store=LedgerStore(tmp / "l.db", params),
                         gossip=_Gossip(), topic="t", sync=_Sync(),  # type: ignore[arg-type]
                         wall_ms=lambda: NOW, clock=lambda: 0.0, rng=random.Random(1),
                         metrics=LedgerMetrics(CollectorRegistry()), reject=rejects.append,
                         **kw)


def _credits(n: int) -> list[bytes]:
    return [samples.credit(samples.identity(f"sybil{i}"), NET,
                           samples.identity(f"w{i}").public_key, 5, NOW - 1000 + i, i)
            for i in range(n)]


def test_the_store_refuses_new_elements_past_its_bound_and_keeps_what_it_holds(
        tmp_path: Path) -> None:
    rejects: list[Reason] = []
    svc = _service(tmp_path, rejects, max_elements=3)
    data = _credits(5)
    verdicts = [svc.validate(None, d, f"peer{i}") for i, d in enumerate(data)]
    assert [type(v).__name__ for v in verdicts[:3]] == ["Accept"] * 3
    assert all(isinstance(v, Ignore) and v.reason is Reason.LIMIT_EXCEEDED
               for v in verdicts[3:])
    assert rejects == [Reason.LIMIT_EXCEEDED] * 2 and svc.refused_full == 2
    assert len(svc.ledger) == 3 and svc.store.count() == 3
    # A duplicate of a held element is not "new": it is ignored as such, not as full.
    assert svc.validate(None, data[0], "peer9") == Ignore(Reason.DUPLICATE)
    # The bound holds across a restart: the store's rows are counted again.
    svc.store.close()
    again = _service(tmp_path, rejects, max_elements=3)
    assert len(again.ledger) == 3
    assert isinstance(again.validate(None, data[4], "peer4"), Ignore)


def test_the_byte_bound_counts_the_elements_bytes(tmp_path: Path) -> None:
    rejects: list[Reason] = []
    data = _credits(3)
    svc = _service(tmp_path, rejects, max_bytes=len(data[0]) + len(data[1]))
    assert [type(svc.validate(None, d, "p")).__name__ for d in data] == \
        ["Accept", "Accept", "Ignore"]
    assert svc.bytes_held == len(data[0]) + len(data[1])
