"""``p2pnode testnet up``: N real node processes on 127.0.0.1, a convergence report.

The launcher is a plain supervisor: it creates node homes, starts ``p2pnode run`` processes,
polls each node's admin API, and stops every process it started, whatever happens.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pnode.api.client import ApiError, call
from p2pnode.config import API_FILE, CONFIG_FILE, KEY_FILE, Config, render_template
from p2pnode.identity import Identity, save_identity

POLL_S = 0.5
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@dataclass
class TestnetOptions:
    n: int = 5
    duration: float | None = None
    base_port: int = 0
    directory: Path | None = None
    network: str = "testnet"
    json_out: bool = False
    caps_interval: float = 10.0
    jobs: int = 0
    requesters: int = 1
    job_n: int = 64
    job_kind: str = "matmul"


@dataclass
class NodeProc:
    index: int
    home: Path
    peer_id: str
    proc: subprocess.Popen[bytes] | None = None
    status: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def _say(opts: TestnetOptions, msg: str) -> None:
    # Progress always goes to stderr so that --json keeps stdout one JSON object.
    print(msg, file=sys.stderr, flush=True)


def _prepare(opts: TestnetOptions, root: Path, i: int) -> NodeProc:
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
    port = opts.base_port + i if opts.base_port else 0
    cfg = Config(network=opts.network, listen=(f"/ip4/127.0.0.1/tcp/{port}",),
                 metrics_listen="127.0.0.1:0", caps_interval_s=opts.caps_interval,
                 caps_ttl_s=max(60, int(opts.caps_interval * 6)))
    (home / CONFIG_FILE).write_text(render_template(cfg))
    return NodeProc(index=i, home=home, peer_id=identity.peer_id)


def _start(node: NodeProc, bootstrap: str | None) -> None:
    cmd = [sys.executable, "-m", "p2pnode", "run", "--home", str(node.home)]
    if bootstrap:
        cmd += ["--bootstrap", bootstrap]
    log = open(node.home / "stdout.log", "ab")  # noqa: SIM115 - owned by the process
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    node.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                 stdin=subprocess.DEVNULL)
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


def _pin_port(node: NodeProc, addrs: list[str]) -> None:
    """Keep the port a node got on its first start, so a restarted node is where its peers
    last saw it."""
    cfg_path = node.home / CONFIG_FILE
    text = cfg_path.read_text()
    first = addrs[0].split("/p2p/")[0] if addrs else ""
    if "/tcp/0\"" in text and first:
        cfg_path.write_text(text.replace("/ip4/127.0.0.1/tcp/0\"", first + "\""))


def _wait_started(node: NodeProc) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        st = _poll(node)
        if st is not None:
            _pin_port(node, st.get("addrs", []))
            return st
        if node.proc is not None and node.proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"node {node.index} did not start: {node.error or 'timeout'}; "
                       f"see {node.home / 'stdout.log'}")


def _stop(nodes: list[NodeProc]) -> None:
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


def start_network(nodes: list[NodeProc]) -> str:
    """Start node 0, then every other node with node 0 as bootstrap peer; return its
    address. Raises RuntimeError if a node does not come up."""
    _start(nodes[0], None)
    st0 = _wait_started(nodes[0])
    boot = f"{st0['addrs'][0].split('/p2p/')[0]}/p2p/{nodes[0].peer_id}"
    for n in nodes[1:]:
        _start(n, boot)
    for n in nodes[1:]:
        _wait_started(n)
    return boot


def wait_caps_converged(nodes: list[NodeProc], timeout: float) -> None:
    """Block until every node knows every other node's ad; RuntimeError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        for n in nodes:
            _poll(n)
        if _converged(nodes):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"nodes did not converge within {timeout} s")
        time.sleep(0.2)


def _converged(nodes: list[NodeProc]) -> bool:
    want = len(nodes) - 1
    return all(n.status and n.status.get("caps_known") == want
               and (want == 0 or n.status.get("peers", 0) >= 1) for n in nodes)


class JobDriver:
    """Submits the testnet's jobs over the run and follows them to a final state."""

    def __init__(self, opts: TestnetOptions, nodes: list[NodeProc]) -> None:
        self.opts = opts
        self.requesters = nodes[: max(1, min(opts.requesters, len(nodes)))]
        span = (opts.duration or 60.0) * 0.3
        self.gap = span / opts.jobs if opts.jobs else 0.0
        self.submitted: dict[str, int] = {}  # job id -> requester index
        self.submit_errors = 0
        self.next_at: float | None = None
        self.final: dict[str, dict[str, Any]] = {}
        self.state_counts: dict[str, int] = {}
        self.reassigned = 0

    def start(self) -> None:
        if self.next_at is None:
            self.next_at = time.monotonic()

    def step(self) -> None:
        if self.next_at is None:
            return
        while (len(self.submitted) + self.submit_errors < self.opts.jobs
               and time.monotonic() >= self.next_at):
            i = (len(self.submitted) + self.submit_errors) % len(self.requesters)
            node = self.requesters[i]
            args = {"kind": self.opts.job_kind, "n": self.opts.job_n, "lease_s": 8,
                    "deadline_s": max(60, int(self.opts.duration or 600))}
            if self.opts.job_kind == "wasm":
                args = {"kind": "wasm", "module": "example:sum", "lease_s": 8,
                        "deadline_s": max(60, int(self.opts.duration or 600))}
            try:
                for j in call(node.home, "job.submit", args, timeout=30.0):
                    self.submitted[j["id"]] = node.index
            except (ApiError, OSError, ValueError):
                self.submit_errors += 1
            self.next_at += self.gap
        self.poll()

    def poll(self) -> None:
        counts: dict[str, int] = {}
        reassigned = 0
        for node in self.requesters:
            try:
                res = call(node.home, "job.list", timeout=10.0)
            except (ApiError, OSError, ValueError):
                continue
            for j in res["jobs"]:
                if j["id"] not in self.submitted:
                    continue
                counts[j["state"]] = counts.get(j["state"], 0) + 1
                reassigned += j["reassigned"]
                if j["state"] in ("completed", "failed"):
                    self.final[j["id"]] = j
        self.state_counts = counts
        self.reassigned = reassigned

    @property
    def done(self) -> bool:
        completed = sum(1 for j in self.final.values() if j["state"] == "completed")
        return completed == len(self.submitted) == self.opts.jobs

    def report(self) -> dict[str, Any]:
        lat = sorted(j["latency_ms"] for j in self.final.values()
                     if j["state"] == "completed" and j["latency_ms"] is not None)

        def pct(p: float) -> int | None:
            if not lat:
                return None
            return int(lat[min(len(lat) - 1, round(p * (len(lat) - 1)))])

        return {
            "submitted": len(self.submitted),
            "completed": sum(1 for j in self.final.values() if j["state"] == "completed"),
            "failed": sum(1 for j in self.final.values() if j["state"] == "failed")
            + self.submit_errors,
            "reassigned": self.reassigned,
            "p50_ms": pct(0.5),
            "p99_ms": pct(0.99),
            "states": self.state_counts,
        }


