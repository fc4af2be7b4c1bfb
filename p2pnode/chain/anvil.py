"""A real Ethereum JSON-RPC node for the tests and the testnet: anvil (Foundry), installed
from npm (``@foundry-rs/anvil``, a native binary in a platform package) into ``.anvil/``
of the repository by ``scripts/install.sh`` or :func:`install_anvil`.

    find_anvil()        the binary: $P2PNODE_ANVIL, then .anvil/ of the repository, then PATH
    Anvil(...)          a context manager: one anvil process on 127.0.0.1 (a free port unless
                        given), its ``url``, ``chain_id``, ``accounts()`` (the funded and
                        unlocked dev accounts) and ``w3()``; stopped on exit
    set_next_block_time(w3, t), mine(w3)
                        anvil's clock: the next block's time, and a block now

Anvil mines a block per transaction unless ``block_time`` is given (then one every
``block_time`` seconds). Its clock runs with the wall clock from the genesis time
(``timestamp``, default now) or from the time last set for a block; the pending block, on
which ``EvmChain`` checks a transaction first, has the time set for the next one. Its log
goes to a file (``log``, else a temporary one removed on stop), never to our output.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.types import RPCEndpoint

ANVIL_VERSION = "1.7.1"
PACKAGE = "@foundry-rs/anvil"
ENV = "P2PNODE_ANVIL"
ROOT = Path(__file__).resolve().parents[2]  # the repository (the package is editable)
_LOCAL = Path(".anvil") / "node_modules" / ".bin" / "anvil"
_LISTENING = re.compile(rb"Listening on (\S+):(\d+)")
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def _executable(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


def find_anvil() -> Path | None:
    """The anvil binary: ``$P2PNODE_ANVIL`` (a path; skipped when it names no executable
    file), then ``.anvil/node_modules/.bin/anvil`` of the repository, then ``anvil`` on
    PATH; None when there is none."""
    env = os.environ.get(ENV)
    if env and _executable(Path(env)):
        return Path(env)
    if _executable(ROOT / _LOCAL):
        return ROOT / _LOCAL
    found = shutil.which("anvil")
    return Path(found) if found else None


def native_binary(path: Path) -> Path:
    """The native binary behind npm's node wrapper ``bin.mjs`` (so that stopping it stops
    the node itself), or ``path`` when it is no such wrapper."""
    real = path.resolve()
    if real.name != "bin.mjs":
        return path
    arch = _ARCH.get(platform.machine().lower())
    exe = "anvil.exe" if sys.platform == "win32" else "anvil"
    scope = real.parent.parent  # node_modules/@foundry-rs
    candidates = [scope / f"anvil-{sys.platform}-{arch}" / "bin" / exe] if arch else []
    for candidate in [*candidates, scope / "dist" / exe]:
        if _executable(candidate):
            return candidate
    return path


def _installed_version(prefix: Path) -> str | None:
    try:
        meta = json.loads((prefix / "node_modules" / PACKAGE / "package.json")
                          .read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = meta.get("version") if isinstance(meta, dict) else None
    return version if isinstance(version, str) else None


def install_anvil(root: Path, *, timeout_s: float = 600.0) -> Path:
    """Install ``@foundry-rs/anvil@ANVIL_VERSION`` into ``root/.anvil`` with npm, quietly,
    unless that version is there already; the binary (``root/.anvil/node_modules/.bin/
    anvil``). RuntimeError when npm is missing, fails, or leaves no binary."""
    prefix = root / ".anvil"
    binary = root / _LOCAL
    if _executable(binary) and _installed_version(prefix) == ANVIL_VERSION:
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"cannot install {PACKAGE}@{ANVIL_VERSION}: npm is not on PATH")
    cmd = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent",
           f"{PACKAGE}@{ANVIL_VERSION}"]
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"npm install {PACKAGE}@{ANVIL_VERSION} into {prefix} failed: "
                           f"{exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-2000:]
        raise RuntimeError(f"npm install {PACKAGE}@{ANVIL_VERSION} into {prefix} failed "
                           f"(exit {done.returncode}): {tail}")
    if not _executable(binary):
        raise RuntimeError(f"npm install {PACKAGE}@{ANVIL_VERSION} left no {binary}")
    return binary


def _rpc(url: str, method: str, params: list[object], timeout_s: float) -> object:
    """One JSON-RPC request straight to ``url`` (no proxy); its result."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    req = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=timeout_s) as resp:
        reply = json.loads(resp.read())
    if not isinstance(reply, dict) or "result" not in reply:
        raise RuntimeError(f"{method}: {reply!r}")
    return reply["result"]


