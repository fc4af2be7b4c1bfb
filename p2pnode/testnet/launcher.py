"""``p2pnode testnet up``: N real node processes on 127.0.0.1, a convergence report.

The launcher is a plain supervisor: it creates node homes, starts ``p2pnode run`` processes,
polls each node's admin API, and stops every process it started, whatever happens: on its
own exit, on SIGINT, SIGTERM or SIGHUP, and (through ``lifeline``) when it is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from p2pnode.api.client import ApiError, call
from p2pnode.config import (
    API_FILE,
    CHEAT_MODES,
    CONFIG_FILE,
    KEY_FILE,
    Config,
    render_template,
)
from p2pnode.identity import Identity, save_identity
from p2pnode.testnet.chainwatch import (
    CHAIN_FILE,
    ChainWatch,
    EvmNetwork,
    fallback_for,
    make_devchain,
)
from p2pnode.testnet.jobs import JobDriver
from p2pnode.testnet.ledger import LedgerWatch, grace_for
from p2pnode.testnet.lifeline import set_parent_death_signal
from p2pnode.testnet.model import NodePorts as NodePorts
from p2pnode.testnet.model import NodeProc as NodeProc
from p2pnode.testnet.model import TestnetOptions as TestnetOptions
from p2pnode.testnet.report import build_report, print_report

POLL_S = 0.5
# Nodes that know every other node's ad are asked for their status only every FULL_POLL_S
# (and once more, all together, when the last one converges): at 50 nodes, asking every
# node every POLL_S was 100 status calls a second, a tenth of a core between the launcher
# and the nodes, on a machine the nodes already fill.
FULL_POLL_S = 5.0
# A node's start (spawn to a serving admin API) may take START_TIMEOUT_S on an idle
# machine, and START_TIMEOUT_PER_NODE_S more for each node of the network: they start on
# the same cores (a node's start costs about 1.5 s of CPU, most of it imports).
START_TIMEOUT_S = 30.0
START_TIMEOUT_PER_NODE_S = 1.0
STOP_TIMEOUT_S = 10.0
# Bootstrap peers of each node: nodes already serving, at random. With node 0 as every
# node's bootstrap peer, node 0 held a connection to every node and, at 50 nodes, spent a
# whole core on their pubsub traffic: ads reached it more than 30 s late (refused as
# clock skew) and the last nodes to start, which knew only node 0, learnt no ad at all.
BOOTSTRAPS = 3
# How often a starting node's admin API is looked for.
START_POLL_S = 0.05


def start_timeout_s(n: int) -> float:
    """How long one node of a network of ``n`` may take to start."""
    return START_TIMEOUT_S + START_TIMEOUT_PER_NODE_S * n


def default_start_concurrency() -> int:
    """Nodes started at once: a start is mostly CPU (imports), so about one per core; two at
    least, so that one node waiting on I/O leaves the other core busy."""
    return max(2, os.cpu_count() or 2)


def _say(opts: TestnetOptions, msg: str) -> None:
    # Progress always goes to stderr so that --json keeps stdout one JSON object.
    print(msg, file=sys.stderr, flush=True)


class Stopped(Exception):
    """The launcher was asked to stop by a signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def plan_ports(n: int, base_port: int) -> list[NodePorts]:
    """Every port of every node, chosen before any node starts, all distinct.

    Nodes bind their admin API and metrics to fixed ports chosen here rather than to port
    0: a port the kernel picks at bind time can be a later node's listen port, which that
    node then finds taken. Free ports are found by binding port 0 and holding every probe
    socket until all are chosen, so no two probes get the same port; none falls on a listen
    port of ``--base-port``.
    """
    listen = [base_port + i for i in range(n)] if base_port else []
    reserved = set(listen)
    want = 2 * n + (0 if base_port else n)
    chosen: list[int] = []
    with contextlib.ExitStack() as stack:
        for _ in range(want + len(reserved) + 16):
            if len(chosen) == want:
                break
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if port not in reserved:
                chosen.append(port)
                reserved.add(port)
    if len(chosen) < want:
        raise RuntimeError("could not find enough free ports on 127.0.0.1")
    if not listen:
        listen, chosen = chosen[:n], chosen[n:]
    return [NodePorts(listen=listen[i], api=chosen[2 * i], metrics=chosen[2 * i + 1])
            for i in range(n)]


