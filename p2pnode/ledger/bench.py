"""``p2pnode bench ledger``: what the ledger costs, with its baselines in the same run.

    reconcile   two replicas of n receipts differing in d, the differences among the newest
                and scattered: sync/1 bytes both ways against sending every id (32 n)
    identical   two equal replicas: bytes and round trips
    merge_rate  elements per second one replica's merge of another's new elements takes
    verify_rate credits checked per second (LGR-1..LGR-4: decode, receipt signature, ids,
                job fields), against raw_verify_rate, bare PyNaCl verification of the same
                receipts' signatures in the same process
    root_1m_s   seconds for the root and one proof of 1,000,000 accounts (LGR-12, LGR-13)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from typing import Any

import nacl.signing

from p2pnode.ledger import merkle, samples
from p2pnode.ledger.bench_reconcile import reconcile_figures
from p2pnode.ledger.elements import open_element
from p2pnode.ledger.state import Ledger, Params
from p2pnode.wire import cbor, envelope

NET = "bench"
T0 = 1_700_000_000_000
VERIFY_N = 2000


def _credits(n: int) -> list[bytes]:
    req = samples.identity("requester")
    workers = [samples.identity(f"w{i}").public_key for i in range(16)]
    return [samples.credit(req, NET, workers[i % 16], 100 + i % 7, T0 + i, i) for i in range(n)]


def verify_figures(n: int = VERIFY_N) -> dict[str, float]:
    data = _credits(n)
    now = T0 + n + 1
    t = time.perf_counter()
    for d in data:
        open_element(d, net=NET, now_ms=now)
    full = n / (time.perf_counter() - t)
    raws = [cbor.decode(d)["receipt"] for d in data]
    inputs = []
    for r in raws:
        e = cbor.decode(r)
        inputs.append((e["k"], envelope.signing_input(e["t"], e["v"], cbor.encode(e["b"])),
                       e["s"]))
    t = time.perf_counter()
    for k, msg, sig in inputs:
        nacl.signing.VerifyKey(k).verify(msg, sig)
    raw = n / (time.perf_counter() - t)
    return {"verify_rate": round(full), "raw_verify_rate": round(raw),
            "verify_vs_raw": round(full / raw, 3)}


def merge_figures(n: int = 20_000) -> dict[str, float]:
    data = _credits(min(n, 4000))
    now = T0 + n + 1
    els = [open_element(d, net=NET, now_ms=now) for d in data]
    params = Params()
    a, b = Ledger(params), Ledger(params)
    for el in els[: len(els) // 2]:
        a.add(el, now)
    for el in els:
        b.add(el, now)
    t = time.perf_counter()
    a.merge(b, now)
    dt = time.perf_counter() - t
    return {"merge_rate": round(len(els) / dt), "merged": len(els)}


def root_figures(accounts: int = 1_000_000) -> dict[str, float]:
    balances = {hashlib.sha256(i.to_bytes(8, "little")).digest(): 1 + i % 1000
                for i in range(accounts)}
    some = next(iter(balances))
    t = time.perf_counter()
    tree = merkle.build(balances)
    path = tree.proof(some)
    dt = time.perf_counter() - t
    assert path is not None and merkle.verify(tree.root, some, balances[some], path)
    return {"root_1m_s": round(dt, 3), "accounts": accounts, "depth": len(path)}


def run(n: int = 100_000, diff: int = 1_000, accounts: int = 1_000_000) -> dict[str, Any]:
    rec = reconcile_figures(n=n, diff=diff)
    out: dict[str, Any] = {"reconcile": rec["reconcile"], "identical": rec["identical"]}
    out.update(verify_figures())
    out.update(merge_figures())
    roots = root_figures(accounts)
    out["root_1m_s"] = roots["root_1m_s"]
    out["root"] = roots
    return out


def main_args(a: argparse.Namespace) -> int:
    out = run(a.n, a.diff, a.accounts)
    if a.json:
        print(json.dumps(out))
        return 0
    for r in out["reconcile"]:
        print(f"reconcile {r['case']:9}  n {r['n']}  diff {r['diff']}  bytes {r['bytes']}  "
              f"(ids: {r['full_bytes']}, ratio {r['ratio']:.4f})  "
              f"{r['bytes_per_diff']:.1f} B/diff  rounds {r['rounds']}")
    i = out["identical"]
    print(f"identical           bytes {i['bytes']}  rounds {i['rounds']}")
    print(f"verify              {out['verify_rate']}/s  (raw PyNaCl {out['raw_verify_rate']}/s,"
          f" {out['verify_vs_raw']:.2f} of it)")
    print(f"merge               {out['merge_rate']} elements/s")
    print(f"root + proof        {out['root_1m_s']} s for {out['root']['accounts']} accounts "
          f"(depth {out['root']['depth']})")
    return 0
