"""``p2pnode ledger verify-proof``: a proof file checks offline, a tampered one does not
(spec 07 LGR-14); ``ledger --help`` names its subcommands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from p2pnode import cli
from p2pnode.ledger import merkle
from tests.cli.test_cli import run_cli


def _proof_file(tmp: Path, **change: object) -> Path:
    balances = {bytes([i]) * 32: 100 * (i + 1) for i in range(5)}
    tree = merkle.build(balances)
    account = bytes([3]) * 32
    d = {"epoch": 7, "account": account.hex(), "cumulative": balances[account],
         "leaf": merkle.leaf(account, balances[account]).hex(),
         "path": [p.hex() for p in tree.proof(account) or []], "root": tree.root.hex()}
    d.update(change)
    f = tmp / "proof.json"
    f.write_text(json.dumps(d))
    return f


def test_a_valid_proof_checks_offline(capsys: pytest.CaptureFixture[str], tmp_path: Path
                                      ) -> None:
    code, out, _ = run_cli(capsys, "ledger", "verify-proof", str(_proof_file(tmp_path)))
    assert code == cli.EXIT_OK and out.startswith("valid: 400")
    code, out, _ = run_cli(capsys, "ledger", "verify-proof", str(_proof_file(tmp_path)),
                           "--json")
    assert code == cli.EXIT_OK and json.loads(out) == {"valid": True, "reason": "ok",
                                                       "epoch": 7}


@pytest.mark.parametrize("change, why", [
    ({"cumulative": 401}, "the leaf is not"),
    ({"root": "00" * 32}, "the path does not lead"),
    ({"path": []}, "the path does not lead"),
    ({"account": "zz"}, "not a proof"),
])
def test_a_tampered_proof_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     change: dict[str, object], why: str) -> None:
    code, out, _ = run_cli(capsys, "ledger", "verify-proof", str(_proof_file(tmp_path, **change)))
    assert code == cli.EXIT_ERROR and out.startswith("invalid: " + why)


def test_an_unreadable_file_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path
                                        ) -> None:
    (tmp_path / "bad.json").write_text("{")
    code, _, err = run_cli(capsys, "ledger", "verify-proof", str(tmp_path / "bad.json"))
    assert code == cli.EXIT_ERROR and "bad.json" in err


def test_help_names_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["ledger", "--help"])
    out = capsys.readouterr().out
    assert all(c in out for c in ("balance", "root", "proof", "verify-proof"))
