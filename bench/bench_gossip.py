"""Gossip delivery on loopback: latency and delivery ratio of capability ads.

N real node processes (default 20, started with the testnet launcher) each publish their
capability ad every ``--interval`` seconds. Every ad carries its publisher's wall clock
(``ts``, ms) and its ``seq``; every node logs, at debug level, the (signer, seq) of each ad
it accepts (``caps.ad.accepted``) with the time it did so. Over a window of ``--duration``
seconds after the nodes have converged, for each ad published in the window and each of
the N-1 other nodes: delivered or not, and the latency from publication to acceptance.

Baseline, in the same run: N processes of the same py-libp2p stack (``p2pnode.net.host``:
Noise, Yamux, GossipSub with the same parameters), with no p2pnode service and no topic
validator, each dialling the first process and two random earlier ones, publishing
messages of the ad's size at the same rate and timing them the same way. The ratio
``p99 / baseline p99`` is what p2pnode's validation, table and services add on top of
py-libp2p's GossipSub.

    python -m bench.bench_gossip [--nodes 20] [--interval 60] [--duration 60] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2pnode.config import CONFIG_FILE, load_config, render_template
from p2pnode.testnet import launcher

# After the window closes, the nodes keep running this long so that the last ads of the
# window can still arrive; an ad not accepted by then counts as not delivered.
GRACE_S = 3.0
BASELINE_TOPIC = "/bench/gossip/1"
SETTLE_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Published:
    signer: str
    seq: int
    ts_ms: int


@dataclass(frozen=True)
class Received:
    receiver: str
    signer: str
    seq: int
    at_ms: float


@dataclass(frozen=True)
class GossipResult:
    nodes: int
    messages: int
    expected: int
    delivered: int
    latencies_ms: tuple[float, ...]
    cpu_s: float  # CPU time of all N processes over the window


    @property
    def delivery(self) -> float:
        return self.delivered / self.expected if self.expected else 0.0

    def summary(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "messages": self.messages,
                "delivery": round(self.delivery, 5),
                "p50_ms": round(pct(self.latencies_ms, 0.5), 2),
                "p99_ms": round(pct(self.latencies_ms, 0.99), 2),
                "max_ms": round(max(self.latencies_ms, default=float("nan")), 2),
                "cpu_s": round(self.cpu_s, 2)}


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time the processes have used so far (Linux ``/proc``; 0 where
    unreadable)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def settle(pids: list[int], max_cores: float, timeout: float) -> float:
    """Wait until the processes use less than ``max_cores`` over two seconds running: a
    network just converged is still working off the ads of its start (every join makes
    every node publish again). Returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        before = cpu_seconds(pids)
        time.sleep(2.0)
        used = (cpu_seconds(pids) - before) / 2.0
        print(f"  settling: {used:.2f} cores", file=sys.stderr)
        if used < max_cores:
            break
    return time.monotonic() - t0


def pct(values: Iterable[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, round(p * (len(v) - 1)))] if v else float("nan")


def node_log_events(lines: Iterable[str], me: str) -> Iterator[Published | Received]:
    """The publications and receptions in one node's ``node.log`` (JSON lines)."""
    for line in lines:
        if '"caps.ad.' not in line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        ev = rec.get("event")
        if ev == "caps.ad.published" and "ad_ts" in rec:
            yield Published(me, int(rec["seq"]), int(rec["ad_ts"]))
        elif ev == "caps.ad.accepted" and "ad_ts" in rec and rec.get("peer") != me:
            yield Received(me, str(rec["peer"]), int(rec["seq"]), float(rec["ts"]) * 1000)


def tally(nodes: list[str], events: Iterable[Published | Received], start_ms: float,
          end_ms: float, cpu_s: float = 0.0) -> GossipResult:
    """Delivery and latency of the messages published in [start_ms, end_ms): every other
    node is expected to receive each one."""
    published: dict[tuple[str, int], int] = {}
    received: list[Received] = []
    for e in events:
        if isinstance(e, Published):
            if start_ms <= e.ts_ms < end_ms:
                published[(e.signer, e.seq)] = e.ts_ms
        else:
            received.append(e)
    seen: set[tuple[str, str, int]] = set()
    latencies: list[float] = []
    for r in received:
        ts = published.get((r.signer, r.seq))
        if ts is None or (r.receiver, r.signer, r.seq) in seen:
            continue
        seen.add((r.receiver, r.signer, r.seq))
        latencies.append(r.at_ms - ts)
    expected = len(published) * (len(nodes) - 1)
    return GossipResult(nodes=len(nodes), messages=len(published), expected=expected,
                        delivered=len(seen), latencies_ms=tuple(latencies), cpu_s=cpu_s)


# -- p2pnode ----------------------------------------------------------------------------


