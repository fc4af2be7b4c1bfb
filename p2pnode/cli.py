"""The ``p2pnode`` command."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

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

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=None, default=str)
    sys.stdout.write("\n")


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    return "\n".join(lines)


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


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
        _print_json(out)
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
    setup_logging(cfg.log_level, home / LOG_FILE)
    identity = load_identity(key)
    node = Node(home, cfg, identity)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                await nursery.start(node.run)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(main)
    except BaseExceptionGroup as eg:
        # py-libp2p's services can raise a group of cancellations/closed-resource errors
        # while shutting down; anything else is a real failure.
        if eg.subgroup(lambda e: not isinstance(
            e, trio.Cancelled | trio.ClosedResourceError | trio.BrokenResourceError
            | KeyboardInterrupt)) is not None:
            raise
    except KeyboardInterrupt:
        pass
    return EXIT_OK


# -- commands that ask a running node ---------------------------------------------------


def _ask(a: argparse.Namespace, cmd: str, args: dict[str, Any] | None = None) -> Any:
    from p2pnode.api.client import call

    return call(resolve_home(a.home), cmd, args)


def cmd_status(a: argparse.Namespace) -> int:
    st = _ask(a, "status")
    if a.json:
        _print_json(st)
        return EXIT_OK
    c = st["counters"]
    rejected = ", ".join(f"{k}={v}" for k, v in sorted(c["ads_rejected"].items())) or "none"
    print(f"peer id     {st['peer_id']}\nnetwork     {st['network']}\nversion     {st['version']}"
          f"\nuptime      {st['uptime_s']:.0f} s\npeers       {st['peers']}"
          f"\ncaps known  {st['caps_known']} (own ad seq {st['caps_seq']})"
          f"\nads         accepted {c['ads_accepted']}, published {c['ads_published']},"
          f" rejected {rejected}\nmetrics     {st['metrics'] or 'disabled'}")
    for addr in st["addrs"]:
        print(f"listening   {addr}")
    return EXIT_OK


def cmd_peers(a: argparse.Namespace) -> int:
    peers = _ask(a, "peers")
    if a.json:
        _print_json(peers)
        return EXIT_OK
    if not peers:
        print("no connected peers")
        return EXIT_OK
    rows = [[p["peer_id"], "yes" if p["has_ad"] else "no", (p["addrs"] or ["-"])[0]]
            for p in peers]
    print(_table(rows, ["PEER", "AD", "ADDRESS"]))
    return EXIT_OK


def cmd_caps(a: argparse.Namespace) -> int:
    caps = _ask(a, "caps")
    if a.json:
        _print_json(caps)
        return EXIT_OK
    rows = []
    for r in caps:
        gpus = ", ".join(f"{g['name']} {_human_bytes(g['mem'])}" for g in r["gpus"]) or "-"
        me = " (self)" if r["self"] else ""
        rows.append([r["peer_id"] + me, str(r["cpu"]["threads"]), _human_bytes(r["mem"]), gpus,
                     ",".join(r["kinds"]), str(r["seq"]), f"{r['expires_in_s']:.0f}s"])
    print(_table(rows, ["PEER", "THREADS", "MEMORY", "GPUS", "KINDS", "SEQ", "EXPIRES"]))
    return EXIT_OK


def cmd_testnet_up(a: argparse.Namespace) -> int:
    from p2pnode.testnet.launcher import TestnetOptions, run_testnet

    opts = TestnetOptions(
        n=a.n, duration=a.duration, base_port=a.base_port,
        directory=Path(a.dir) if a.dir else None, network=a.network,
        json_out=a.json, caps_interval=a.caps_interval,
    )
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

    add("status", "show the running node's identity, peers and counters", cmd_status)
    add("peers", "list connected peers", cmd_peers)
    add("caps", "show the live capability table", cmd_caps)

    tn = sub.add_parser("testnet", help="local multi-node networks on 127.0.0.1")
    tsub = tn.add_subparsers(dest="testnet_command", metavar="SUBCOMMAND", required=True)
    up = tsub.add_parser(
        "up", help="start N real nodes on 127.0.0.1, wait for convergence, report, stop",
        description="Start N `p2pnode run` processes on 127.0.0.1 (the first is the bootstrap "
        "peer), wait until every node knows every other node's capabilities (or --duration "
        "ends), print a report, stop them and keep their logs. Exit 0 only when converged.")
    up.add_argument("-n", type=int, default=5, help="number of nodes (default 5)")
    up.add_argument("--duration", type=float,
                    help="seconds to wait for convergence (default: run until Ctrl-C)")
    up.add_argument("--base-port", type=int, default=0,
                    help="first TCP port; node i listens on base+i (default: free ports)")
    up.add_argument("--dir", help="directory for node homes and logs (default: a new temp dir)")
    up.add_argument("--network", default="testnet", help="network id (default testnet)")
    up.add_argument("--caps-interval", type=float, default=10.0,
                    help="seconds between capability ads (default 10)")
    up.add_argument("--json", action="store_true", help="print the report as one JSON object")
    up.set_defaults(func=cmd_testnet_up)
    return p


def main(argv: list[str] | None = None) -> int:
    from p2pnode.api.client import ApiError, NodeNotRunning

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except NodeNotRunning as e:
        print(f"error: {e}; start it with `p2pnode run`", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except (ApiError, ConfigError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
