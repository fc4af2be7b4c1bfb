"""The ``matmul`` executor: exact int8 x int8 -> int64 matrix product (spec 04 §7.3).

Inputs ``{"a": int8 n x k, "b": int8 k x m}`` (matrix blobs, :mod:`p2pnode.jobs.tensors`),
no params; output ``a @ b`` as an int64 n x m matrix blob, exact.

The product is computed in float64 by the BLAS (numpy on the CPU, cuBLAS through CuPy or
PyTorch on a GPU) and converted to int64. numpy's int64 matmul has no BLAS kernel and is
about 250x slower; the float64 path gives the same integers, for the reason at
``EXACT_K_MAX``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from p2pnode.jobs.executors.base import (
    DEVICES,
    ExecError,
    ExecResult,
    Limits,
    check_input_size,
    check_names,
)
from p2pnode.jobs.tensors import decode_matrix, encode_matrix, encoded_matrix_size
from p2pnode.wire.reasons import Reason, WireError

KIND: Final = "matmul"
INPUTS: Final = frozenset({"a", "b"})

# Why the float64 product is exact. Every term a[i,l] * b[l,j] of int8 values lies in
# [-127*128, 128*128], so |term| <= 2^14, and every partial sum of k terms, in whatever order
# and blocking the BLAS adds them (with or without FMA), is an integer of magnitude
# <= k * 2^14. float64 represents every integer of magnitude <= 2^53 exactly, so as long as
# k * 2^14 <= 2^53, i.e. k <= 2^39, no product and no addition ever rounds, and converting the
# float64 result to int64 gives the exact integer product. (float32, with its 24-bit
# significand, would already round for k just above 2^10.)
EXACT_K_MAX: Final = 2**53 // 2**14

# Below this many multiply-adds (n*k*m) "auto" stays on the CPU: copying to and from the GPU
# and launching the kernel cost more than the whole product on the CPU.
AUTO_GPU_MIN_WORK: Final = 128**3


class GpuBackend(Protocol):
    """The float64 product on a GPU; ``name`` is the library (``"cupy"``, ``"torch"``)."""

    @property
    def name(self) -> str: ...

    def matmul(self, a: npt.NDArray[np.int8], b: npt.NDArray[np.int8]) -> npt.NDArray[np.int64]:
        ...


class _CupyBackend:
    name = "cupy"

    def __init__(self, cp: Any) -> None:
        self._cp = cp

    def matmul(self, a: npt.NDArray[np.int8], b: npt.NDArray[np.int8]) -> npt.NDArray[np.int64]:
        cp = self._cp
        # int8 crosses the bus (8x less than float64); the widening happens on the device.
        da = cp.asarray(a).astype(cp.float64)
        db = cp.asarray(b).astype(cp.float64)
        out = cp.asnumpy((da @ db).astype(cp.int64))
        return np.asarray(out, dtype=np.int64)


class _TorchBackend:
    name = "torch"

    def __init__(self, torch: Any) -> None:
        self._torch = torch

    def matmul(self, a: npt.NDArray[np.int8], b: npt.NDArray[np.int8]) -> npt.NDArray[np.int64]:
        torch = self._torch
        # copy(): torch refuses to wrap the read-only views that blob decoding returns.
        da = torch.from_numpy(a.copy()).to("cuda").to(torch.float64)
        db = torch.from_numpy(b.copy()).to("cuda").to(torch.float64)
        out = (da @ db).to(torch.int64).cpu().numpy()
        return np.asarray(out, dtype=np.int64)


@functools.cache
def detect_gpu() -> GpuBackend | None:
    """The GPU backend to use, or None: CuPy with a device, else PyTorch with CUDA."""
    if importlib.util.find_spec("cupy") is not None:
        try:
            cp = importlib.import_module("cupy")
            if int(cp.cuda.runtime.getDeviceCount()) > 0:
                return _CupyBackend(cp)
        except Exception:  # a broken CUDA install means "no GPU", not a crash
            pass
    if importlib.util.find_spec("torch") is not None:
        try:
            torch = importlib.import_module("torch")
            if bool(torch.cuda.is_available()):
                return _TorchBackend(torch)
        except Exception:  # as above
            pass
    return None


# From this many elements a conversion runs in two threads (numpy lets go of the GIL while
# it casts), as the BLAS product itself does: 9 -> 5 ms for the int64 result at n = 2048.
PARALLEL_CAST_ELEMENTS: Final = 1 << 20


def _cast(x: npt.NDArray[Any], dtype: type[Any]) -> npt.NDArray[Any]:
    if x.size < PARALLEL_CAST_ELEMENTS or x.shape[0] < 2:
        return x.astype(dtype)
    out = np.empty(x.shape, dtype=dtype)
    half = x.shape[0] // 2
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(np.copyto, out[:half], x[:half], casting="unsafe")
        np.copyto(out[half:], x[half:], casting="unsafe")
        first.result()
    return out


def matmul_exact_cpu(a: npt.NDArray[np.int8], b: npt.NDArray[np.int8]) -> npt.NDArray[np.int64]:
    """``a @ b`` exactly, by the float64 BLAS (see ``EXACT_K_MAX``); k must be <= it."""
    if a.shape[1] > EXACT_K_MAX:
        raise ValueError(f"k = {a.shape[1]} > {EXACT_K_MAX}: float64 would not be exact")
    return _cast(_cast(a, np.float64) @ _cast(b, np.float64), np.int64)


class MatmulExecutor:
    """Executor of ``matmul`` jobs (spec 04 §7.3, EXE-3, EXE-4) on the CPU or a GPU.

    ``device``: ``"cpu"``; ``"gpu"`` (always the GPU; an error if there is none); ``"auto"``
    (the GPU when one is present and the product has at least ``AUTO_GPU_MIN_WORK``
    multiply-adds, the CPU otherwise). ``meta["device"]`` says which one ran.

    With ``"auto"`` the GPU libraries are looked for only when a product is large enough to
    use them: importing CuPy or PyTorch costs more than a small product, and the node runs
    each job in a fresh process.
    """

    kind: str = KIND

    def __init__(self, device: str = "auto", gpu: GpuBackend | None = None) -> None:
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
        if gpu is None and device == "gpu":
            gpu = detect_gpu()
            if gpu is None:
                raise ValueError(
                    "device 'gpu' asked for, but neither CuPy nor PyTorch sees a GPU")
        self.device = device
        self._gpu = gpu if device != "cpu" else None
        self._detected = gpu is not None or device == "cpu"

    @property
    def gpu(self) -> GpuBackend | None:
        """The GPU backend this executor uses, if any (looked for on first use)."""
        if not self._detected:
            self._gpu, self._detected = detect_gpu(), True
        return self._gpu

    def _use_gpu(self, n: int, k: int, m: int) -> bool:
        if self.device == "cpu":
            return False
        if self.device == "auto" and n * k * m < AUTO_GPU_MIN_WORK:
            return False
        return self.gpu is not None

    def run(
        self, inputs: Mapping[str, bytes], params: Mapping[str, Any], limits: Limits
    ) -> ExecResult:
        check_names("inputs", inputs, INPUTS, frozenset())
        check_names("params", params, frozenset(), frozenset())
        check_input_size(inputs, limits)
        max_elements = limits.matmul_max_n**2
        try:
            a = decode_matrix(bytes(inputs["a"]), max_elements, dtype="int8")
        except WireError as e:
            raise ExecError.from_wire(e, "input a") from e
        try:
            b = decode_matrix(bytes(inputs["b"]), max_elements, dtype="int8")
        except WireError as e:
            raise ExecError.from_wire(e, "input b") from e
        n, k = a.shape
        k2, m = b.shape
        if k != k2:
            raise ExecError(Reason.BAD_FIELD, f"shapes {n}x{k} and {k2}x{m} do not multiply")
        biggest = max(n, k, m)
        if biggest > limits.matmul_max_n:
            raise ExecError(
                Reason.LIMIT_EXCEEDED, f"matmul_max_n: dimension {biggest} > {limits.matmul_max_n}"
            )
        if k > EXACT_K_MAX:
            raise ExecError(Reason.LIMIT_EXCEEDED, f"k = {k} > {EXACT_K_MAX} (exactness bound)")
        out_size = encoded_matrix_size("int64", n, m)
        if out_size > limits.max_output_bytes:
            raise ExecError(
                Reason.LIMIT_EXCEEDED,
                f"output: {out_size} bytes > max_output_bytes {limits.max_output_bytes}",
            )

        meta: dict[str, int | str] = {"n": n, "k": k, "m": m}
        start = time.perf_counter()
        product: npt.NDArray[np.int64] | None = None
        if self._use_gpu(n, k, m) and self.gpu is not None:
            try:
                product = self.gpu.matmul(a, b)
                meta.update(device="gpu", backend=self.gpu.name)
            except Exception as e:  # CUDA errors have no common base class
                if self.device == "gpu":
                    raise ExecError(Reason.EXEC_FAILED, f"gpu ({self.gpu.name}): {e}") from e
                # "auto" promised a result, not a device: fall back and say why.
                meta["gpu_error"] = str(e)[:200]
        if product is None:
            product = matmul_exact_cpu(a, b)
            meta.update(device="cpu", backend="numpy")
        if product.shape != (n, m):
            raise ExecError(Reason.EXEC_FAILED, f"backend returned shape {product.shape}")
        output = encode_matrix(product)
        meta["elapsed_ms"] = round((time.perf_counter() - start) * 1000)
        return ExecResult(output=output, meta=meta)
