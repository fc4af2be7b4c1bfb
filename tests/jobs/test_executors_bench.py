"""Smoke test of the matmul benchmark (the benchmark itself is not part of the suite)."""

from __future__ import annotations

import json

import pytest

from bench import bench_matmul


def test_bench_runs_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_matmul.main(["--n", "8", "4", "--repeat", "1", "--baseline-max", "4",
                              "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["baseline"] == bench_matmul.BASELINE
    small, big = report["rows"]
    assert (small["n"], big["n"]) == (4, 8)
    assert small["exact"] is True and small["baseline_estimated"] is False
    assert big["baseline_estimated"] is True and "exact" not in big
    assert small["speedup"] > 0 and small["kernel_s"] >= 0


def test_bench_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_matmul.main(["--n", "8", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "numpy int64 matmul" in out and "speedup" in out
