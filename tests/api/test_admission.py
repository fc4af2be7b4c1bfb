"""The admin API's exposure rules (p2pnode/api/admission.py) and its private files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from p2pnode.api.admission import Admitted, ApiSlots, Refused, api_listen_refusal
from p2pnode.files import write_private_file


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "127.9.9.9:4000", "[::1]:4000",
                                    "localhost:4000"])
def test_loopback_listen_addresses_are_allowed(listen: str) -> None:
    assert api_listen_refusal(listen, allow_remote=False) is None


@pytest.mark.parametrize("listen", ["0.0.0.0:4000", "192.168.1.5:4000", "[::]:4000",
                                    "8.8.8.8:53", "node.example:4000"])
def test_other_listen_addresses_need_allow_remote(listen: str) -> None:
    refusal = api_listen_refusal(listen, allow_remote=False)
    assert refusal is not None and "allow_remote = true" in refusal
    assert api_listen_refusal(listen, allow_remote=True) is None


@pytest.mark.parametrize("listen", ["4000", ":4000", "127.0.0.1:", "127.0.0.1:http",
                                    "127.0.0.1:70000"])
def test_malformed_listen_addresses_are_refused(listen: str) -> None:
    refusal = api_listen_refusal(listen, allow_remote=True)
    assert refusal is not None and "not host:port" in refusal


def test_a_full_table_evicts_the_oldest_connection_without_the_token() -> None:
    slots = ApiSlots(3)
    assert [slots.open(i) for i in range(3)] == [Admitted(), Admitted(), Admitted()]
    slots.authenticated(0)
    assert slots.open(3) == Admitted(evicted=1)  # 0 showed the token; 1 is the oldest other
    assert slots.open(4) == Admitted(evicted=2)
    assert len(slots) == 3


def test_only_token_holders_can_fill_every_slot() -> None:
    slots = ApiSlots(2)
    for i in range(2):
        slots.open(i)
        slots.authenticated(i)
    assert slots.open(2) == Refused()
    slots.close(0)
    assert slots.open(3) == Admitted()
    slots.authenticated(99)  # unknown connections are ignored
    assert len(slots) == 2


def test_private_file_is_0600_and_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "api.json"
    old = os.umask(0)
    try:
        write_private_file(path, b"one")
        write_private_file(path, b"two")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api.json"]


def test_a_symlink_planted_at_the_temp_path_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "api.json.tmp").symlink_to(victim)
    write_private_file(tmp_path / "api.json", b"secret")
    assert victim.read_bytes() == b"precious"
    assert (tmp_path / "api.json").read_bytes() == b"secret"
    assert not (tmp_path / "api.json").is_symlink()
    assert not (tmp_path / "api.json.tmp").exists()


def test_a_symlink_planted_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    victim.chmod(0o644)
    (tmp_path / "api.json").symlink_to(victim)
    write_private_file(tmp_path / "api.json", b"secret")
    assert victim.read_bytes() == b"precious"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    target = tmp_path / "api.json"
    assert not target.is_symlink() and target.read_bytes() == b"secret"
    assert stat.S_IMODE(target.lstat().st_mode) == 0o600


def test_p2pnode_run_refuses_a_remote_api_address_unless_allowed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from p2pnode import cli

    home = tmp_path / "home"
    assert cli.main(["init", "--home", str(home), "--listen", "/ip4/127.0.0.1/tcp/0"]) == 0
    capsys.readouterr()
    code = cli.main(["run", "--home", str(home), "--api", "0.0.0.0:0"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_ERROR
    assert "is not a loopback address" in err and "allow_remote = true" in err


@pytest.mark.parametrize("toml", ['[node]\nprivate_addrs = "maybe"\n',
                                  "[api]\nmax_connections = 0\n",
                                  "[api]\nidle_timeout_s = 0\n"])
def test_config_refuses_bad_limits(tmp_path: Path, toml: str) -> None:
    from p2pnode.config import ConfigError, load_config

    (tmp_path / "config.toml").write_text(toml)
    with pytest.raises(ConfigError):
        load_config(tmp_path / "config.toml")


def test_config_reads_the_new_keys(tmp_path: Path) -> None:
    from p2pnode.config import load_config

    (tmp_path / "config.toml").write_text(
        '[node]\nprivate_addrs = "deny"\n[api]\nallow_remote = true\nmax_connections = 4\n'
        "idle_timeout_s = 2\n")
    cfg = load_config(tmp_path / "config.toml")
    assert (cfg.net_private_addrs, cfg.api_allow_remote, cfg.api_max_connections,
            cfg.api_idle_timeout_s) == ("deny", True, 4, 2.0)
