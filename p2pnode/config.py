"""Node configuration: ``config.toml`` in the node home, every key documented in the template.

Precedence: command-line flags > ``config.toml`` > the defaults below.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from p2pnode.peers import BAN_S, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP

DEFAULT_HOME = Path("~/.p2pnode")
KEY_FILE = "node.key"
CONFIG_FILE = "config.toml"
STATE_DB = "state.db"
LEDGER_DB = "ledger.db"
API_FILE = "api.json"
LOG_FILE = "node.log"


def resolve_home(arg: str | None) -> Path:
    raw = arg or os.environ.get("P2PNODE_HOME") or str(DEFAULT_HOME)
    return Path(raw).expanduser().resolve()


@dataclass(frozen=True)
class Config:
    network: str = "devnet"
    listen: tuple[str, ...] = ("/ip4/0.0.0.0/tcp/4001",)
    bootstrap: tuple[str, ...] = ()
    bootstrap_retry_max_s: float = 30.0
    net_private_addrs: str = "auto"
    caps_interval_s: float = 60.0
    caps_ttl_s: int = 180
    caps_probe_gpus: bool = True
    caps_kinds: tuple[str, ...] = ("matmul", "wasm")
    caps_price: dict[str, int] = field(default_factory=lambda: {"matmul": 1000, "wasm": 1000})
    caps_challenge_interval_s: float = 30.0
    jobs_concurrency: int = 2
    jobs_device: str = "auto"
    jobs_discovery_interval_s: float = 5.0
    jobs_offer: bool = True
    jobs_lease_s: int = 30
    jobs_deadline_s: int = 600
    jobs_max_price: int = 10_000
    jobs_max_blob_bytes: int = 64 << 20
    jobs_wall_time_s: float = 300.0
    jobs_wasm_fuel: int = 10_000_000_000
    jobs_wasm_memory_bytes: int = 256 << 20
    jobs_matmul_max_n: int = 2048
    jobs_retention_s: int = 86_400
    jobs_cheat: tuple[str, ...] = ()
    jobs_bar_s: int = 3600
    ledger_epoch_len_s: int = 3600
    ledger_grace_s: int = 30
    ledger_sync_interval_s: float = 10.0
    chain_backend: str = "none"
    chain_devchain_path: str = ""
    chain_fallback_s: int = 60
    chain_rpc_url: str = ""
    chain_contract: str = ""
    chain_payout_key: str = ""
    blobs_quota_bytes: int = 4 << 30
    blobs_retention_s: int = 86_400
    api_listen: str = "127.0.0.1:0"
    api_allow_remote: bool = False
    api_max_connections: int = 32
    api_idle_timeout_s: float = 10.0
    metrics_listen: str = "127.0.0.1:9464"
    peers_max_connections: int = MAX_CONNECTIONS
    peers_max_connections_per_ip: int = MAX_CONNECTIONS_PER_IP
    peers_limit_loopback: bool = False
    peers_ban_s: float = BAN_S
    log_level: str = "info"

    def with_overrides(self, **kw: Any) -> Config:
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


# (toml section, toml key) -> Config field
# The ways a testnet's cheating worker can cheat (p2pnode.proofs.cheat).
CHEAT_MODES = ("row", "entry", "commit", "zero", "segment")

_KEYS: dict[tuple[str, str], str] = {
    ("node", "network"): "network",
    ("node", "listen"): "listen",
    ("node", "bootstrap"): "bootstrap",
    ("node", "bootstrap_retry_max_s"): "bootstrap_retry_max_s",
    ("node", "private_addrs"): "net_private_addrs",
    ("caps", "interval_s"): "caps_interval_s",
    ("caps", "ttl_s"): "caps_ttl_s",
    ("caps", "probe_gpus"): "caps_probe_gpus",
    ("caps", "kinds"): "caps_kinds",
    ("caps", "price"): "caps_price",
    ("caps", "challenge_interval_s"): "caps_challenge_interval_s",
    ("jobs", "concurrency"): "jobs_concurrency",
    ("jobs", "device"): "jobs_device",
    ("jobs", "discovery_interval_s"): "jobs_discovery_interval_s",
    ("jobs", "offer"): "jobs_offer",
    ("jobs", "lease_s"): "jobs_lease_s",
    ("jobs", "deadline_s"): "jobs_deadline_s",
    ("jobs", "max_price"): "jobs_max_price",
    ("jobs", "max_blob_bytes"): "jobs_max_blob_bytes",
    ("jobs", "wall_time_s"): "jobs_wall_time_s",
    ("jobs", "wasm_fuel"): "jobs_wasm_fuel",
    ("jobs", "wasm_memory_bytes"): "jobs_wasm_memory_bytes",
    ("jobs", "matmul_max_n"): "jobs_matmul_max_n",
    ("jobs", "retention_s"): "jobs_retention_s",
    ("jobs", "cheat"): "jobs_cheat",
    ("jobs", "bar_s"): "jobs_bar_s",
    ("ledger", "epoch_len_s"): "ledger_epoch_len_s",
    ("ledger", "grace_s"): "ledger_grace_s",
    ("ledger", "sync_interval_s"): "ledger_sync_interval_s",
    ("chain", "backend"): "chain_backend",
    ("chain", "devchain_path"): "chain_devchain_path",
    ("chain", "fallback_s"): "chain_fallback_s",
    ("chain", "rpc_url"): "chain_rpc_url",
    ("chain", "contract"): "chain_contract",
    ("chain", "payout_key"): "chain_payout_key",
    ("blobs", "quota_bytes"): "blobs_quota_bytes",
    ("blobs", "retention_s"): "blobs_retention_s",
    ("api", "listen"): "api_listen",
    ("api", "allow_remote"): "api_allow_remote",
    ("api", "max_connections"): "api_max_connections",
    ("api", "idle_timeout_s"): "api_idle_timeout_s",
    ("metrics", "listen"): "metrics_listen",
    ("peers", "max_connections"): "peers_max_connections",
    ("peers", "max_connections_per_ip"): "peers_max_connections_per_ip",
    ("peers", "limit_loopback"): "peers_limit_loopback",
    ("peers", "ban_s"): "peers_ban_s",
    ("log", "level"): "log_level",
}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple | list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return repr(v)


def render_template(cfg: Config) -> str:
    """The commented ``config.toml`` that ``p2pnode init`` writes."""
    v = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    t = _toml_value
    return f"""\
