"""``p2pnode ledger``: balances, epoch roots and Merkle proofs of the running node's ledger,
and the offline check of a proof (spec 07)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from p2pnode.cli_common import EXIT_ERROR, EXIT_OK, ask, print_json


def cmd_balance(a: argparse.Namespace) -> int:
    d = ask(a, "ledger.balance", {"peer": a.peer, "epoch": a.epoch})
    if a.json:
        print_json(d)
        return EXIT_OK
    print(f"account     {d['peer_id']}")
    print(f"epoch       {d['epoch']} (cumulative through it)")
    print(f"cumulative  {d['cumulative']} micro-units")
    for e, v in d["by_epoch"].items():
        print(f"  epoch {e}: {v}")
    print(f"spent       {d['spent']} (as a requester)")
    if d["slashes"]:
        print(f"slashes     {d['slashes']}")
    return EXIT_OK


def cmd_root(a: argparse.Namespace) -> int:
    d = ask(a, "ledger.root", {"epoch": a.epoch})
    if a.json:
        print_json(d)
    else:
        print(f"epoch {d['epoch']}  root {d['root']}  accounts {d['accounts']}  "
              f"elements {d['elements']}")
    return EXIT_OK


def cmd_proof(a: argparse.Namespace) -> int:
    d = ask(a, "ledger.proof", {"epoch": a.epoch, "peer": a.peer})
    if a.json:
        print_json(d)
    else:
        print(json.dumps(d, indent=2))
    return EXIT_OK


def cmd_verify_proof(a: argparse.Namespace) -> int:
    from p2pnode.api.ledger import check_proof

    try:
        with open(a.file, encoding="utf-8") if a.file != "-" else sys.stdin as f:
            d = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        print(f"error: {a.file}: {e}", file=sys.stderr)
        return EXIT_ERROR
    ok, why = check_proof(d)
    if a.json:
        print_json({"valid": ok, "reason": why, "epoch": d.get("epoch") if isinstance(
            d, dict) else None})
    elif ok:
        print(f"valid: {d['cumulative']} for {d['account']} under root {d['root']} "
              f"(epoch {d.get('epoch', '?')})")
    else:
        print(f"invalid: {why}")
    return EXIT_OK if ok else EXIT_ERROR


def add_parser(sub: Any) -> None:
    lg = sub.add_parser("ledger", help="rewards: balances, epoch roots, Merkle proofs",
                        description="The reward ledger of the running node (spec 07): "
                        "cumulative balances derived from signed receipts and slashes, the "
                        "Merkle root of every closed epoch, and proofs against it.")
    lsub = lg.add_subparsers(dest="ledger_command", metavar="SUBCOMMAND", required=True)

    def ladd(name: str, help_: str, func: Any, home: bool = True) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = lsub.add_parser(name, help=help_, description=help_)
        if home:
            sp.add_argument("--home", help="node home directory")
        sp.add_argument("--json", action="store_true", help="print JSON instead of text")
        sp.set_defaults(func=func)
        return sp

    sp = ladd("balance", "an account's cumulative amount through a closed epoch", cmd_balance)
    sp.add_argument("peer", nargs="?", help="PeerID or hex key (default: this node)")
    sp.add_argument("--epoch", type=int, help="epoch (default: the newest closed one)")
    sp = ladd("root", "the Merkle root of a closed epoch", cmd_root)
    sp.add_argument("epoch", type=int, nargs="?", help="epoch (default: the newest closed)")
    sp = ladd("proof", "an account's Merkle proof in a closed epoch (JSON: cumulative, leaf, "
              "path, root)", cmd_proof)
    sp.add_argument("epoch", type=int, nargs="?", help="epoch (default: the newest closed)")
    sp.add_argument("peer", nargs="?", help="PeerID or hex key (default: this node)")
    sp = ladd("verify-proof", "check a proof file (from `ledger proof --json`) offline",
              cmd_verify_proof, home=False)
    sp.add_argument("file", help="the proof's JSON file, or - for standard input")


def cmd_chain_status(a: argparse.Namespace) -> int:
    d = ask(a, "chain.status")
    if a.json:
        print_json(d)
        return EXIT_OK
    print(f"backend     {d['backend']} (as {d['sender'][:20]}...)")
    print(f"anchored    epoch {d['latest_epoch']}, lag {d['lag']} epochs; "
          f"{d['anchored_by_me']} anchored by this node")
    print(f"claimed     {d['claimed']} micro-units")
    if d["mismatches"]:
        for e, m in d["mismatches"].items():
            print(f"WARNING     epoch {e}: anchored root {m['anchored'][:16]}... differs from "
                  f"ours {m['ours'][:16]}...")
    return EXIT_OK


def cmd_chain_anchors(a: argparse.Namespace) -> int:
    rows = ask(a, "chain.anchors")
    if a.json:
        print_json(rows)
        return EXIT_OK
    for r in rows:
        print(f"epoch {r['epoch']}  root {r['root']}  count {r['count']}  "
              f"by {r['anchorer'][:16]}...")
    if not rows:
        print("no anchors yet")
    return EXIT_OK


def cmd_chain_claim(a: argparse.Namespace) -> int:
    d = ask(a, "chain.claim")
    if a.json:
        print_json(d)
    elif d["ok"]:
        print(f"claimed {d['paid']} (cumulative {d['cumulative']}, epoch {d['epoch']}) "
              f"for {d['payee']}")
    else:
        print(f"refused: {d['reason']} {d['detail']}".rstrip(), file=sys.stderr)
    return EXIT_OK if d["ok"] else EXIT_ERROR


def add_chain_parser(sub: Any) -> None:
    ch = sub.add_parser("chain", help="anchored epoch roots and claims (spec 08, draft)",
                        description="The chain the running node anchors its ledger's epoch "
                        "roots on ([chain] backend), and claims against the newest root.")
    csub = ch.add_subparsers(dest="chain_command", metavar="SUBCOMMAND", required=True)
    for name, help_, func in (
            ("status", "backend, newest anchored epoch, lag, root mismatches", cmd_chain_status),
            ("anchors", "every anchored epoch with its root", cmd_chain_anchors),
            ("claim", "claim what this node earned, by proof against the newest root",
             cmd_chain_claim)):
        sp = csub.add_parser(name, help=help_, description=help_)
        sp.add_argument("--home", help="node home directory")
        sp.add_argument("--json", action="store_true", help="print JSON instead of text")
        sp.set_defaults(func=func)
