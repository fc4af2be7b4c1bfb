"""``p2pnode job ...`` and ``testnet up --jobs`` against real node processes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from p2pnode import cli
from p2pnode.jobs import tensors
from p2pnode.testnet import launcher
from tests.cli.test_cli import child_env, run_cli


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[list[launcher.NodeProc]]:
    opts = launcher.TestnetOptions(n=2, directory=tmp_path / "net", network="jobcli",
                                   caps_interval=5.0)
    nodes = launcher.prepare_nodes(opts, tmp_path / "net")
    try:
        launcher.start_network(nodes)
        launcher.wait_caps_converged(nodes, 30)
        yield nodes
    finally:
        launcher.stop_nodes(nodes)


def test_submit_wait_list_show_output(two_nodes: list[launcher.NodeProc], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    home = str(two_nodes[0].home)
    a = tensors.random_int8_matrix(5, 7, b"a")
    b = tensors.random_int8_matrix(7, 3, b"b")
    (tmp_path / "a.mat").write_bytes(tensors.encode_matrix(a))
    (tmp_path / "b.mat").write_bytes(tensors.encode_matrix(b))
    (tmp_path / "job.toml").write_text(
        'kind = "matmul"\nlease_s = 10\n[inputs]\na = "a.mat"\nb = "b.mat"\n')
    code, out, err = run_cli(capsys, "job", "submit", "--home", home,
                             str(tmp_path / "job.toml"), "--wait", "--json")
    assert code == cli.EXIT_OK, err
    (job,) = json.loads(out)
    assert job["state"] == "completed" and job["worker"] == two_nodes[1].peer_id
    assert "completed" in err  # progress went to stderr
    code, out, _ = run_cli(capsys, "job", "list", "--home", home, "--json")
    listed = json.loads(out)
    assert [j["id"] for j in listed["jobs"]] == [job["id"]]
    assert listed["counts"]["completed"] == 1
    code, out, _ = run_cli(capsys, "job", "show", "--home", home, job["id"][4:20],
                           "--output", str(tmp_path / "c.mat"))
    assert code == cli.EXIT_OK and "verified" in out
    c = tensors.decode_matrix((tmp_path / "c.mat").read_bytes(), 1000)
    assert np.array_equal(c, a.astype(np.int64) @ b.astype(np.int64))


def test_a_job_nobody_can_run_fails_and_wait_exits_1(
        two_nodes: list[launcher.NodeProc], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "job.toml").write_text(
        'kind = "wasm"\nmodule = "example:sum"\n[requirements]\ncores = 4096\n')
    code, out, err = run_cli(capsys, "job", "submit", "--home", str(two_nodes[0].home),
                             str(tmp_path / "job.toml"), "--deadline", "3", "--wait")
    assert code == cli.EXIT_ERROR, (out, err)
    assert "failed" in out and "deadline passed" in out
    code, _, err = run_cli(capsys, "job", "submit", "--home", str(two_nodes[0].home),
                           str(tmp_path / "missing.toml"))
    assert code == cli.EXIT_ERROR and "missing.toml" in err


@pytest.mark.slow
def test_testnet_up_with_jobs(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "p2pnode", "testnet", "up", "-n", "3", "--jobs", "6",
         "--epoch-len", "4", "--duration", "40", "--json", "--dir", str(tmp_path / "tn")],
        capture_output=True, env=child_env(), timeout=150, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    report = json.loads(res.stdout)
    jobs = report["jobs"]
    assert report["converged"] is True
    assert jobs["submitted"] == jobs["completed"] == 6 and jobs["failed"] == 0
    assert jobs["p50_ms"] is not None and jobs["p99_ms"] >= jobs["p50_ms"]
    # Every receipt reached every ledger, and the closed epochs have one root (spec 07).
    ledger = report["ledger"]
    assert ledger["converged"] and ledger["roots_agree"] and ledger["epochs_closed"] >= 1
    assert ledger["receipts"] == jobs["receipts"] >= 6


@pytest.mark.slow
def test_testnet_anchors_on_a_shared_devchain_and_every_earner_claims(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "p2pnode", "testnet", "up", "-n", "3", "--jobs", "6",
         "--epoch-len", "8", "--chain", "devchain", "--duration", "120", "--json",
         "--dir", str(tmp_path / "tn")],
        capture_output=True, env=child_env(), timeout=200, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr.decode()[-3000:] + res.stdout.decode()[-2000:]
    report = json.loads(res.stdout)
    chain = report["chain"]
    assert chain["backend"] == "devchain" and len(chain["anchored_epochs"]) >= 2
    assert chain["roots_match"] is True and chain["blocks"] == chain["verified"]
    assert chain["claims_ok"] >= 1  # the workers; a node that earned nothing is refused
    assert set(chain["claims_refused"]) <= {"nothing_to_claim"}


@pytest.mark.slow
def test_testnet_anchors_on_a_real_evm_node_and_every_earner_claims(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "p2pnode", "testnet", "up", "-n", "3", "--jobs", "6",
         "--epoch-len", "8", "--chain", "evm", "--duration", "120", "--json",
         "--dir", str(tmp_path / "tn")],
        capture_output=True, env=child_env(), timeout=200, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr.decode()[-3000:] + res.stdout.decode()[-2000:]
    chain = json.loads(res.stdout)["chain"]
    assert chain["backend"] == "evm" and len(chain["anchored_epochs"]) >= 2, chain
    assert chain["roots_match"] is True and chain["claims_ok"] >= 1, chain
    assert set(chain["claims_refused"]) <= {"nothing_to_claim"}, chain


@pytest.mark.slow
def test_testnet_cheaters_are_caught(tmp_path: Path) -> None:
    # Two of three workers cheat; every accepted output is rechecked by the launcher from
    # the inputs (wrong_accepted), and the cheats leave fraud proofs that all nodes take.
    res = subprocess.run(
        [sys.executable, "-m", "p2pnode", "testnet", "up", "-n", "4", "--jobs", "6",
         "--cheaters", "2", "--job-n", "24", "--epoch-len", "4", "--duration", "60", "--json",
         "--dir", str(tmp_path / "tn")],
        capture_output=True, env=child_env(), timeout=200, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    report = json.loads(res.stdout)
    jobs = report["jobs"]
    assert jobs["completed"] == 6 and jobs["wrong_accepted"] == 0
    assert jobs["verified"] == jobs["outputs_rechecked"] == 6
    assert jobs["receipts"] >= 6  # the testnet's jobs and the capability challenges
    assert jobs["fraud_proofs"] >= 1 and jobs["fraud_seen_by"] == 4
    assert set(jobs["rejected_by_reason"]) <= {"wrong_result", "bad_proof"}
    assert len(report["cheaters"]) == 2
    # The fraud proofs are slashes in every ledger, which agree (spec 07 LGR-5, LGR-16).
    ledger = report["ledger"]
    assert ledger["converged"] and ledger["roots_agree"]
    assert ledger["elements"] >= ledger["receipts"] + 1


def test_testnet_refuses_more_cheaters_than_it_can_carry(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "testnet", "up", "-n", "3", "--cheaters", "2")
    assert code == 2 and "at least one honest worker" in err