def bench_p2pnode(n: int, interval: float, duration: float, root: Path,
                  discovery_s: float, settle_cores: float) -> tuple[GossipResult, float]:
    opts = launcher.TestnetOptions(n=n, directory=root, network="benchgossip",
                                   caps_interval=interval)
    nodes = launcher.prepare_nodes(opts, root)
    for node in nodes:
        # Receptions are logged at debug level only. The workers' pull path (DHT lookups
        # every jobs.discovery_interval_s) is the market's load, not gossip's: see --help.
        path = node.home / CONFIG_FILE
        cfg = load_config(path).with_overrides(log_level="debug",
                                               jobs_discovery_interval_s=discovery_s)
        path.write_text(render_template(cfg))
    try:
        launcher.start_network(nodes)
        launcher.wait_caps_converged(nodes, 120)
        pids = [x.proc.pid for x in nodes if x.proc is not None]
        settled_s = settle(pids, settle_cores, SETTLE_TIMEOUT_S)
        print(f"  {n} nodes converged and settled; measuring {duration:.0f} s",
              file=sys.stderr)
        cpu0, start_ms = cpu_seconds(pids), time.time() * 1000
        time.sleep(duration)
        cpu_s, end_ms = cpu_seconds(pids) - cpu0, time.time() * 1000
        time.sleep(GRACE_S)
    finally:
        launcher.stop_nodes(nodes)
    events: list[Published | Received] = []
    for node in nodes:
        with open(node.home / "node.log") as f:
            events += node_log_events(f, node.peer_id)
    return tally([x.peer_id for x in nodes], events, start_ms, end_ms, cpu_s), settled_s


# -- baseline: the bare GossipSub stack ---------------------------------------------------


def _peer_main(index: int, port: int, dials: list[str], interval: float, size: int,
               out: Path) -> None:
    """One baseline process: publish a message of ``size`` bytes every ``interval`` s
    (jittered like the ad interval), and log each publication and reception as JSON lines
    in the format of ``node.log``."""
    import trio

    from p2pnode.identity import Identity
    from p2pnode.net.host import run_stack
    from p2pnode.net.peering import dial

    identity = Identity.generate()
    rng = random.Random(index)
    me = identity.peer_id
    log = open(out, "w", buffering=1)  # noqa: SIM115 - line by line: killed, not closed

    def write(rec: dict[str, Any]) -> None:
        log.write(json.dumps(rec) + "\n")

    async def main() -> None:
        async with run_stack(identity, "benchbase", [f"/ip4/127.0.0.1/tcp/{port}"]) as stack:
            sub = await stack.pubsub.subscribe(BASELINE_TOPIC)
            print(json.dumps({"addr": f"/ip4/127.0.0.1/tcp/{port}/p2p/{me}"}), flush=True)
            for a in dials:
                await dial(stack, a, timeout=5.0)

            async def read() -> None:
                while True:
                    msg = await sub.get()
                    now = time.time()
                    body = json.loads(msg.data[: msg.data.index(b"}") + 1])
                    write({"ts": round(now, 3), "event": "caps.ad.accepted",
                           "peer": body["p"], "seq": body["seq"], "ad_ts": body["ts"]})

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                seq = 0
                while True:
                    await trio.sleep(interval * rng.uniform(0.9, 1.1))
                    seq += 1
                    ts = int(time.time() * 1000)
                    head = json.dumps({"p": me, "seq": seq, "ts": ts}).encode()
                    await stack.pubsub.publish(BASELINE_TOPIC, head.ljust(size, b" "))
                    write({"event": "caps.ad.published", "seq": seq, "ad_ts": ts})
                    log.flush()

    print(json.dumps({"peer": me}), flush=True)
    try:
        trio.run(main)
    except KeyboardInterrupt:
        pass
    finally:
        log.close()


def bench_baseline(n: int, interval: float, duration: float, size: int, root: Path,
                   settle_cores: float) -> GossipResult:
    ports = launcher.plan_ports(n, 0)
    procs: list[subprocess.Popen[str]] = []
    peers: list[str] = []
    addrs: list[str] = []
    rng = random.Random(1)
    try:
        for i in range(n):
            earlier = [addrs[0], *rng.sample(addrs[1:], min(2, len(addrs) - 1))] if addrs else []
            cmd = [sys.executable, "-m", "bench.bench_gossip", "--peer", str(i),
                   "--peer-port", str(ports[i].listen), "--interval", str(interval),
                   "--size", str(size), "--peer-log", str(root / f"peer-{i}.log"),
                   *[x for a in earlier for x in ("--peer-dial", a)]]
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
            procs.append(p)
            assert p.stdout is not None
            peers.append(json.loads(p.stdout.readline())["peer"])
            addrs.append(json.loads(p.stdout.readline())["addr"])
        # Let the meshes form (a few heartbeats) before the window opens.
        time.sleep(5.0)
        settle([p.pid for p in procs], settle_cores, SETTLE_TIMEOUT_S)
        print(f"  {n} baseline peers up; measuring {duration:.0f} s", file=sys.stderr)
        cpu0, start_ms = cpu_seconds(p.pid for p in procs), time.time() * 1000
        time.sleep(duration)
        cpu_s, end_ms = cpu_seconds(p.pid for p in procs) - cpu0, time.time() * 1000
        time.sleep(GRACE_S)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    events: list[Published | Received] = []
    for i, me in enumerate(peers):
        with open(root / f"peer-{i}.log") as f:
            events += node_log_events(f, me)
    return tally(peers, events, start_ms, end_ms, cpu_s)


