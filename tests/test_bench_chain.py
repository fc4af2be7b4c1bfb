"""``p2pnode bench chain`` runs end to end and reports the issue's JSON shape (gas is
deterministic; times are not asserted)."""

from __future__ import annotations

import json

import pytest

from p2pnode import cli
from p2pnode.chain import bench


def test_report_shape() -> None:
    rep = bench.run(sizes=(1 << 4, 1 << 6))
    assert set(rep) >= {"anchor_gas", "claims", "devchain_anchors_per_s"}
    assert [c["depth"] for c in rep["claims"]] == [4, 6]
    assert rep["anchor_gas"] < rep["anchor_gas_first"]  # the first creates the slots
    assert rep["claims"][0]["claim_gas"] < rep["claims"][1]["claim_gas"]  # deeper costs more
    assert rep["devchain_anchors_per_s"] > 0 and rep["devchain_blocks"] >= 2


def test_cli_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "chain", "--depths", "3", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["claims"][0]["accounts"] == 8
