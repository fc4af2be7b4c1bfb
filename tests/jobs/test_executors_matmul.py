"""The matmul executor: exact int8 x int8 -> int64, limits, device selection."""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from p2pnode.jobs.executors import ExecError, Limits, get_executor
from p2pnode.jobs.executors import matmul as mm
from p2pnode.jobs.tensors import decode_matrix, encode_matrix
from p2pnode.wire import cbor
from p2pnode.wire.reasons import Reason

LIMITS = Limits()
int8_values = st.sampled_from([-128, 127]) | st.integers(-128, 127)


def run(a: np.ndarray, b: np.ndarray, limits: Limits = LIMITS, device: str = "cpu",
        **params: Any) -> tuple[np.ndarray, dict[str, int | str]]:
    result = get_executor("matmul", device).run(
        {"a": encode_matrix(a), "b": encode_matrix(b)}, params, limits
    )
    return decode_matrix(result.output, 1 << 24, dtype="int64"), result.meta


def reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # numpy's int64 matmul: slow, but integer all the way, so exact at these sizes.
    return a.astype(np.int64) @ b.astype(np.int64)


def expect(reason: Reason, fn: Any, *args: Any, **kw: Any) -> ExecError:
    with pytest.raises(ExecError) as info:
        fn(*args, **kw)
    assert info.value.reason is reason, info.value
    return info.value


