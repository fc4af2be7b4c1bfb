"""What the testnet launcher knows of a network and of each node it runs."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TestnetOptions:
    n: int = 5
    duration: float | None = None
    base_port: int = 0
    directory: Path | None = None
    network: str = "testnet"
    json_out: bool = False
    caps_interval: float = 10.0
    jobs: int = 0
    requesters: int = 1
    job_n: int = 64
    job_kind: str = "matmul"
    start_concurrency: int = 0
    """Nodes starting at once (0: ``default_start_concurrency()``)."""


@dataclass(frozen=True)
class NodePorts:
    listen: int
    api: int
    metrics: int


@dataclass
class NodeProc:
    index: int
    home: Path
    peer_id: str
    ports: NodePorts
    proc: subprocess.Popen[bytes] | None = None
    status: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    spawned_at: float | None = None  # monotonic
    start_s: float | None = None
    """Seconds from spawning the process to a serving admin API."""
