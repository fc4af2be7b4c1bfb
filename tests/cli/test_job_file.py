"""Job files name files in their own directory only (docs/jobs.md); no node needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from p2pnode import cli, cli_jobs
from tests.cli.test_cli import run_cli


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """The admin API calls ``job submit`` makes, answered by a fake node."""
    from p2pnode.api import client

    calls: list[tuple[str, dict[str, Any]]] = []

    def call(home: Path, cmd: str, args: dict[str, Any] | None = None,
             timeout: float = 10.0) -> Any:
        calls.append((cmd, dict(args or {})))
        return []

    monkeypatch.setattr(client, "call", call)
    return calls


def job_dir(tmp_path: Path, toml: str) -> Path:
    d = tmp_path / "jobs"
    (d / "data").mkdir(parents=True)
    (d / "job.toml").write_text(toml)
    return d


def submit(capsys: pytest.CaptureFixture[str], tmp_path: Path, job: Path,
           *flags: str) -> tuple[int, str]:
    code, _, err = run_cli(capsys, "job", "submit", "--home", str(tmp_path / "home"),
                           str(job), *flags)
    return code, err


def test_files_in_the_directory_and_below_are_accepted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        submitted: list[tuple[str, dict[str, Any]]]) -> None:
    d = job_dir(tmp_path, 'kind = "wasm"\nmodule = "data/prog.wat"\ninput = "in.bin"\n'
                          '[inputs]\nextra = "./data/../data/x.bin"\n')
    for name in ("data/prog.wat", "in.bin", "data/x.bin"):
        (d / name).write_bytes(b"x")
    (d / "link.bin").symlink_to(d / "data" / "x.bin")  # a symlink that stays inside
    code, err = submit(capsys, tmp_path, d / "job.toml")
    assert code == cli.EXIT_OK, err
    ((cmd, args),) = submitted
    assert cmd == "job.submit"
    assert args["module"] == str((d / "data/prog.wat").resolve())
    assert args["input"] == str((d / "in.bin").resolve())
    assert args["inputs"] == {"extra": str((d / "data/x.bin").resolve())}
    loaded = cli_jobs.load_job_file(str(d / "job.toml"))
    assert loaded["inputs"] == args["inputs"]
    (d / "job.toml").write_text('kind = "matmul"\n[inputs]\na = "link.bin"\n')
    assert cli_jobs.load_job_file(str(d / "job.toml"))["inputs"] == {
        "a": str((d / "data/x.bin").resolve())}


@pytest.mark.parametrize("key", ["inputs.a", "module", "input"])
@pytest.mark.parametrize("escape", ["absolute", "dotdot", "symlink"])
def test_paths_out_of_the_directory_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        submitted: list[tuple[str, dict[str, Any]]], key: str, escape: str) -> None:
    outside = tmp_path / "secret.bin"
    outside.write_bytes(b"secret")
    d = tmp_path / "jobs"
    d.mkdir()
    value = {"absolute": str(outside), "dotdot": "../secret.bin", "symlink": "link.bin"}[escape]
    if escape == "symlink":
        (d / "link.bin").symlink_to(outside)
    line = f'{key.split(".")[-1]} = "{value}"\n'
    toml = 'kind = "wasm"\n' + (f"[inputs]\n{line}" if key.startswith("inputs.") else line)
    (d / "job.toml").write_text(toml)
    code, err = submit(capsys, tmp_path, d / "job.toml")
    assert code == cli.EXIT_USAGE
    assert submitted == []  # refused before the node was asked
    assert f"{key} = {value!r}" in err and str(outside.resolve()) in err
    assert "outside the job file's directory" in err
    with pytest.raises(cli.UsageError):
        cli_jobs.load_job_file(str(d / "job.toml"))


def test_command_line_paths_may_name_any_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        submitted: list[tuple[str, dict[str, Any]]]) -> None:
    outside = tmp_path / "elsewhere" / "in.bin"
    outside.parent.mkdir()
    outside.write_bytes(b"data")
    module = outside.parent / "prog.wat"
    module.write_text("(module)")
    d = job_dir(tmp_path, 'kind = "wasm"\n')
    code, err = submit(capsys, tmp_path, d / "job.toml", "--input", str(outside),
                       "--module", str(module))
    assert code == cli.EXIT_OK, err
    ((_, args),) = submitted
    assert args["input"] == str(outside.resolve()) and args["module"] == str(module.resolve())
    # ... and without a job file at all
    code, _, err = run_cli(capsys, "job", "submit", "--home", str(tmp_path / "home"),
                           "--kind", "wasm", "--input", str(outside))
    assert code == cli.EXIT_OK, err
    assert submitted[1][1]["input"] == str(outside.resolve())


def test_example_modules_are_not_paths(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        submitted: list[tuple[str, dict[str, Any]]]) -> None:
    d = job_dir(tmp_path, 'kind = "wasm"\nmodule = "example:sum"\n')
    assert submit(capsys, tmp_path, d / "job.toml")[0] == cli.EXIT_OK
    assert submitted[0][1]["module"] == "example:sum"
    # Only `module` knows examples: elsewhere the prefix is part of a path like any other.
    (d / "job.toml").write_text('kind = "wasm"\ninput = "example:/../../../secret"\n')
    code, err = submit(capsys, tmp_path, d / "job.toml")
    assert code == cli.EXIT_USAGE and "input = 'example:/../../../secret'" in err