def _ad_size(root: Path) -> int:
    """Bytes of one sealed capability ad as the nodes publish it (addresses included)."""
    from p2pnode.caps.model import CapabilityAd
    from p2pnode.identity import Identity

    ad = CapabilityAd(net="benchgossip", seq=1, ts=int(time.time() * 1000), ttl=60,
                      cores=os.cpu_count() or 1, threads=os.cpu_count() or 1, arch="x86_64",
                      mem=8 << 30, gpus=(), kinds=("matmul", "wasm"), price=(),
                      addrs=("/ip4/127.0.0.1/tcp/40000",), agent="p2pnode-py/0.0.0")
    return len(ad.encode(Identity.generate()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_gossip", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=20)
    p.add_argument("--interval", type=float, default=60.0,
                   help="seconds between two ads of one node (caps_interval_s)")
    p.add_argument("--duration", type=float, default=60.0,
                   help="seconds of the measurement window")
    p.add_argument("--discovery-interval", type=float, default=600.0,
                   help="the nodes' jobs.discovery_interval_s (default 600: with no jobs "
                   "to find, the workers' DHT lookups every 5 s are load that is not "
                   "gossip's)")
    p.add_argument("--settle-cores", type=float, default=0.5,
                   help="after converging, wait (at most 90 s) until the nodes use less "
                   "than this many cores before the window opens")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--json", action="store_true")
    # One process of the baseline (started by the benchmark itself).
    p.add_argument("--peer", type=int, default=-1, help=argparse.SUPPRESS)
    p.add_argument("--peer-port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--peer-dial", action="append", default=[], help=argparse.SUPPRESS)
    p.add_argument("--peer-log", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.peer >= 0:
        _peer_main(a.peer, a.peer_port, a.peer_dial, a.interval, a.size, a.peer_log)
        return 0
    if a.nodes < 2 or a.interval <= 0 or a.duration <= 0:
        p.error("--nodes must be at least 2, --interval and --duration positive")
    root = Path(tempfile.mkdtemp(prefix="p2pnode-bench-gossip-"))
    rate = a.nodes / a.interval
    print(f"gossip: {a.nodes} nodes, one ad each per {a.interval} s "
          f"({rate:.1f} msg/s in all) ...", file=sys.stderr)
    ours, settled_s = bench_p2pnode(a.nodes, a.interval, a.duration, root,
                                    a.discovery_interval, a.settle_cores)
    out: dict[str, Any] = {**ours.summary(), "interval_s": a.interval,
                           "settle_s": round(settled_s, 1),
                           "discovery_interval_s": a.discovery_interval,
                           "rate_msg_s": round(rate, 2), "duration_s": a.duration}
    if not a.skip_baseline:
        size = _ad_size(root)
        print(f"baseline: {a.nodes} bare GossipSub processes, {size}-byte messages ...",
              file=sys.stderr)
        base = bench_baseline(a.nodes, a.interval, a.duration, size, root, a.settle_cores)
        out["baseline"] = {**base.summary(), "message_bytes": size,
                           "what": "bare GossipSub stack (p2pnode.net.host), no validator"}
        bp99 = base.summary()["p99_ms"]
        out["p99_ratio"] = round(out["p99_ms"] / bp99, 2) if bp99 > 0 else None
    if a.json:
        print(json.dumps(out))
        return 0
    print(f"gossip bench: {a.nodes} nodes, ad every {a.interval} s ({rate:.1f} msg/s), "
          f"{a.duration:.0f} s window")
    rows = [("p2pnode", out)] + ([("baseline", out["baseline"])] if "baseline" in out else [])
    print(f"{'':<10} {'messages':>8} {'delivery':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'CPU s':>7}")
    for name, r in rows:
        print(f"{name:<10} {r['messages']:>8} {100 * r['delivery']:>8.2f}% {r['p50_ms']:>8.1f} "
              f"{r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} {r['cpu_s']:>7.1f}")
    if "p99_ratio" in out:
        print(f"p99 ours/baseline: {out['p99_ratio']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