class Anvil:
    """One anvil process on 127.0.0.1, started by ``start()`` or ``with``: on ``port`` (a
    free one when None), automine unless ``block_time`` (s) is given, genesis at
    ``timestamp`` (s; now when None), ``accounts`` dev accounts. ``stop()`` (or leaving
    ``with``) terminates it, then kills it after ``stop_s``, and reaps it."""

    def __init__(self, port: int | None = None, block_time: float | None = None, *,
                 timestamp: int | None = None, accounts: int = 10, binary: Path | None = None,
                 log: Path | None = None, startup_s: float = 20.0,
                 stop_s: float = 5.0) -> None:
        self.port = port
        self.block_time = block_time
        self.timestamp = timestamp
        self.n_accounts = accounts
        self.binary = binary
        self.log = log
        self.startup_s = startup_s
        self.stop_s = stop_s
        self.url = ""
        self.chain_id = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def args(self, binary: Path) -> list[str]:
        args = [str(binary), "--host", "127.0.0.1", "--port", str(self.port or 0),
                "--accounts", str(self.n_accounts), "--color", "never"]
        if self.block_time is not None:
            args += ["--block-time", f"{self.block_time:g}"]
        if self.timestamp is not None:
            args += ["--timestamp", str(int(self.timestamp))]
        return args

    def start(self) -> Anvil:
        if self.proc is not None:
            raise RuntimeError("anvil is running already")
        found = self.binary or find_anvil()
        if found is None:
            raise RuntimeError(f"no anvil binary: set ${ENV}, run scripts/install.sh, or put "
                               "anvil on PATH")
        if self.log is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="anvil-")
            log = Path(self._tmp.name) / "anvil.log"
        else:
            log = self.log
        self._log_file = log.open("wb")
        try:
            self.proc = subprocess.Popen(self.args(native_binary(found)),
                                         stdin=subprocess.DEVNULL, stdout=self._log_file,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            self._wait_ready(log)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, log: Path) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_s
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"anvil exited ({self.proc.returncode}) at start: "
                                   f"{self._tail(log)}")
            if not self.url:
                m = _LISTENING.search(log.read_bytes())
                if m is not None:
                    self.url = f"http://{m.group(1).decode()}:{int(m.group(2))}"
            if self.url:
                try:
                    self.chain_id = int(str(_rpc(self.url, "eth_chainId", [], 1.0)), 16)
                    return
                except (OSError, urllib.error.URLError, ValueError, RuntimeError) as exc:
                    last = exc
            time.sleep(0.05)
        raise RuntimeError(f"anvil did not answer within {self.startup_s:g} s "
                           f"({self.url or 'no address in its log'}; {last}): "
                           f"{self._tail(log)}")

    @staticmethod
    def _tail(log: Path) -> str:
        try:
            return log.read_bytes()[-1500:].decode("utf-8", "replace").strip()
        except OSError:
            return ""

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            os.killpg(proc.pid, sig)  # its own session: a node wrapper and its child too
        except (ProcessLookupError, PermissionError):
            pass
        except AttributeError:  # no process groups (Windows)
            proc.send_signal(sig)

    def stop(self) -> None:
        """Stop anvil (terminate, then kill after ``stop_s``) and reap it; idempotent."""
        proc = self.proc
        try:
            if proc is not None and proc.poll() is None:
                self._signal(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=self.stop_s)
                except subprocess.TimeoutExpired:
                    self._signal(proc, signal.SIGKILL)
                    proc.wait(timeout=self.stop_s)
        finally:
            self.proc = None
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def w3(self, timeout_s: float = 30.0) -> Web3:
        """A new connection to this anvil."""
        if not self.url:
            raise RuntimeError("anvil is not started")
        return Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": timeout_s}))

    def accounts(self) -> list[ChecksumAddress]:
        """The dev accounts (funded, unlocked), checksummed, in anvil's order."""
        if not self.url:
            raise RuntimeError("anvil is not started")
        result = _rpc(self.url, "eth_accounts", [], 10.0)
        if not isinstance(result, list):
            raise RuntimeError(f"eth_accounts: {result!r}")
        return [Web3.to_checksum_address(str(a)) for a in result]

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _request(w3: Web3, method: str, params: list[object]) -> object:
    reply = w3.provider.make_request(RPCEndpoint(method), params)
    if "error" in reply:
        raise RuntimeError(f"{method}{params}: {reply['error']}")
    return reply.get("result")


def set_next_block_time(w3: Web3, t: int) -> None:
    """Make the next block's time ``t`` (s); anvil refuses a time before the newest
    block's (RuntimeError)."""
    _request(w3, "evm_setNextBlockTimestamp", [int(t)])


def mine(w3: Web3) -> None:
    """Mine one block now (with the pending transactions, if any)."""
    _request(w3, "evm_mine", [])
