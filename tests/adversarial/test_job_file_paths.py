"""A job file handed to an operator tries to publish files it has no business with.

Whatever a job file names becomes a public blob (spec 05 §6), so ``p2pnode job submit``
refuses every path of a job file that leads out of the file's own directory, before it
contacts the node (docs/jobs.md). The node is faked: it must never be asked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from p2pnode import cli
from tests.cli.test_cli import run_cli


@pytest.fixture
def node_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from p2pnode.api import client

    calls: list[str] = []

    def call(home: Path, cmd: str, args: dict[str, Any] | None = None,
             timeout: float = 10.0) -> Any:
        calls.append(cmd)
        return []

    monkeypatch.setattr(client, "call", call)
    return calls


@pytest.fixture
def victim(tmp_path: Path) -> dict[str, Path]:
    """An operator's secrets, and a directory holding a job file received from someone."""
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    key = ssh / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    node_key = tmp_path / "home" / ".p2pnode" / "identity.key"
    node_key.parent.mkdir()
    node_key.write_bytes(os.urandom(32))
    jobs = tmp_path / "home" / "downloads" / "job"
    jobs.mkdir(parents=True)
    return {"ssh": key, "node_key": node_key, "jobs": jobs}


# (name, job file text, the file it reaches); {ssh} is the operator's SSH key, {up} leads
# from the job file's directory to the operator's home.
ATTACKS = [
    ("absolute_ssh_key", 'kind = "matmul"\n[inputs]\na = "{ssh}"\nb = "b.mat"\n', "{ssh}"),
    ("dotdot_ssh_key", 'kind = "matmul"\n[inputs]\na = "{up}.ssh/id_ed25519"\n', "{ssh}"),
    ("deep_dotdot", 'kind = "wasm"\ninput = "' + "../" * 40 + 'etc/passwd"\n', "/etc/passwd"),
    ("node_identity_as_module", 'kind = "wasm"\nmodule = "{up}.p2pnode/identity.key"\n',
     "{node_key}"),
    ("symlink_out", 'kind = "wasm"\ninput = "data.bin"\n', "{ssh}"),
    ("symlinked_subdirectory", 'kind = "wasm"\ninput = "sub/id_ed25519"\n', "{ssh}"),
    ("through_a_subdirectory", 'kind = "wasm"\ninput = "sub2/../{up}.ssh/id_ed25519"\n',
     "{ssh}"),
]


@pytest.mark.parametrize(("text", "reached"), [a[1:] for a in ATTACKS],
                         ids=[a[0] for a in ATTACKS])
def test_a_job_file_cannot_reach_out_of_its_directory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], node_calls: list[str],
        victim: dict[str, Path], text: str, reached: str) -> None:
    jobs = victim["jobs"]
    home = victim["ssh"].parents[1]
    names = {"ssh": victim["ssh"], "node_key": victim["node_key"],
             "up": "../" * len(jobs.relative_to(home).parts)}
    (jobs / "b.mat").write_bytes(b"")
    (jobs / "sub2").mkdir()
    (jobs / "data.bin").symlink_to(victim["ssh"])
    (jobs / "sub").symlink_to(victim["ssh"].parent, target_is_directory=True)
    (jobs / "job.toml").write_text(text.format(**names))
    code, out, err = run_cli(capsys, "job", "submit", "--home", str(tmp_path / "node"),
                             str(jobs / "job.toml"), "--wait")
    assert code == cli.EXIT_USAGE, (out, err)
    assert node_calls == []  # refused before the node was asked
    assert out == ""
    assert str(Path(reached.format(**names)).resolve()) in err
    assert "outside the job file's directory" in err
