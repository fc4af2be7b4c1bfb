"""Example wasm job modules, shipped as WebAssembly text (package data).

``sum``, ``reverse``: small correct jobs; ``spin``, ``grow``, ``trap``: jobs that end in the
fuel or wall-time limit, the memory limit and a trap. Used by tests, the testnet's load
generator and the docs; each follows the ABI of :mod:`p2pnode.jobs.executors.wasm`,
except ``step_lcg``, a step module (spec 06 WSM-2, :mod:`p2pnode.proofs.wasm_step`).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Final

from p2pnode.jobs.executors.wasm import compile_wat

EXAMPLES: Final = ("grow", "reverse", "spin", "step_lcg", "sum", "trap")


def example_source(name: str) -> str:
    """The WebAssembly text of example ``name``."""
    if name not in EXAMPLES:
        raise KeyError(f"no wasm example {name!r}; known: {EXAMPLES}")
    return resources.files(__name__).joinpath(f"{name}.wat").read_text(encoding="utf-8")


@functools.cache
def example_module(name: str) -> bytes:
    """Example ``name`` compiled to a binary module, as a job's ``module`` input carries it."""
    return compile_wat(example_source(name))
