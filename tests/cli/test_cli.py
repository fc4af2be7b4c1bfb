"""The ``p2pnode`` command, run for real: init, run, status/peers/caps, metrics, testnet."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pnode import cli
from p2pnode.config import API_FILE, CONFIG_FILE, KEY_FILE, LOG_FILE, Config, load_config
from p2pnode.identity import load_identity
from tests.polling import poll

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


def child_env() -> dict[str, str]:
    """Environment for child processes: this checkout's package first on the path."""
    env = {k: v for k, v in os.environ.items() if k != "P2PNODE_HOME"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run_cli(capsys, *argv, "--json")
    assert code == cli.EXIT_OK, err
    return json.loads(out)


def init_home(capsys: pytest.CaptureFixture[str], home: Path, *extra: str) -> dict[str, Any]:
    return dict(cli_json(capsys, "init", "--home", str(home), "--network", "clitest",
                         "--listen", "/ip4/127.0.0.1/tcp/0", "--metrics", "127.0.0.1:0",
                         *extra))


# -- init --------------------------------------------------------------------------------


def test_init_creates_key_and_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    code, out, err = run_cli(capsys, "init", "--home", str(home))
    assert code == cli.EXIT_OK, err
    key = home / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    peer_id = load_identity(key).peer_id
    assert peer_id in out and "initialised" in out
    text = (home / CONFIG_FILE).read_text()
    assert tomllib.loads(text)["node"]["network"] == "devnet"
    assert load_config(home / CONFIG_FILE) == Config()


def test_init_json_and_idempotence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    first = init_home(capsys, home)
    assert first["created"] is True
    assert first["peer_id"] == load_identity(home / KEY_FILE).peer_id
    assert Path(first["key_file"]) == (home / KEY_FILE).resolve()
    assert Path(first["config"]) == (home / CONFIG_FILE).resolve()
    cfg = load_config(home / CONFIG_FILE)
    assert (cfg.network, cfg.listen, cfg.metrics_listen) == (
        "clitest", ("/ip4/127.0.0.1/tcp/0",), "127.0.0.1:0")
    # Again: the key is kept.
    again = init_home(capsys, home)
    assert (again["created"], again["peer_id"]) == (False, first["peer_id"])
    # --force makes a new identity.
    forced = init_home(capsys, home, "--force")
    assert forced["created"] is True and forced["peer_id"] != first["peer_id"]
    assert stat.S_IMODE((home / KEY_FILE).stat().st_mode) == 0o600


def test_init_refuses_a_readable_existing_key(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    init_home(capsys, home)
    (home / KEY_FILE).chmod(0o644)
    code, _, err = run_cli(capsys, "init", "--home", str(home))
    assert code == cli.EXIT_ERROR
    assert "0600" in err


# -- commands without a node -------------------------------------------------------------


@pytest.mark.parametrize("command", ["status", "peers", "caps"])
def test_commands_without_a_running_node_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    code, out, err = run_cli(capsys, command, "--home", str(tmp_path))
    assert code == cli.EXIT_NOT_RUNNING == 3
    assert out == ""
    assert "no running node" in err and "p2pnode run" in err


def test_stale_api_file_is_reported_as_not_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A port that was just free and is now closed: nobody answers there.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / API_FILE).write_text(json.dumps({"addr": f"127.0.0.1:{port}", "token": "x"}))
    code, _, err = run_cli(capsys, "status", "--json", "--home", str(tmp_path))
    assert code == cli.EXIT_NOT_RUNNING
    assert "not answering" in err


def test_run_without_init_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    code, _, err = run_cli(capsys, "run", "--home", str(tmp_path / "empty"))
    assert code == cli.EXIT_ERROR
    assert "not initialised" in err and "p2pnode init" in err


# -- a real node process -------------------------------------------------------------------


@pytest.fixture
def node_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                 ) -> Iterator[tuple[Path, subprocess.Popen[bytes], str]]:
    home = tmp_path / "home"
    peer_id = init_home(capsys, home)["peer_id"]
    with open(tmp_path / "stdout.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "p2pnode", "run", "--home", str(home)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env(),
        )
    try:
        yield home, proc, peer_id
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_status_peers_caps_metrics_then_sigterm(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    node_process: tuple[Path, subprocess.Popen[bytes], str],
) -> None:
    home, proc, peer_id = node_process
    h = ("--home", str(home))

    def status_when_up() -> Any:
        assert proc.poll() is None, (tmp_path / "stdout.log").read_text()
        code, out, _ = run_cli(capsys, "status", "--json", *h)
        return json.loads(out) if code == cli.EXIT_OK else None

    st = poll(status_when_up, START_TIMEOUT_S, "the node's admin API")
    assert st["peer_id"] == peer_id
    assert st["network"] == "clitest"
    assert st["peers"] == 0
    assert st["uptime_s"] >= 0
    assert any(a.startswith("/ip4/127.0.0.1/tcp/") for a in st["addrs"])
    assert st["counters"]["ads_rejected"] == {}
    limits = st["limits"]  # usage against every bound of the market
    assert limits["blobs"] == {"bytes": 0, "quota": 4 << 30}
    assert limits["requester_jobs"] == {"held": 0, "cap": 10_000}
    assert set(limits) == {"blobs", "requester_jobs", "worker_finished", "worker_seen",
                           "connections", "bans", "dht_records", "dht_record_bytes",
                           "dht_providers", "caps_table", "signature_cache", "ledger"}
    assert limits["ledger"] == {"held": 0, "cap": 2_000_000}
    assert st["ledger"]["elements"] == 0 and st["ledger"]["epoch_len_s"] == 3600
    assert limits["connections"] == {"held": 0, "cap": 64}
    assert limits["dht_records"] == {"held": 0, "cap": 4096}
    assert limits["caps_table"]["cap"] == 10_000
    assert stat.S_IMODE((home / API_FILE).stat().st_mode) == 0o600

    # The node hears its own first ad through its subscription.
    caps = poll(lambda: cli_json(capsys, "caps", *h), START_TIMEOUT_S, "the node's own ad")
    assert [(c["peer_id"], c["self"]) for c in caps] == [(peer_id, True)]
    assert caps[0]["kinds"] == ["matmul", "wasm"] and caps[0]["seq"] >= 1
    assert cli_json(capsys, "peers", *h) == []

    # Human-readable forms too.
    code, out, _ = run_cli(capsys, "status", *h)
    assert code == 0 and f"peer id     {peer_id}" in out and "network     clitest" in out
    assert "blobs       0 B of 4.0 GiB (0%)" in out and "requester jobs 0/10000" in out
    code, out, _ = run_cli(capsys, "caps", *h)
    assert code == 0 and out.startswith("PEER") and f"{peer_id} (self)" in out
    code, out, _ = run_cli(capsys, "peers", *h)
    assert code == 0 and "no connected peers" in out

    # Prometheus text over HTTP on loopback.
    metrics_addr = st["metrics"]
    assert metrics_addr.startswith("127.0.0.1:")
    with urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    lines = text.splitlines()
    rejected = [ln for ln in lines if ln.startswith("p2pnode_caps_ads_rejected_total{")]
    assert 'p2pnode_caps_ads_rejected_total{reason="bad_signature"} 0.0' in rejected
    assert len(rejected) >= 20  # one per reason code, zeros included
    uptime = [ln for ln in lines if ln.startswith("p2pnode_uptime_seconds ")]
    assert len(uptime) == 1 and float(uptime[0].split()[1]) > 0
    assert any(ln.startswith("p2pnode_caps_ads_published_total ") for ln in lines)
    quota = [ln for ln in lines if ln.startswith("p2pnode_blobs_quota_bytes ")]
    assert len(quota) == 1 and float(quota[0].split()[1]) == 4 << 30
    assert 'p2pnode_blobs_evicted_total{why="pressure"} 0.0' in lines

    # SIGTERM: exit 0, a clean log that ends with node.stopped, the API file gone.
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=STOP_TIMEOUT_S) == 0
    records = [json.loads(ln) for ln in (home / LOG_FILE).read_text().splitlines()]
    events = [r["event"] for r in records]
    assert "node.started" in events
    assert events[-1] == "node.stopped"
    assert [r for r in records if r["level"] in ("error", "critical") or "exc" in r] == []
    assert "Traceback" not in (tmp_path / "stdout.log").read_text()
    assert not (home / API_FILE).exists()
    code, _, _ = run_cli(capsys, "status", *h)
    assert code == cli.EXIT_NOT_RUNNING


# -- testnet -------------------------------------------------------------------------------


@pytest.mark.slow
def test_testnet_up_converges(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "p2pnode", "testnet", "up", "-n", "3", "--duration", "40",
         "--json", "--dir", str(tmp_path / "tn")],
        capture_output=True, env=child_env(), timeout=120, stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    report = json.loads(res.stdout)
    assert report["converged"] is True
    assert len(report["nodes"]) == 3
    assert len({n["peer_id"] for n in report["nodes"]}) == 3
    for n in report["nodes"]:
        assert n["caps_known"] == 2, n
        assert n["peers"] >= 1
        assert n["ads_rejected"] == {}
        events = [json.loads(ln)["event"] for ln in Path(n["log"]).read_text().splitlines()]
        assert events[-1] == "node.stopped"


def test_run_refuses_a_port_another_node_listens_on(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        home = tmp_path / "home"
        init_home(capsys, home)
        code, _, err = run_cli(capsys, "run", "--home", str(home), "--listen",
                               f"/ip4/127.0.0.1/tcp/{port}")
    assert code == cli.EXIT_ERROR
    assert f"cannot listen on /ip4/127.0.0.1/tcp/{port}" in err and "in use" in err