def _report(opts: TestnetOptions, root: Path, nodes: list[NodeProc], converged: bool,
            started: float, converge_s: float | None,
            jobs: JobDriver | None = None) -> dict[str, Any]:
    rep: dict[str, Any] = {
        "converged": converged,
        "network": opts.network,
        "dir": str(root),
        "elapsed_s": round(time.monotonic() - started, 3),
        "converge_s": None if converge_s is None else round(converge_s, 3),
        "nodes": [
            {
                "index": n.index,
                "peer_id": n.peer_id,
                "peers": int(n.status.get("peers", 0)),
                "caps_known": int(n.status.get("caps_known", 0)),
                "addrs": n.status.get("addrs", []),
                "metrics": n.status.get("metrics"),
                "ads_rejected": n.status.get("counters", {}).get("ads_rejected", {}),
                "log": str(n.home / "node.log"),
                **({"error": n.error} if n.error else {}),
            }
            for n in nodes
        ],
    }
    if jobs is not None:
        rep["jobs"] = jobs.report()
    return rep


def _print_report(rep: dict[str, Any]) -> None:
    verdict = "CONVERGED" if rep["converged"] else "NOT CONVERGED"
    when = f" in {rep['converge_s']:.1f} s" if rep["converge_s"] is not None else ""
    print(f"testnet {rep['network']}: {verdict}{when}, {len(rep['nodes'])} nodes, "
          f"logs in {rep['dir']}")
    if "jobs" in rep:
        j = rep["jobs"]
        print(f"jobs: {j['submitted']} submitted, {j['completed']} completed, {j['failed']} "
              f"failed, {j['reassigned']} reassigned; latency p50 {j['p50_ms']} ms, "
              f"p99 {j['p99_ms']} ms")
    print(f"{'#':>2}  {'PEER':<52}  {'PEERS':>5}  {'CAPS':>4}  NOTE")
    for n in rep["nodes"]:
        note = n.get("error", "")
        if n["ads_rejected"]:
            note = (note + " rejected " + json.dumps(n["ads_rejected"])).strip()
        print(f"{n['index']:>2}  {n['peer_id']:<52}  {n['peers']:>5}  {n['caps_known']:>4}  "
              f"{note}")


def run_testnet(opts: TestnetOptions) -> int:
    if opts.n < 1:
        print("error: -n must be at least 1", file=sys.stderr)
        return 2
    root = opts.directory or Path(tempfile.mkdtemp(prefix="p2pnode-testnet-"))
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    nodes = [_prepare(opts, root, i) for i in range(opts.n)]
    started = time.monotonic()
    converge_s: float | None = None
    converged = False
    jobs = JobDriver(opts, nodes) if opts.jobs > 0 else None
    caps_since: float | None = None
    try:
        _say(opts, f"starting {opts.n} nodes in {root}")
        boot = start_network(nodes)
        _say(opts, f"all {opts.n} nodes running; bootstrap {boot}")
        deadline = None if opts.duration is None else started + opts.duration
        last_line = ""
        while deadline is None or time.monotonic() < deadline:
            for n in nodes:
                _poll(n)
            caps_ok = _converged(nodes)
            if caps_ok and caps_since is None:
                caps_since = time.monotonic()
            if jobs is not None:
                # Jobs start once nodes know each other (or after 15 s regardless).
                if caps_since is not None or time.monotonic() - started > 15:
                    jobs.start()
                jobs.step()
            now_converged = caps_ok and (jobs is None or jobs.done)
            if now_converged and converge_s is None:
                converge_s = time.monotonic() - started
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
    except KeyboardInterrupt:
        _say(opts, "interrupted; stopping nodes")
        for n in nodes:
            _poll(n)
        converged = _converged(nodes)
    except RuntimeError as e:
        _say(opts, f"error: {e}")
        converged = False
    finally:
        if jobs is not None:
            jobs.poll()
        _stop(nodes)
    rep = _report(opts, root, nodes, converged, started, converge_s, jobs)
    if opts.json_out:
        print(json.dumps(rep))
    else:
        _print_report(rep)
    return 0 if converged else 1
