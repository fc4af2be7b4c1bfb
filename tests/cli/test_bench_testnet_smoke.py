"""The testnet benchmark runs a launcher per size and reports it (two nodes, no timing
checks)."""

from __future__ import annotations

import json

import pytest

from bench import bench_testnet


def test_bench_testnet_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_testnet.main(["--sizes", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (run,) = report["runs"]
    assert run["n"] == 2 and run["converged"] and run["exit_code"] == 0
    assert run["start_s"] > 0 and run["converge_s"] is not None
    assert run["total_s"] >= run["start_s"]
    assert run["bound_s"] == pytest.approx(11.0)
    assert run["ratio"] == pytest.approx(run["converge_s"] / 11.0, abs=1e-3)