def _prepare(opts: TestnetOptions, root: Path, i: int, ports: NodePorts) -> NodeProc:
    home = root / f"node-{i}"
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    for stale in (API_FILE,):
        (home / stale).unlink(missing_ok=True)
    key = home / KEY_FILE
    if key.exists():
        from p2pnode.identity import load_identity

        identity = load_identity(key)
    else:
        identity = Identity.generate()
        save_identity(identity, key)
    # Every node is on loopback: their ads carry 127.0.0.1 addresses (ADDR-6).
    cheat: tuple[str, ...] = ()
    if i >= opts.n - opts.cheaters:  # the last nodes cheat, each from its own mode on
        k = i - (opts.n - opts.cheaters)
        cheat = CHEAT_MODES[k % len(CHEAT_MODES):] + CHEAT_MODES[:k % len(CHEAT_MODES)]
    cfg = Config(network=opts.network, listen=(f"/ip4/127.0.0.1/tcp/{ports.listen}",),
                 jobs_cheat=cheat, caps_challenge_interval_s=5.0,
                 # With cheaters, a proven cheater is barred for 20 s, not an hour: it comes
                 # back, cheats again in its next mode and is caught again in one run.
                 jobs_bar_s=CHEATER_BAR_S if opts.cheaters else 3600,
                 net_private_addrs="allow",
                 api_listen=f"127.0.0.1:{ports.api}",
                 metrics_listen=f"127.0.0.1:{ports.metrics}",
                 caps_interval_s=opts.interval_s,
                 caps_ttl_s=max(60, int(opts.interval_s * 6)),
                 ledger_epoch_len_s=opts.epoch_len,
                 ledger_grace_s=grace_for(opts.epoch_len),
                 ledger_sync_interval_s=5.0,
                 # evm: set once the contract is deployed (_chain_for)
                 chain_backend="devchain" if opts.chain == "devchain" else "none",
                 chain_devchain_path=str(root / CHAIN_FILE) if opts.chain == "devchain" else "",
                 chain_fallback_s=fallback_for(opts.epoch_len))
    (home / CONFIG_FILE).write_text(render_template(cfg))
    return NodeProc(index=i, home=home, peer_id=identity.peer_id, ports=ports)


CHEATER_BAR_S = 20


def prepare_nodes(opts: TestnetOptions, root: Path) -> list[NodeProc]:
    """The homes of ``opts.n`` nodes under ``root``, every port chosen up front."""
    return [_prepare(opts, root, i, p) for i, p in enumerate(plan_ports(opts.n, opts.base_port))]


def _start(node: NodeProc, bootstrap: Sequence[str] | None,
           lifeline: int | None = None) -> None:
    """Start one node; it stops when ``lifeline``'s write end closes (the launcher died),
    and on Linux when this process dies."""
    cmd = [sys.executable, "-m", "p2pnode", "run", "--home", str(node.home)]
    if lifeline is not None:
        cmd += ["--exit-with-fd", str(lifeline)]
    for addr in bootstrap or ():
        cmd += ["--bootstrap", addr]
    node.spawned_at = time.monotonic()
    node.start_s = None
    log = open(node.home / "stdout.log", "ab")  # noqa: SIM115 - owned by the process
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    me = os.getpid()
    # preexec_fn is unsafe only in a process with threads; the launcher runs none.
    node.proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL,
        pass_fds=() if lifeline is None else (lifeline,),
        preexec_fn=lambda: set_parent_death_signal(me),
        # Not in the launcher's process group: a Ctrl-C reaches the launcher only, which
        # then stops the nodes in order and still polls them for the report.
        start_new_session=True)
    log.close()


def _poll(node: NodeProc) -> dict[str, Any] | None:
    if node.proc is None or node.proc.poll() is not None:
        node.error = f"exited with code {node.proc.returncode if node.proc else '?'}"
        return None
    if not (node.home / API_FILE).exists():
        return None
    try:
        node.status = call(node.home, "status", timeout=3.0)
        node.error = ""
        return node.status
    except (ApiError, OSError, ValueError) as e:
        node.error = str(e)
        return None


def _check_started(node: NodeProc, timeout: float) -> bool:
    """Whether ``node`` serves its admin API now (and then its ``start_s`` is set); raises
    RuntimeError once it has exited or ``timeout`` has passed since it was spawned."""
    if _poll(node) is not None:
        if node.start_s is None and node.spawned_at is not None:
            node.start_s = time.monotonic() - node.spawned_at
        return True
    exited = node.proc is None or node.proc.poll() is not None
    if exited or time.monotonic() - (node.spawned_at or 0.0) > timeout:
        why = node.error if exited else f"timeout after {timeout:.0f} s"
        raise RuntimeError(f"node {node.index} did not start: {why or 'timeout'}; "
                           f"see {node.home / 'stdout.log'}")
    return False