# p2pnode node configuration. Every key is shown with its value; flags override them.

[node]
# Network id: names every topic and protocol (/p2pnode/<network>/...). Nodes of different
# networks ignore each other.
network = {t(v["network"])}
# libp2p listen multiaddrs (TCP).
listen = {t(v["listen"])}
# Peers to dial at start, as /ip4/.../tcp/.../p2p/<peer-id> multiaddrs. Retried with
# exponential backoff up to bootstrap_retry_max_s between tries while none is connected.
bootstrap = {t(v["bootstrap"])}
bootstrap_retry_max_s = {t(v["bootstrap_retry_max_s"])}
# Dial loopback, private and link-local addresses taken from other nodes' ads (spec 03,
# ADDR-6): "allow", "deny", or "auto" (allow when this node's own listen or bootstrap
# addresses are such addresses and no bootstrap address is public).
private_addrs = {t(v["net_private_addrs"])}

[caps]
# Seconds between capability ads (each jittered by +-10%); an ad is also sent on change.
interval_s = {t(v["caps_interval_s"])}
# Seconds an ad stays valid in other nodes' tables (10..86400). Keep it > 2 * interval_s.
ttl_s = {t(v["caps_ttl_s"])}
# Probe NVIDIA GPUs through NVML. Without a driver the node advertises CPU only.
probe_gpus = {t(v["caps_probe_gpus"])}
# Job kinds this node runs.
kinds = {t(v["caps_kinds"])}
# Price per job unit, integer micro-units, by kind.
price = {t(v["caps_price"])}
# Seconds between challenges of peers' advertised capabilities (a small matmul job sized
# to what each peer's ad claims, checked by Freivalds; spec 06 §6). 0 turns them off.
challenge_interval_s = {t(v["caps_challenge_interval_s"])}

