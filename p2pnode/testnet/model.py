"""What the testnet launcher knows of a network and of each node it runs."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A testnet's nodes share one machine: every ad costs every node a validation and its
# mesh peers' copies. At 50 nodes on 2 cores, 5 ads a second in all (10 s) and 2 (25 s)
# kept the best-connected nodes so far behind that ads reached them older than their 30 s
# skew window, and the network did not converge; at 1 (50 s) it converged 6.6 s after the
# last node served. The default keeps the whole network at one ad a second or fewer; a
# joining node does not wait for the interval (the held-ads exchange, spec 02 §7).
MIN_CAPS_INTERVAL_S = 10.0
CAPS_INTERVAL_PER_NODE_S = 1.0


def default_caps_interval(n: int) -> float:
    return max(MIN_CAPS_INTERVAL_S, CAPS_INTERVAL_PER_NODE_S * n)


@dataclass
class TestnetOptions:
    n: int = 5
    duration: float | None = None
    base_port: int = 0
    directory: Path | None = None
    network: str = "testnet"
    json_out: bool = False
    caps_interval: float | None = None
    """Seconds between each node's ads (None: ``default_caps_interval(n)``)."""
    jobs: int = 0
    requesters: int = 1
    job_n: int = 64
    job_kind: str = "matmul"
    cheaters: int = 0
    """Workers that return wrong results (the last nodes; never a requester)."""
    start_concurrency: int = 0
    """Nodes starting at once (0: ``default_start_concurrency()``)."""
    epoch_len: int = 60
    chain: str = "none"
    """Where the nodes anchor their roots: "none" or "devchain" (one file for all)."""
    """Seconds per ledger epoch (spec 07), the grace period a quarter of it (at most 30)."""

    @property
    def interval_s(self) -> float:
        return default_caps_interval(self.n) if self.caps_interval is None else self.caps_interval


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