def _wait_started(node: NodeProc, timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
    while not _check_started(node, timeout):
        time.sleep(START_POLL_S)
    return node.status


def stop_nodes(nodes: list[NodeProc]) -> None:
    for n in nodes:
        if n.proc is not None and n.proc.poll() is None:
            n.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for n in nodes:
        if n.proc is None:
            continue
        try:
            n.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            n.proc.kill()
            n.proc.wait()


def start_network(nodes: list[NodeProc], lifeline: int | None = None,
                  concurrency: int = 0) -> str:
    """Start node 0, then every other node with BOOTSTRAPS of the nodes already serving
    (node 0 among them, chosen at random, seeded by the node's index) as bootstrap peers,
    at most ``concurrency`` starting at once (a rolling wave: the next starts as soon as
    one serves its admin API); return node 0's address. Raises RuntimeError if a node does
    not come up within ``start_timeout_s(len(nodes))``.

    Spawning all at once does not start them sooner: N processes importing on two cores
    each take N times as long, and a node that is still importing cannot answer its
    bootstrap peer; with 50 nodes the first timed out.
    """
    timeout = start_timeout_s(len(nodes))
    limit = concurrency or default_start_concurrency()
    _start(nodes[0], None, lifeline)
    st0 = _wait_started(nodes[0], timeout)
    boot = _addr_of(nodes[0], st0)
    up: list[str] = []  # addresses of the nodes after node 0 serving so far
    waiting = list(nodes[1:])
    starting: list[NodeProc] = []
    while waiting or starting:
        while waiting and len(starting) < limit:
            node = waiting.pop(0)
            pool = [boot, *up]
            _start(node, random.Random(node.index).sample(pool, min(BOOTSTRAPS, len(pool))),
                   lifeline)
            starting.append(node)
        time.sleep(START_POLL_S)
        still = []
        for n in starting:
            if _check_started(n, timeout):
                if n.status.get("addrs"):
                    up.append(_addr_of(n, n.status))
            else:
                still.append(n)
        starting = still
    return boot


def _addr_of(node: NodeProc, status: dict[str, Any]) -> str:
    return f"{status['addrs'][0].split('/p2p/')[0]}/p2p/{node.peer_id}"


def wait_caps_converged(nodes: list[NodeProc], timeout: float) -> None:
    """Block until every node knows every other node's ad; RuntimeError after timeout."""
    deadline = time.monotonic() + timeout
    poller = Poller(nodes)
    while not poller.round():
        if time.monotonic() > deadline:
            raise RuntimeError(f"nodes did not converge within {timeout} s")
        time.sleep(0.2)


def _node_converged(n: NodeProc, want: int) -> bool:
    return bool(n.status and n.status.get("caps_known") == want
                and (want == 0 or n.status.get("peers", 0) >= 1))


def _converged(nodes: list[NodeProc]) -> bool:
    return all(_node_converged(n, len(nodes) - 1) for n in nodes)


class Poller:
    """Status polls for convergence: each round asks the nodes not yet converged, and
    every node every ``full_s``; a round that would report convergence asks every node
    first, so a converged network is one seen whole in a single round."""

    def __init__(self, nodes: list[NodeProc], full_s: float = FULL_POLL_S) -> None:
        self.nodes = nodes
        self.full_s = full_s
        self._last_full = -float("inf")

    def round(self, *, full: bool = False) -> bool:
        """Poll; return whether every node is converged (as of a full round)."""
        want = len(self.nodes) - 1
        now = time.monotonic()
        full = full or now - self._last_full >= self.full_s
        for n in self.nodes:
            if full or not _node_converged(n, want):
                _poll(n)
        if full:
            self._last_full = now
        if not _converged(self.nodes):
            return False
        return full or self.round(full=True)


def _chain_for(opts: TestnetOptions, root: Path, nodes: list[NodeProc]
               ) -> tuple[ChainWatch, EvmNetwork | None]:
    """The testnet's chain: a devchain file, or anvil with the contract; each node's config
    pointed at it."""
    from p2pnode.chain.base import Schedule
    from p2pnode.config import load_config

    schedule = Schedule(opts.epoch_len, grace_for(opts.epoch_len), fallback_for(opts.epoch_len))
    if opts.chain == "devchain":
        return ChainWatch.devchain(make_devchain(root, nodes, schedule), nodes), None
    net = EvmNetwork(nodes, schedule)
    for n in nodes:
        cfg = load_config(n.home / CONFIG_FILE).with_overrides(
            chain_backend="evm", chain_rpc_url=net.url, chain_contract=net.address)
        (n.home / CONFIG_FILE).write_text(render_template(cfg))
    return ChainWatch(net.chain, nodes), net


def _receipts(nodes: list[NodeProc]) -> int:
    """The receipts the requesters made (spec 06 RCP-1), from their last status."""
    return sum(int(n.status.get("receipts", 0)) for n in nodes)


def run_testnet(opts: TestnetOptions) -> int:
    if opts.n < 1:
        print("error: -n must be at least 1", file=sys.stderr)
        return 2
    root = opts.directory or Path(tempfile.mkdtemp(prefix="p2pnode-testnet-"))
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    started = time.monotonic()
    converge_s: float | None = None
    start_s: float | None = None
    converged = False
    caps_since: float | None = None
    nodes: list[NodeProc] = []
    jobs: JobDriver | None = None
    ledger_watch: LedgerWatch | None = None
    chain_watch: ChainWatch | None = None
    evm_net: EvmNetwork | None = None
    chain_report: dict[str, Any] | None = None
    # The nodes hold the read end; we hold the write end until we exit, however we exit.
    lifeline_r, lifeline_w = os.pipe()
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        if not stopping:  # a second signal must not interrupt the stopping itself
            raise Stopped(signum)

    previous = {sig: signal.signal(sig, on_signal)
                for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        nodes = prepare_nodes(opts, root)
        jobs = JobDriver(opts, nodes) if opts.jobs > 0 else None
        if opts.chain != "none":
            chain_watch, evm_net = _chain_for(opts, root, nodes)
        _say(opts, f"starting {opts.n} nodes in {root}")
        boot = start_network(nodes, lifeline_r, opts.start_concurrency)
        up_at = time.monotonic()
        start_s = up_at - started
        os.close(lifeline_r)
        lifeline_r = -1
        _say(opts, "pids " + " ".join(str(n.proc.pid) for n in nodes if n.proc is not None))
        _say(opts, f"all {opts.n} nodes running after {start_s:.1f} s; bootstrap {boot}")
        # The duration is the time to wait for convergence, once every node serves.
        deadline = None if opts.duration is None else up_at + opts.duration
        last_line = ""
        poller = Poller(nodes)
        ledger = LedgerWatch(nodes)
        while deadline is None or time.monotonic() < deadline:
            caps_ok = poller.round()
            if caps_ok and caps_since is None:
                caps_since = time.monotonic()
            if jobs is not None:
                # Jobs start once nodes know each other (or after 15 s regardless).
                if caps_since is not None or time.monotonic() - started > 15:
                    jobs.start()
                jobs.step()
            ledger_ok = True
            if jobs is not None and jobs.done:
                ledger.poll()
                ledger_ok = ledger.report(_receipts(nodes))["converged"]
                if ledger_ok and chain_watch is not None:
                    ledger_ok = chain_watch.ready(ledger.summaries)
            now_converged = caps_ok and (jobs is None or jobs.done) and ledger_ok
            if now_converged and converge_s is None:
                converge_s = time.monotonic() - up_at
            converged = now_converged
            if converged and deadline is not None:
                break
            done = sum(1 for n in nodes if n.status.get("caps_known") == opts.n - 1)
            line = f"converging: {done}/{opts.n} nodes know all others"
            if jobs is not None and jobs.next_at is not None:
                r = jobs.report()
                line += (f"; jobs {r['submitted']}/{opts.jobs} submitted, "
                         f"{r['completed']} completed, {r['failed']} failed")
            if converged:
                line = f"converged in {converge_s:.1f} s; running until Ctrl-C"
            if line != last_line:
                _say(opts, line)
                last_line = line
            time.sleep(POLL_S)
    except (KeyboardInterrupt, Stopped) as e:
        stopping = True
        name = e.args[0] if isinstance(e, Stopped) else "SIGINT"
        _say(opts, f"{name}; stopping nodes")
        for n in nodes:
            _poll(n)
        converged = _converged(nodes)
    except RuntimeError as e:
        _say(opts, f"error: {e}")
        converged = False
    finally:
        stopping = True
        if jobs is not None:
            jobs.poll()
            jobs.audit()
        for n in nodes:  # the last word on each node's counters, before it stops
            _poll(n)
        if jobs is not None and nodes:
            if chain_watch is not None:  # every node claims what it earned, then reports
                chain_watch.claim_all()
            ledger_watch = LedgerWatch(nodes)
            ledger_watch.poll(force=True)
            if chain_watch is not None:  # while the chain still answers
                chain_report = chain_watch.report(ledger_watch.summaries)
        stop_nodes(nodes)
        if evm_net is not None:
            evm_net.close()
        if lifeline_r >= 0:
            os.close(lifeline_r)
        os.close(lifeline_w)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    rep = build_report(opts, root, nodes, converged, started, converge_s,
                       opts.start_concurrency or default_start_concurrency(), jobs, start_s)
    if jobs is not None and ledger_watch is not None:
        rep["ledger"] = ledger_watch.report(_receipts(nodes))
        if chain_report is not None:
            rep["chain"] = chain_report
    if opts.json_out:
        print(json.dumps(rep))
    else:
        print_report(rep)
    wrong = rep.get("jobs", {}).get("wrong_accepted", 0)
    return 0 if converged and not wrong else 1