@st.composite
def operands(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n, k, m = (draw(st.integers(1, 40)) for _ in range(3))
    a = draw(hnp.arrays(np.int8, (n, k), elements=int8_values))
    b = draw(hnp.arrays(np.int8, (k, m), elements=int8_values))
    return a, b


@settings(max_examples=60, deadline=None)
@given(operands())
def test_exact_against_int64_reference(ab: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = ab
    out, meta = run(a, b)
    assert out.shape == (a.shape[0], b.shape[1])
    assert np.array_equal(out, reference(a, b))
    assert meta["device"] == "cpu"


def test_small_case_by_hand() -> None:
    a = np.array([[1, -2, 3]], dtype=np.int8)
    b = np.array([[4], [5], [-128]], dtype=np.int8)
    out, _ = run(a, b)
    assert out.tolist() == [[1 * 4 - 2 * 5 + 3 * -128]]


@pytest.mark.parametrize(("x", "y"), [(-128, -128), (-128, 127), (127, 127)])
def test_extreme_values(x: int, y: int) -> None:
    k = 40
    out, _ = run(np.full((3, k), x, np.int8), np.full((k, 2), y, np.int8))
    assert (out == k * x * y).all()


def test_exact_where_float32_is_not() -> None:
    # 1024 terms of (-128)*(-128) = 2^14 plus one term 1*1: the sum 2^24 + 1 has no float32
    # representation, so any float32 product is off by one, whatever the summation order.
    k = 1025
    a = np.full((2, k), -128, np.int8)
    b = np.full((k, 3), -128, np.int8)
    a[:, -1] = 1
    b[-1, :] = 1
    expected = 2**24 + 1
    as_float32 = a.astype(np.float32) @ b.astype(np.float32)
    assert (as_float32.astype(np.int64) != expected).all()  # the test is meaningful
    out, _ = run(a, b)
    assert (out == expected).all()
    assert np.array_equal(out, reference(a, b))


def test_output_is_an_int64_blob() -> None:
    a = np.ones((2, 3), np.int8)
    result = get_executor("matmul", "cpu").run(
        {"a": encode_matrix(a), "b": encode_matrix(a.T.copy())}, {}, LIMITS
    )
    value = cbor.decode(result.output)
    assert value["dtype"] == "int64" and value["shape"] == [2, 2]
    assert isinstance(result.meta["elapsed_ms"], int)


# --- refusals ----------------------------------------------------------------------------


def test_shape_mismatch() -> None:
    e = expect(Reason.BAD_FIELD, run, np.ones((2, 3), np.int8), np.ones((4, 2), np.int8))
    assert "do not multiply" in e.detail


@pytest.mark.parametrize(("n", "k", "m"), [(9, 2, 2), (2, 9, 2), (2, 2, 9)])
def test_dimension_over_limit(n: int, k: int, m: int) -> None:
    limits = Limits(matmul_max_n=8)
    e = expect(Reason.LIMIT_EXCEEDED, run, np.ones((n, k), np.int8), np.ones((k, m), np.int8),
               limits)
    assert "matmul_max_n" in e.detail
    run(np.ones((8, 8), np.int8), np.ones((8, 8), np.int8), limits)  # at the limit: fine


def test_element_count_over_limit_is_limit_exceeded() -> None:
    # 1 x 100 has few enough rows but more elements than 8 x 8 allows.
    expect(Reason.LIMIT_EXCEEDED, run, np.ones((1, 100), np.int8), np.ones((100, 1), np.int8),
           Limits(matmul_max_n=8))


def test_exactness_bound_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mm, "EXACT_K_MAX", 4)
    expect(Reason.LIMIT_EXCEEDED, run, np.ones((2, 5), np.int8), np.ones((5, 2), np.int8))
    run(np.ones((2, 4), np.int8), np.ones((4, 2), np.int8))


def test_exactness_bound_value() -> None:
    # k * 2^14 <= 2^53: the largest k for which every partial sum is a float64 integer.
    assert mm.EXACT_K_MAX == 2**39
    assert mm.EXACT_K_MAX * 128 * 128 <= 2**53


def test_int64_inputs_refused() -> None:
    expect(Reason.BAD_FIELD, run, np.ones((2, 2), np.int64), np.ones((2, 2), np.int8))


def test_output_over_limit() -> None:
    a = np.ones((16, 1), np.int8)
    e = expect(Reason.LIMIT_EXCEEDED, run, a, a.T.copy(), Limits(max_output_bytes=1000))
    assert "output" in e.detail
    run(a, a.T.copy(), Limits(max_output_bytes=2100))  # 16*16*8 + header


def test_input_over_limit() -> None:
    a = np.ones((16, 16), np.int8)
    e = expect(Reason.LIMIT_EXCEEDED, run, a, a, Limits(max_input_bytes=400))
    assert "input" in e.detail


@pytest.mark.parametrize(
    ("inputs", "params"),
    [
        ({"a": b"x"}, {}),
        ({"a": b"x", "b": b"x", "c": b"x"}, {}),
        (None, {"rounds": 3}),
        ({"a": b"garbage", "b": b"garbage"}, {}),
        ({"a": "not bytes", "b": b""}, {}),
    ],
)
def test_bad_inputs(inputs: dict[str, Any] | None, params: dict[str, Any]) -> None:
    ok = encode_matrix(np.ones((2, 2), np.int8))
    expect(Reason.BAD_FIELD, get_executor("matmul", "cpu").run,
           inputs if inputs is not None else {"a": ok, "b": ok}, params, LIMITS)


# --- devices -----------------------------------------------------------------------------


class FakeGpu:
    """A GPU backend that computes on the CPU and counts its calls."""

    name = "fake"

    def __init__(self, fail: bool = False, shape: tuple[int, int] | None = None) -> None:
        self.calls = 0
        self.fail = fail
        self.shape = shape

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fail:
            raise RuntimeError("CUDA error: out of memory")
        out = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
        return out[: self.shape[0], : self.shape[1]] if self.shape else out


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> FakeGpu:
    gpu = FakeGpu()
    monkeypatch.setattr(mm, "detect_gpu", lambda: gpu)
    return gpu


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mm, "detect_gpu", lambda: None)


SMALL = (np.ones((4, 4), np.int8), np.ones((4, 4), np.int8))
LARGE = (np.ones((128, 128), np.int8), np.ones((128, 128), np.int8))  # = AUTO_GPU_MIN_WORK


def test_auto_uses_gpu_for_large_products(fake_gpu: FakeGpu) -> None:
    out, meta = run(*LARGE, device="auto")
    assert meta["device"] == "gpu" and meta["backend"] == "fake"
    assert fake_gpu.calls == 1
    assert (out == 128).all()


def test_auto_keeps_small_products_on_cpu(fake_gpu: FakeGpu) -> None:
    _, meta = run(*SMALL, device="auto")
    assert meta["device"] == "cpu" and fake_gpu.calls == 0


