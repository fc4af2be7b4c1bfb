"""Job executors by kind (spec 04 §7): ``matmul`` and ``wasm``.

The node shell looks an executor up once per kind and calls ``run``, in a child process it
can kill (:mod:`p2pnode.services.execution`)::

    executor = get_executor("matmul", device="auto")
    result = executor.run({"a": blob_a, "b": blob_b}, {}, limits)   # or raises ExecError

Each kind's module is imported only when first used (numpy for ``matmul``, wasmtime for
``wasm``), so that a child process running one job loads only what that job needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from p2pnode.jobs.executors.base import (
    DEFAULT_LIMITS,
    DEVICES,
    ExecError,
    ExecResult,
    Executor,
    Limits,
)

if TYPE_CHECKING:
    from p2pnode.jobs.executors.matmul import MatmulExecutor, detect_gpu
    from p2pnode.jobs.executors.wasm import WasmExecutor, compile_wat

KINDS: Final = ("matmul", "wasm")

# The environment executor processes get (set before numpy loads its BLAS). OpenBLAS's
# threads spin for up to a few hundred ms after each call by default: an idle executor
# burnt 0.1 s of CPU after each n = 1024 product, taken from the node's networking on the
# same cores and from the worker's row commitment (30 -> 20 ms at n = 2048). With 2^4
# cycles they sleep at once; a product waits for its threads once, at its start.
BLAS_ENV: Final = {"OPENBLAS_THREAD_TIMEOUT": "4"}

# Names this package re-exports from a kind's module, imported on first access.
_LAZY: Final = {
    "MatmulExecutor": "matmul",
    "detect_gpu": "matmul",
    "WasmExecutor": "wasm",
    "compile_wat": "wasm",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def available_kinds() -> tuple[str, ...]:
    """The job kinds this node can execute (both need only the CPU)."""
    return KINDS


def check_lookup(kind: str, device: str) -> None:
    """Refuse what :func:`get_executor` refuses without importing a kind's module (the
    GPU's presence aside): ``ValueError`` for an unknown kind or device, or wasm on a GPU."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}; known: {KINDS}")
    if kind == "wasm" and device == "gpu":
        raise ValueError("wasm runs on the CPU only")


def get_executor(kind: str, device: str = "auto") -> Executor:
    """A fresh executor for ``kind``.

    ``device`` is ``"auto"``, ``"cpu"`` or ``"gpu"``; only ``matmul`` runs on a GPU.
    Raises ``ValueError`` for an unknown kind or device, or ``"gpu"`` with no GPU present.
    """
    check_lookup(kind, device)
    if kind == "matmul":
        from p2pnode.jobs.executors.matmul import MatmulExecutor

        return MatmulExecutor(device)
    from p2pnode.jobs.executors.wasm import WasmExecutor

    return WasmExecutor()


__all__ = [
    "DEFAULT_LIMITS",
    "DEVICES",
    "KINDS",
    "ExecError",
    "ExecResult",
    "Executor",
    "Limits",
    "MatmulExecutor",
    "WasmExecutor",
    "available_kinds",
    "check_lookup",
    "compile_wat",
    "detect_gpu",
    "get_executor",
]
