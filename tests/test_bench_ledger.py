"""``p2pnode bench ledger`` runs end to end and reports the issue's JSON shape (no timings
are asserted: speed is measured by the benchmark, not by tests)."""

from __future__ import annotations

import json

import pytest

from p2pnode import cli
from p2pnode.ledger import bench


def test_report_shape_and_reconciliation_costs_less_than_sending_the_ids() -> None:
    rep = bench.run(n=4000, diff=200, accounts=3000)
    assert [r["case"] for r in rep["reconcile"]] == ["newest", "scattered"]
    for r in rep["reconcile"]:
        assert set(r) >= {"case", "n", "diff", "bytes", "full_bytes", "ratio",
                          "bytes_per_diff", "rounds"}
        assert r["full_bytes"] == 32 * r["n"] and r["bytes"] < r["full_bytes"]
        assert r["ratio"] == pytest.approx(r["bytes"] / r["full_bytes"])
        assert r["bytes_per_diff"] == pytest.approx(r["bytes"] / r["diff"])
    assert rep["identical"]["rounds"] == 1 and rep["identical"]["bytes"] < 1000
    assert rep["verify_rate"] > 0 and rep["raw_verify_rate"] > 0
    assert rep["merge_rate"] > 0 and rep["root"]["accounts"] == 3000
    assert 11 <= rep["root"]["depth"] <= 12  # ceil(log2(3000)), less where a node is carried


def test_cli_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "ledger", "--n", "1000", "--diff", "20", "--accounts", "100",
                     "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["reconcile"][0]["n"] == 1000 and "root_1m_s" in rep
