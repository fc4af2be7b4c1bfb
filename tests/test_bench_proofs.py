"""``p2pnode bench proofs`` runs end to end and reports the issue's JSON shape (no timings
are asserted: speed is measured by the benchmark, not by tests)."""

from __future__ import annotations

import json

import pytest

from p2pnode import cli
from p2pnode.proofs.bench import run


def test_report_shape_and_the_check_catches_a_wrong_product() -> None:
    rep = run([64, 96], repeat=1, wasm_steps=3000)
    assert [r["n"] for r in rep["matmul"]] == [64, 96]
    for r in rep["matmul"]:
        assert set(r) == {"n", "work_s", "blas_s", "work_vs_blas", "verify_s", "ratio",
                          "soundness_bits", "caught"}
        assert r["caught"] is True and r["soundness_bits"] >= 40
        assert r["ratio"] == pytest.approx(r["verify_s"] / r["work_s"], rel=0.05, abs=1e-3)
    w = rep["wasm"]
    assert set(w) >= {"fuel", "checkpoints", "checkpoint_overhead", "dispute_rounds",
                      "referee_fraction"}
    assert w["cheater_lost"] is True and w["dispute_rounds"] <= w["max_rounds"]
    assert 0 < w["referee_fraction"] < 1 and w["checkpoints"] > 1


def test_cli_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "proofs", "--n", "32", "--repeat", "1", "--wasm-steps", "2000",
                     "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["matmul"][0]["n"] == 32
