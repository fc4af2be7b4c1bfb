"""The wire benchmark runs and reports every op (a handful of iterations, no timing checks)."""

from __future__ import annotations

import json

import pytest

from bench import bench_wire


def test_bench_wire_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = bench_wire.main(["--json", "--iterations", "3", "--sig-iterations", "2",
                            "--repeats", "1"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["op"] for r in report["results"]] == ["encode", "decode", "seal", "open"]
    for r in report["results"]:
        assert r["ours_ops_s"] > 0 and r["baseline_ops_s"] > 0 and r["ratio"] > 0
    assert 0 < report["body_bytes"] < report["envelope_bytes"] <= 4096
    assert [r["op"] for r in report["reference"]] == ["encode", "decode"]
    assert all(r["ops_s"] > 0 and r["ours_over_reference"] > 0 for r in report["reference"])


def test_bench_wire_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_wire.main(["--iterations", "2", "--sig-iterations", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("wire bench:")
    assert [ln.split()[0] for ln in out[2:6]] == ["encode", "decode", "seal", "open"]
    assert [ln.split()[1] for ln in out[6:]] == ["cbor.reference_encode:",
                                                 "cbor.reference_decode:"]


def test_bench_wire_refuses_zero_iterations(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench_wire.main(["--iterations", "0"])
    assert exc.value.code == 2