def test_auto_looks_for_a_gpu_only_for_large_products(monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker runs each job in a fresh process: a small product must not pay for importing
    # the GPU libraries.
    looked: list[bool] = []

    def detect() -> None:
        looked.append(True)

    monkeypatch.setattr(mm, "detect_gpu", detect)
    run(*SMALL, device="auto")
    assert looked == []
    run(*LARGE, device="auto")
    assert looked == [True]


def test_gpu_device_always_uses_gpu(fake_gpu: FakeGpu) -> None:
    _, meta = run(*SMALL, device="gpu")
    assert meta["device"] == "gpu" and fake_gpu.calls == 1


def test_cpu_device_ignores_gpu(fake_gpu: FakeGpu) -> None:
    _, meta = run(*LARGE, device="cpu")
    assert meta["device"] == "cpu" and fake_gpu.calls == 0


def test_auto_without_gpu_uses_cpu(no_gpu: None) -> None:
    _, meta = run(*LARGE, device="auto")
    assert meta["device"] == "cpu"


def test_gpu_device_without_gpu_refused(no_gpu: None) -> None:
    with pytest.raises(ValueError, match="gpu"):
        get_executor("matmul", "gpu")


def test_auto_falls_back_to_cpu_when_gpu_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = FakeGpu(fail=True)
    monkeypatch.setattr(mm, "detect_gpu", lambda: gpu)
    out, meta = run(*LARGE, device="auto")
    assert meta["device"] == "cpu" and "out of memory" in str(meta["gpu_error"])
    assert gpu.calls == 1 and (out == 128).all()
    e = expect(Reason.EXEC_FAILED, run, *LARGE, device="gpu")
    assert "out of memory" in e.detail


def test_backend_returning_wrong_shape_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = FakeGpu(shape=(2, 2))
    monkeypatch.setattr(mm, "detect_gpu", lambda: gpu)
    expect(Reason.EXEC_FAILED, run, *SMALL, device="gpu")


def _fake_module(**attrs: Any) -> types.SimpleNamespace:
    return types.SimpleNamespace(**attrs)


@pytest.mark.parametrize(
    ("cupy_devices", "torch_cuda", "expected"),
    [(1, True, "cupy"), (0, True, "torch"), (0, False, None), ("raise", True, "torch"),
     (None, True, "torch"), (None, None, None), (2, None, "cupy")],
)
def test_detection_order(monkeypatch: pytest.MonkeyPatch, cupy_devices: Any,
                         torch_cuda: bool | None, expected: str | None) -> None:
    """CuPy with a device first, then PyTorch with CUDA; a broken install counts as none."""

    def device_count() -> int:
        if cupy_devices == "raise":
            raise RuntimeError("cudaErrorNoDevice")
        return int(cupy_devices)

    modules: dict[str, Any] = {}
    if cupy_devices is not None:
        modules["cupy"] = _fake_module(
            cuda=_fake_module(runtime=_fake_module(getDeviceCount=device_count))
        )
    if torch_cuda is not None:
        modules["torch"] = _fake_module(cuda=_fake_module(is_available=lambda: torch_cuda))

    real_find_spec = mm.importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        if name in ("cupy", "torch"):
            return object() if name in modules else None
        return real_find_spec(name, *args)

    monkeypatch.setattr(mm.importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(mm.importlib, "import_module", lambda name: modules[name])
    mm.detect_gpu.cache_clear()
    try:
        backend = mm.detect_gpu()
        assert (backend.name if backend else None) == expected
    finally:
        mm.detect_gpu.cache_clear()


# --- a real GPU, where there is one --------------------------------------------------------

mm.detect_gpu.cache_clear()
HAVE_GPU = mm.detect_gpu() is not None


@pytest.mark.skipif(not HAVE_GPU, reason="neither CuPy nor PyTorch sees a GPU")
@pytest.mark.parametrize("device", ["gpu", "auto"])
def test_real_gpu_matches_cpu(device: str) -> None:
    rng = np.random.default_rng(7)
    a = rng.integers(-128, 128, size=(300, 1100), dtype=np.int8)
    b = rng.integers(-128, 128, size=(1100, 200), dtype=np.int8)
    a[0, :] = -128
    b[:, 0] = -128
    out, meta = run(a, b, device=device)
    assert meta["device"] == "gpu"
    assert np.array_equal(out, reference(a, b))
