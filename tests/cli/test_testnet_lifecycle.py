"""``p2pnode testnet up`` leaves no node behind: stopped by a signal, or killed outright."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p2pnode.testnet.launcher import plan_ports
from tests.cli.test_cli import child_env, init_home
from tests.polling import poll

START_TIMEOUT_S = 40.0
# The bound: nodes of a SIGKILLed launcher are gone within 10 s.
ORPHAN_BOUND_S = 10.0

pytestmark = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(),
                                reason="finds processes through /proc")


def processes_under(directory: Path) -> set[int]:
    """PIDs of live processes whose command line names ``directory`` (the node homes)."""
    needle = str(directory).encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != "Z":
            found.add(int(entry.name))
    return found


def start_launcher(root: Path, *extra: str) -> subprocess.Popen[bytes]:
    with open(root.parent / "launcher.err", "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "p2pnode", "testnet", "up", "-n", "3", "--dir", str(root),
             "--caps-interval", "2", *extra],
            stdout=subprocess.PIPE, stderr=err, env=child_env(), stdin=subprocess.DEVNULL)


def wait_running(root: Path, launcher: subprocess.Popen[bytes]) -> set[int]:
    """The node PIDs the launcher printed, once every node answers its admin API."""
    err = root.parent / "launcher.err"

    def running() -> str | None:
        assert launcher.poll() is None, err.read_text()
        text = err.read_text()
        return text if "all 3 nodes running" in text else None

    text = poll(running, START_TIMEOUT_S, "three running nodes")
    pids = {int(p) for line in text.splitlines() if line.startswith("pids ")
            for p in line.split()[1:]}
    assert len(pids) == 3
    assert pids <= processes_under(root)
    return pids


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_stops_every_node_and_prints_the_report(tmp_path: Path,
                                                          sig: signal.Signals) -> None:
    root = tmp_path / "tn"
    root.mkdir()
    launcher = start_launcher(root, "--json")
    try:
        pids = wait_running(root, launcher)
        launcher.send_signal(sig)
        out, _ = launcher.communicate(timeout=30)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    report = json.loads(out)
    assert {n["pid"] for n in report["nodes"]} == pids
    assert len(report["nodes"]) == 3
    assert f"{sig.name}; stopping nodes" in (tmp_path / "launcher.err").read_text()
    assert processes_under(root) == set()
    for n in report["nodes"]:
        events = [json.loads(ln)["event"] for ln in Path(n["log"]).read_text().splitlines()]
        assert events[-1] == "node.stopped"  # a clean stop, not a kill


@pytest.mark.slow
def test_nodes_of_a_killed_launcher_exit_on_their_own(tmp_path: Path) -> None:
    root = tmp_path / "tn"
    root.mkdir()
    launcher = start_launcher(root)
    try:
        wait_running(root, launcher)
    finally:
        launcher.kill()
        launcher.wait()
    killed_at = time.monotonic()
    poll(lambda: not processes_under(root), ORPHAN_BOUND_S, "the orphaned nodes to exit")
    assert time.monotonic() - killed_at < ORPHAN_BOUND_S


@pytest.mark.slow
def test_a_node_stops_when_its_lifeline_pipe_closes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The portable half, without the Linux parent-death signal: the pipe's EOF alone."""
    home = tmp_path / "home"
    init_home(capsys, home)
    r, w = os.pipe()
    with open(tmp_path / "stdout.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "p2pnode", "run", "--home", str(home),
             "--exit-with-fd", str(r)],
            stdout=log, stderr=subprocess.STDOUT, env=child_env(), pass_fds=(r,),
            stdin=subprocess.DEVNULL)
    os.close(r)
    try:
        poll(lambda: (home / "api.json").exists() or proc.poll() is not None,
             START_TIMEOUT_S, "the node to start")
        assert proc.poll() is None, (tmp_path / "stdout.log").read_text()
        os.close(w)
        assert proc.wait(timeout=ORPHAN_BOUND_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "launcher gone; stopping" in (tmp_path / "stdout.log").read_text()


def test_ports_are_planned_up_front_and_never_collide() -> None:
    for base in (0, 40_000):
        plan = plan_ports(5, base)
        ports = [p for node in plan for p in (node.listen, node.api, node.metrics)]
        assert len(set(ports)) == 15
        if base:
            assert [node.listen for node in plan] == [base + i for i in range(5)]
            assert not {p for node in plan for p in (node.api, node.metrics)} & set(
                range(base, base + 5))