[jobs]
# As a worker: how many jobs run at once (never more), and where matmul runs:
# "auto" (a GPU when CuPy or PyTorch with CUDA is importable), "cpu" or "gpu".
# The kinds this node runs and its prices are [caps] kinds and price.
concurrency = {t(v["jobs_concurrency"])}
device = {t(v["jobs_device"])}
# Seconds between DHT lookups for open jobs while a slot is free.
discovery_interval_s = {t(v["jobs_discovery_interval_s"])}
# As a requester: also offer jobs directly to matching workers from the capability table.
offer = {t(v["jobs_offer"])}
# Defaults of submitted jobs: lease length (renewed by heartbeats), deadline, max price.
lease_s = {t(v["jobs_lease_s"])}
deadline_s = {t(v["jobs_deadline_s"])}
max_price = {t(v["jobs_max_price"])}
# Hard limits of execution, whatever a job asks for.
max_blob_bytes = {t(v["jobs_max_blob_bytes"])}
wall_time_s = {t(v["jobs_wall_time_s"])}
wasm_fuel = {t(v["jobs_wasm_fuel"])}
wasm_memory_bytes = {t(v["jobs_wasm_memory_bytes"])}
matmul_max_n = {t(v["jobs_matmul_max_n"])}
# Seconds a finished job stays in memory and in state.db (then only its blobs' retention
# and the ledger remember it). Open jobs are never forgotten.
retention_s = {t(v["jobs_retention_s"])}
# Seconds a worker proven to cheat (a valid fraud proof, spec 06 FRD-7) gets no lease from
# this node, from its wrong result's time; at most 3600, the time fraud proofs live.
bar_s = {t(v["jobs_bar_s"])}
# Testing only: return wrong matmul results, these modes in rotation ("row", "entry",
# "commit", "zero"), to watch verification catch them. Empty for every real node.
cheat = {t(v["jobs_cheat"])}

[ledger]
# Reward epochs (spec 07): every node of a network must use the same two values, or their
# roots differ. An epoch lasts epoch_len_s seconds (from the Unix epoch) and closes grace_s
# seconds after its end; a receipt that arrives later settles in the next open epoch.
epoch_len_s = {t(v["ledger_epoch_len_s"])}
grace_s = {t(v["ledger_grace_s"])}
# Seconds between reconciliations (/sync/1) with a random peer; one also runs with every
# peer that appears.
sync_interval_s = {t(v["ledger_sync_interval_s"])}

[chain]
# Where epoch roots are anchored (spec 08, draft): "none"; "devchain", an embedded chain
# in one SQLite file for networks on one machine (devchain_path; empty: chain.db in the
# node home, made with this node as its only anchorer); or "evm", the RewardAnchor contract
# at contract on the JSON-RPC node at rpc_url, sent from the node's payout key (payout.key
# in the node home, made on first use; it pays the gas). fallback_s: how long each
# fallback anchorer waits after the one before it (devchain; the contract has its own).
backend = {t(v["chain_backend"])}
devchain_path = {t(v["chain_devchain_path"])}
fallback_s = {t(v["chain_fallback_s"])}
rpc_url = {t(v["chain_rpc_url"])}
contract = {t(v["chain_contract"])}
# The file of the node's secp256k1 payout key (32 bytes, hex; made on first use, mode
# 0600). Empty: payout.key in the node home.
payout_key = {t(v["chain_payout_key"])}

[blobs]
# The blob store (inputs and outputs of jobs) holds at most quota_bytes. Blobs an open job
# needs are kept; others go retention_s after their last use, and least recently used
# first when a new blob would not fit. A blob that cannot fit even then is refused.
quota_bytes = {t(v["blobs_quota_bytes"])}
retention_s = {t(v["blobs_retention_s"])}

[api]
# Admin API (used by the p2pnode CLI): host:port on loopback; port 0 picks a free one and
# writes it to api.json in the node home, with an access token (mode 0600).
listen = {t(v["api_listen"])}
# An address outside loopback is refused unless allow_remote = true: the API is plain TCP,
# so its token would cross the network in clear.
allow_remote = {t(v["api_allow_remote"])}
# Connections open at once; when full, a new one pushes out the oldest that has not yet
# shown the token. A connection that sends no complete request for idle_timeout_s seconds
# is closed (both apply before the token is checked).
max_connections = {t(v["api_max_connections"])}
idle_timeout_s = {t(v["api_idle_timeout_s"])}

