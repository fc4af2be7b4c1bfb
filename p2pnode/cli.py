"""The ``p2pnode`` command."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from p2pnode import __version__
from p2pnode.config import (
    CONFIG_FILE,
    KEY_FILE,
    LOG_FILE,
    Config,
    ConfigError,
    load_config,
    render_template,
    resolve_home,
)

if TYPE_CHECKING:
    import trio

from p2pnode.cli_common import (
    EXIT_ERROR,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    ask,
    human_bytes,
    print_json,
    table,
)
from p2pnode.cli_jobs import cmd_job_list, cmd_job_show, cmd_job_submit

# -- init / run ------------------------------------------------------------------------


def cmd_init(a: argparse.Namespace) -> int:
    from p2pnode.identity import Identity, load_identity, save_identity

    home = resolve_home(a.home)
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    key = home / KEY_FILE
    created = False
    if key.exists() and not a.force:
        identity = load_identity(key)
    else:
        identity = Identity.generate()
        save_identity(identity, key)
        created = True
    cfg_path = home / CONFIG_FILE
    if not cfg_path.exists() or a.force:
        cfg = Config().with_overrides(
            network=a.network,
            listen=tuple(a.listen) if a.listen else None,
            bootstrap=tuple(a.bootstrap) if a.bootstrap else None,
            metrics_listen=a.metrics,
        )
        cfg_path.write_text(render_template(cfg))
    out = {"home": str(home), "peer_id": identity.peer_id, "created": created,
           "key_file": str(key), "config": str(cfg_path)}
    if a.json:
        print_json(out)
    else:
        verb = "initialised" if created else "already initialised (kept the existing key)"
        print(f"node home {home} {verb}\npeer id  {identity.peer_id}\nconfig   {cfg_path}")
    return EXIT_OK


def cmd_run(a: argparse.Namespace) -> int:
    import trio

    from p2pnode.identity import load_identity
    from p2pnode.log import setup_logging
    from p2pnode.node import Node

    home = resolve_home(a.home)
    key = home / KEY_FILE
    if not key.exists():
        print(f"error: {home} is not initialised; run `p2pnode init --home {home}` first",
              file=sys.stderr)
        return EXIT_ERROR
    try:
        cfg = load_config(home / CONFIG_FILE).with_overrides(
            network=a.network,
            listen=tuple(a.listen) if a.listen else None,
            bootstrap=tuple(a.bootstrap) if a.bootstrap else None,
            metrics_listen=a.metrics,
            api_listen=a.api,
            caps_interval_s=a.caps_interval,
            log_level=a.log_level,
        )
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    from p2pnode.api.admission import api_listen_refusal

    refusal = api_listen_refusal(cfg.api_listen, cfg.api_allow_remote)
    if refusal is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return EXIT_ERROR
    from p2pnode.net.host import ListenAddressInUse, check_listen_addrs

    try:
        check_listen_addrs(list(cfg.listen))
    except ListenAddressInUse as e:
        print(f"error: {e.strerror}", file=sys.stderr)
        return EXIT_ERROR
    setup_logging(cfg.log_level, home / LOG_FILE)
    identity = load_identity(key)
    node = Node(home, cfg, identity)

    async def main() -> None:
        # The receiver outlives the nursery: a second SIGTERM during shutdown (the launcher's
        # death signal right after its pipe closed) must not meet the default handler.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                if a.exit_with_fd is not None:
                    nursery.start_soon(_exit_with_launcher, a.exit_with_fd, nursery.cancel_scope)
                await nursery.start(node.run)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(main)
    except ListenAddressInUse as e:
        print(f"error: {e.strerror}", file=sys.stderr)
        return EXIT_ERROR
    except BaseExceptionGroup as eg:
        in_use = eg.subgroup(lambda e: isinstance(e, ListenAddressInUse))
        if in_use is not None:
            first = in_use.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            print(f"error: {getattr(first, 'strerror', first)}", file=sys.stderr)
            return EXIT_ERROR
        # py-libp2p's services can raise a group of cancellations/closed-resource errors
        # while shutting down; anything else is a real failure.
        if eg.subgroup(lambda e: not isinstance(
            e, trio.Cancelled | trio.ClosedResourceError | trio.BrokenResourceError
            | KeyboardInterrupt)) is not None:
            raise
    except KeyboardInterrupt:
        pass
    return EXIT_OK


async def _exit_with_launcher(fd: int, scope: trio.CancelScope) -> None:
    """Stop the node when the launcher that started it is gone (testnet/README.md)."""
    from p2pnode.testnet.lifeline import arm_hard_exit, wait_for_eof

    await wait_for_eof(fd)
    print("launcher gone; stopping", file=sys.stderr, flush=True)
    arm_hard_exit()
    scope.cancel()


# -- commands that ask a running node ---------------------------------------------------


def cmd_status(a: argparse.Namespace) -> int:
    st = ask(a, "status")
    if a.json:
        print_json(st)
        return EXIT_OK
    c = st["counters"]
    rejected = ", ".join(f"{k}={v}" for k, v in sorted(c["ads_rejected"].items())) or "none"
    ignored = ", ".join(f"{k}={v}" for k, v in sorted(c["ads_ignored"].items())) or "none"
    print(f"peer id     {st['peer_id']}\nnetwork     {st['network']}\nversion     {st['version']}"
          f"\nuptime      {st['uptime_s']:.0f} s\npeers       {st['peers']}"
          f"\ncaps known  {st['caps_known']} (own ad seq {st['caps_seq']})"
          f"\nads         accepted {c['ads_accepted']}, published {c['ads_published']},"
          f" rejected {rejected}, ignored {ignored}\nmetrics     {st['metrics'] or 'disabled'}")
    jobs = st.get("jobs") or {}
    if jobs:
        req = ", ".join(f"{k} {v}" for k, v in sorted(jobs["requested"].items())) or "none"
        print(f"jobs        requested: {req}; working on {jobs['working']}/{jobs['slots']}")
    lg = st.get("ledger") or {}
    if lg:
        print(f"ledger      {lg['receipts']} credits, {lg['slashes']} slashes ({lg['late']} late);"
              f" epoch {lg['epoch']} open, {lg['closed']} closed ({lg['epoch_len_s']:.0f} s"
              f" epochs, {lg['grace_s']:.0f} s grace)")
    limits = st.get("limits") or {}
    if limits:
        b = limits["blobs"]
        print(f"blobs       {human_bytes(b['bytes'])} of {human_bytes(b['quota'])}"
              f" ({100 * b['bytes'] // max(1, b['quota'])}%)")
        held = ", ".join(f"{k.replace('_', ' ')} {v['held']}/{v['cap']}"
                         for k, v in limits.items() if k != "blobs")
        print(f"held        {held}")
    for addr in st["addrs"]:
        print(f"listening   {addr}")
    return EXIT_OK


def cmd_peers(a: argparse.Namespace) -> int:
    peers = ask(a, "peers")
    if a.json:
        print_json(peers)
        return EXIT_OK
    if not peers:
        print("no connected peers")
        return EXIT_OK
    rows = [[p["peer_id"], "yes" if p["has_ad"] else "no", (p["addrs"] or ["-"])[0]]
            for p in peers]
    print(table(rows, ["PEER", "AD", "ADDRESS"]))
    return EXIT_OK


def cmd_caps(a: argparse.Namespace) -> int:
    caps = ask(a, "caps")
    if a.json:
        print_json(caps)
        return EXIT_OK
    rows = []
    for r in caps:
        gpus = ", ".join(f"{g['name']} {human_bytes(g['mem'])}" for g in r["gpus"]) or "-"
        me = " (self)" if r["self"] else ""
        att = r.get("attestations", {})
        seen = f"{r.get('attested', '-')} ({att.get('ok', 0)} ok, {att.get('failed', 0)} failed)"
        rows.append([r["peer_id"] + me, str(r["cpu"]["threads"]), human_bytes(r["mem"]), gpus,
                     ",".join(r["kinds"]), str(r["seq"]), f"{r['expires_in_s']:.0f}s",
                     "-" if r["self"] else seen])
    print(table(rows, ["PEER", "THREADS", "MEMORY", "GPUS", "KINDS", "SEQ", "EXPIRES",
                       "CHALLENGE"]))
    return EXIT_OK


def cmd_bench_proofs(a: argparse.Namespace) -> int:
    from p2pnode.proofs.bench import main_args

    return main_args(a)


def cmd_bench_ledger(a: argparse.Namespace) -> int:
    from p2pnode.ledger.bench import main_args

    return main_args(a)


def cmd_bench_chain(a: argparse.Namespace) -> int:
    from p2pnode.chain.bench import main_args

    return main_args(a)


def cmd_testnet_up(a: argparse.Namespace) -> int:
    from p2pnode.testnet.launcher import run_testnet
    from p2pnode.testnet.model import TestnetOptions

    opts = TestnetOptions(
        n=a.n, duration=a.duration, base_port=a.base_port,
        directory=Path(a.dir) if a.dir else None, network=a.network,
        json_out=a.json, caps_interval=a.caps_interval,
        jobs=a.jobs, requesters=a.requesters, job_n=a.job_n, job_kind=a.job_kind,
        start_concurrency=a.start_concurrency, cheaters=a.cheaters, epoch_len=a.epoch_len,
        chain=a.chain,
    )
    if not 2 <= a.epoch_len <= 7 * 86_400:
        print("error: --epoch-len must be in 2..604800 seconds", file=sys.stderr)
        return 2
    if not 0 <= a.cheaters <= a.n - max(1, a.requesters) - 1:
        print(f"error: --cheaters must leave at least one honest worker besides the "
              f"{max(1, a.requesters)} requester(s): at most {a.n - max(1, a.requesters) - 1}",
              file=sys.stderr)
        return 2
    return run_testnet(opts)


# -- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="p2pnode",
        description="Reference node of the p2pnode decentralized compute network.",
        epilog="Node home: --home, else $P2PNODE_HOME, else ~/.p2pnode.",
    )
    p.add_argument("--version", action="version", version=f"p2pnode {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_: str, func: Any, json_flag: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("--home", help="node home directory")
        if json_flag:
            sp.add_argument("--json", action="store_true", help="print JSON instead of text")
        sp.set_defaults(func=func)
        return sp

    sp = add("init", "create the node home: key file (0600) and a commented config.toml",
             cmd_init)
    sp.add_argument("--network", help="network id (default devnet)")
    sp.add_argument("--listen", action="append", help="listen multiaddr (repeatable)")
    sp.add_argument("--bootstrap", action="append", help="bootstrap peer multiaddr (repeatable)")
    sp.add_argument("--metrics", help="metrics host:port, or '' to disable")
    sp.add_argument("--force", action="store_true",
                    help="replace an existing key and config (the node gets a new identity)")

    sp = add("run", "run the node until SIGINT or SIGTERM", cmd_run, json_flag=False)
    sp.add_argument("--network", help="override [node] network")
    sp.add_argument("--listen", action="append", help="override [node] listen (repeatable)")
    sp.add_argument("--bootstrap", action="append",
                    help="override [node] bootstrap (repeatable)")
    sp.add_argument("--metrics", help="override [metrics] listen ('' disables)")
    sp.add_argument("--api", help="override [api] listen")
    sp.add_argument("--caps-interval", type=float, help="override [caps] interval_s")
    sp.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    # Set by `p2pnode testnet up`: stop when this pipe's write end closes (the launcher died).
    sp.add_argument("--exit-with-fd", type=int, help=argparse.SUPPRESS)

    add("status", "show the running node's identity, peers and counters", cmd_status)
    add("peers", "list connected peers", cmd_peers)
    add("caps", "show the live capability table", cmd_caps)

    job = sub.add_parser("job", help="submit and follow jobs (as a requester)")
    jsub = job.add_subparsers(dest="job_command", metavar="SUBCOMMAND", required=True)

    def jadd(name: str, help_: str, func: Any) -> argparse.ArgumentParser:
        sp = jsub.add_parser(name, help=help_, description=help_)
        sp.add_argument("--home", help="node home directory")
        sp.add_argument("--json", action="store_true", help="print JSON instead of text")
        sp.set_defaults(func=func)
        return sp

    sp = jadd("submit", "submit jobs to the network through the running node", cmd_job_submit)
    sp.add_argument("file", nargs="?", help="a job file (TOML; see docs/jobs.md)")
    sp.add_argument("--kind", choices=["matmul", "wasm"], help="job kind")
    sp.add_argument("--n", type=int, help="matmul: random int8 n x n inputs")
    sp.add_argument("--count", type=int, help="how many jobs (default 1)")
    sp.add_argument("--module", help="wasm: .wasm/.wat file or example:NAME (default example:sum)")
    sp.add_argument("--input", help="wasm: input file")
    sp.add_argument("--fuel", type=int, help="wasm: fuel limit")
    sp.add_argument("--max-price", type=int, help="highest price accepted, micro-units")
    sp.add_argument("--deadline", type=int, help="seconds until the job must be done")
    sp.add_argument("--lease", type=int, help="lease length in seconds (renewed by heartbeats)")
    sp.add_argument("--redundancy", type=int, help="workers per job (default 1)")
    sp.add_argument("--gpu", action="store_true", help="require a GPU")
    sp.add_argument("--wait", action="store_true",
                    help="follow the jobs to a final state; exit 1 if any failed")
    sp = jadd("list", "list the jobs this node requested", cmd_job_list)
    sp.add_argument("--state", action="append", help="only jobs in this state (repeatable)")
    sp = jadd("show", "show one job with its state history", cmd_job_show)
    sp.add_argument("id", help="job id (hex) or a unique prefix")
    sp.add_argument("--output", help="write the job's output to this file")

    from p2pnode.cli_ledger import add_chain_parser
    from p2pnode.cli_ledger import add_parser as add_ledger

    add_ledger(sub)
    add_chain_parser(sub)

    bn = sub.add_parser("bench", help="benchmarks of this machine")
    bsub = bn.add_subparsers(dest="bench_command", metavar="SUBCOMMAND", required=True)
    bp = bsub.add_parser(
        "proofs", help="what checking a matmul result costs against computing it",
        description="For matmul n in 512, 1024, 2048: the worker's time (exact product and "
        "row commitment), the bare float64 BLAS product, the verifier's time (Freivalds' "
        "test) and their ratios, with the soundness in bits (spec 06).")
    from p2pnode.proofs.bench_args import add_arguments as add_bench_proofs

    add_bench_proofs(bp)
    bp.set_defaults(func=cmd_bench_proofs)
    bl = bsub.add_parser(
        "ledger", help="set reconciliation, receipt checks and epoch roots of the ledger",
        description="Reconciliation of two replicas of N receipts differing in D (the "
        "differences among the newest, then scattered), against sending every id; identical "
        "replicas; merge throughput; receipt verification against bare PyNaCl verification "
        "in the same process; a root and one proof for 1,000,000 accounts (spec 07).")
    bl.add_argument("--json", action="store_true", help="print JSON instead of text")
    bl.add_argument("--n", type=int, default=100_000, help="receipts per replica")
    bl.add_argument("--diff", type=int, default=1_000, help="differences (even)")
    bl.add_argument("--accounts", type=int, default=1_000_000, help="accounts of the root")
    bl.set_defaults(func=cmd_bench_ledger)
    bc = bsub.add_parser(
        "chain", help="gas of anchors and claims on a real EVM; devchain anchors per second",
        description="Deploys the RewardAnchor contract on py-evm in this process and measures "
        "the gas of an anchor and of claims with Merkle proofs of trees of 2^10, 2^17 and 2^20 "
        "accounts; then anchors per second on a fresh devchain file (spec 08).")
    bc.add_argument("--json", action="store_true", help="print JSON instead of text")
    bc.add_argument("--depths", help="tree sizes as powers of two, comma-separated "
                    "(default 10,17,20)")
    bc.set_defaults(func=cmd_bench_chain)

    tn = sub.add_parser("testnet", help="local multi-node networks on 127.0.0.1")
    tsub = tn.add_subparsers(dest="testnet_command", metavar="SUBCOMMAND", required=True)
    up = tsub.add_parser(
        "up", help="start N real nodes on 127.0.0.1, wait for convergence, report, stop",
        description="Start N `p2pnode run` processes on 127.0.0.1 (the first is the bootstrap "
        "peer), wait until every node knows every other node's capabilities (or --duration "
        "ends), print a report, stop them and keep their logs. Exit 0 only when converged.")
    up.add_argument("-n", type=int, default=5, help="number of nodes (default 5)")
    up.add_argument("--duration", type=float,
                    help="seconds to wait for convergence once every node serves its admin "
                    "API (default: run until Ctrl-C)")
    up.add_argument("--base-port", type=int, default=0,
                    help="first TCP port; node i listens on base+i (default: free ports)")
    up.add_argument("--dir", help="directory for node homes and logs (default: a new temp dir)")
    up.add_argument("--network", default="testnet", help="network id (default testnet)")
    up.add_argument("--caps-interval", type=float, default=None,
                    help="seconds between each node's capability ads (default: 10, or "
                    "N above 10 nodes, so the network carries at most 1 ad/s)")
    up.add_argument("--jobs", type=int, default=0,
                    help="submit this many jobs spread over the run; convergence then also "
                    "needs every job completed")
    up.add_argument("--requesters", type=int, default=1,
                    help="spread the jobs over the first M nodes (default 1: the bootstrap)")
    up.add_argument("--job-kind", choices=["matmul", "wasm"], default="matmul",
                    help="kind of the testnet's jobs (default matmul)")
    up.add_argument("--job-n", type=int, default=64, help="matmul size of testnet jobs")
    up.add_argument("--epoch-len", type=int, default=60, metavar="S",
                    help="seconds per ledger epoch (default 60; the grace period is a "
                    "quarter of it, at most 30 s): short runs close several epochs")
    up.add_argument("--chain", choices=["none", "devchain", "evm"], default="none",
                    help="anchor the epoch roots on a devchain all nodes share, or on the "
                    "contract on a local anvil JSON-RPC node the launcher starts (every node "
                    "an anchorer, up to 8); at the end every node claims what it earned "
                    "(spec 08, draft)")
    up.add_argument("--cheaters", type=int, default=0,
                    help="workers that return wrong matmul results, each rotating through "
                    "the ways of cheating (wrong row, wrong entry, wrong commitment, zeros): "
                    "the report shows them caught (jobs.wrong_accepted, jobs.fraud_proofs)")
    up.add_argument("--start-concurrency", type=int, default=0,
                    help="nodes starting at once, in a rolling wave (default: one per CPU "
                    "core, at least 2)")
    up.add_argument("--json", action="store_true", help="print the report as one JSON object")
    up.set_defaults(func=cmd_testnet_up)
    return p


def main(argv: list[str] | None = None) -> int:
    import os

    from p2pnode.api.client import ApiError, NodeNotRunning
    from p2pnode.jobs.executors import BLAS_ENV

    # Before anything loads numpy: a node verifies results with BLAS in its own process
    # too, and a benchmark measures with the settings the node runs with.
    for k, v in BLAS_ENV.items():
        os.environ.setdefault(k, v)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except NodeNotRunning as e:
        print(f"error: {e}; start it with `p2pnode run`", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (ApiError, ConfigError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
