"""Real nodes on 127.0.0.1 for integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from p2pnode.caps.probe import Hardware
from p2pnode.config import Config
from p2pnode.identity import Identity
from p2pnode.node import Node

HW = Hardware(cores=2, threads=4, arch="x86_64", mem=8 << 30, gpus=(), gpu_note="test")


def node_config(**kw: object) -> Config:
    # No capability challenges unless a test asks: they are jobs of their own.
    base = Config(network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), metrics_listen="",
                  caps_interval_s=30.0, caps_ttl_s=120, caps_challenge_interval_s=0.0)
    return base.with_overrides(**kw)


async def start_node(nursery: trio.Nursery, tmp: Path, nodes: list[Node], *,
                     node_kw: dict[str, Any] | None = None, **cfg: object) -> Node:
    """Start one more node in ``nursery`` (home ``tmp/node<i>``), bootstrapping from the
    first of ``nodes``, and append it there."""
    home = tmp / f"node{len(nodes)}"
    home.mkdir(parents=True, exist_ok=True)
    boot = ()
    if nodes:
        first = nodes[0]
        boot = (f"{first.stack.listen_addrs()[0].split('/p2p/')[0]}/p2p/{first.peer_id}",)
    node = Node(home, node_config(bootstrap=boot, **cfg), Identity.generate(), hardware=HW,
                **(node_kw or {}))
    await nursery.start(node.run)
    nodes.append(node)
    return node


@asynccontextmanager
async def running_nodes(tmp: Path, n: int, *, node_kw: dict[str, Any] | None = None,
                        **cfg: object) -> AsyncIterator[list[Node]]:
    """Start ``n`` nodes (``Node(..., **node_kw)``, config fields ``cfg``); every node after
    the first bootstraps from the first."""
    async with trio.open_nursery() as nursery:
        nodes: list[Node] = []
        for _ in range(n):
            await start_node(nursery, tmp, nodes, node_kw=node_kw, **cfg)
        try:
            yield nodes
        finally:
            nursery.cancel_scope.cancel()


async def wait_for(cond: Callable[[], bool], timeout: float = 20.0, step: float = 0.1) -> None:
    """Poll ``cond`` until it holds; fail the test after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while not cond():
            await trio.sleep(step)


async def run_in_own_scope(node: Node, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Run ``node`` under a cancel scope of its own, handed back through ``nursery.start``:
    cancelling it stops this node alone, leaving its state on disk as a crash would."""
    async with trio.open_nursery() as n:
        await n.start(node.run)
        task_status.started(n.cancel_scope)


# A deterministic busy loop for jobs that must still be running when a test acts: runs
# 1000 times the little-endian u32 in its input, then returns the 8-byte counter.
LOOP_WAT = """
(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "run") (param $p i32) (param $n i32) (result i64)
    (local $i i64) (local $end i64)
    (local.set $end (i64.mul (i64.extend_i32_u (i32.load (local.get $p))) (i64.const 1000)))
    (block $done
      (loop $l
        (br_if $done (i64.ge_u (local.get $i) (local.get $end)))
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (br $l)))
    (i64.store (i32.const 2048) (local.get $i))
    (i64.or (i64.shl (i64.const 2048) (i64.const 32)) (i64.const 8))))
"""