[metrics]
# Prometheus metrics as text at http://<listen>/metrics. Empty string disables.
listen = {t(v["metrics_listen"])}

[peers]
# Connections kept (spec 03 §5.5): above max_connections the least valued peers that are
# not protected (bootstrap peers, lease counterparts) are disconnected; at most
# max_connections_per_ip peers per remote IP, loopback exempt unless limit_loopback.
max_connections = {t(v["peers_max_connections"])}
max_connections_per_ip = {t(v["peers_max_connections_per_ip"])}
limit_loopback = {t(v["peers_limit_loopback"])}
# Seconds a misbehaving peer (graylisted, or too many rejected messages) is refused.
ban_s = {t(v["peers_ban_s"])}

[log]
# debug, info, warning or error. Logs are one JSON object per line.
level = {t(v["log_level"])}
"""


class ConfigError(ValueError):
    pass


def load_config(path: Path) -> Config:
    """Read ``config.toml``; unknown keys are an error, so typos do not pass silently."""
    if not path.exists():
        return Config()
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from e
    kw: dict[str, Any] = {}
    defaults = Config()
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: top-level key {section!r} is not a [section]")
        for key, value in table.items():
            name = _KEYS.get((section, key))
            if name is None:
                raise ConfigError(f"{path}: unknown key [{section}] {key}")
            default = getattr(defaults, name)
            if isinstance(default, tuple):
                if not isinstance(value, list):
                    raise ConfigError(f"{path}: [{section}] {key} must be a list")
                value = tuple(value)
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ConfigError(f"{path}: [{section}] {key} must be true or false")
            elif isinstance(default, float):
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise ConfigError(f"{path}: [{section}] {key} must be a number")
                value = float(value)
            elif not isinstance(value, type(default)):
                raise ConfigError(f"{path}: [{section}] {key} must be {type(default).__name__}")
            kw[name] = value
    cfg = replace(defaults, **kw)
    if cfg.net_private_addrs not in ("auto", "allow", "deny"):
        raise ConfigError(f"{path}: [node] private_addrs must be auto, allow or deny")
    if cfg.api_max_connections < 1 or cfg.api_idle_timeout_s <= 0:
        raise ConfigError(f"{path}: [api] max_connections and idle_timeout_s must be positive")
    if not 10 <= cfg.caps_ttl_s <= 86_400:
        raise ConfigError(f"{path}: [caps] ttl_s must be in 10..86400")
    if cfg.peers_max_connections < 1 or cfg.peers_max_connections_per_ip < 1:
        raise ConfigError(f"{path}: [peers] max_connections and max_connections_per_ip "
                          "must be at least 1")
    if cfg.peers_ban_s < 0:
        raise ConfigError(f"{path}: [peers] ban_s must not be negative")
    if not 0 <= cfg.jobs_bar_s <= 3600:
        raise ConfigError(f"{path}: [jobs] bar_s must be in 0..3600")
    if set(cfg.jobs_cheat) - set(CHEAT_MODES):
        raise ConfigError(f"{path}: [jobs] cheat takes {', '.join(CHEAT_MODES)}")
    if not 1 <= cfg.ledger_epoch_len_s <= 7 * 86_400 or \
            not 0 <= cfg.ledger_grace_s < cfg.ledger_epoch_len_s:
        raise ConfigError(f"{path}: [ledger] epoch_len_s must be in 1..604800 and grace_s in "
                          "0..epoch_len_s-1")
    if cfg.chain_backend not in ("none", "devchain", "evm"):
        raise ConfigError(f"{path}: [chain] backend must be none, devchain or evm")
    if cfg.chain_backend == "evm" and not (cfg.chain_rpc_url and cfg.chain_contract):
        raise ConfigError(f"{path}: [chain] backend evm needs rpc_url and contract")
    if cfg.chain_fallback_s < 1:
        raise ConfigError(f"{path}: [chain] fallback_s must be at least 1")
    if cfg.ledger_sync_interval_s <= 0:
        raise ConfigError(f"{path}: [ledger] sync_interval_s must be positive")
    if cfg.blobs_quota_bytes < cfg.jobs_max_blob_bytes:
        raise ConfigError(f"{path}: [blobs] quota_bytes must be at least [jobs] max_blob_bytes")
    return cfg
