"""Turning ``job.submit`` arguments into job inputs (p2pnode/api/jobs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pnode.api.jobs import JobArgsError, build_inputs, check_matmul_size, requirements
from p2pnode.jobs import tensors
from p2pnode.jobs.executors import compile_wat


def test_matmul_inputs_are_fresh_random_int8_matrices() -> None:
    first, params = build_inputs({"kind": "matmul", "n": 6})
    second, _ = build_inputs({"kind": "matmul", "n": 6})
    assert params == {}
    a = tensors.decode_matrix(first["a"], 100)
    assert a.shape == (6, 6) and str(a.dtype) == "int8"
    assert first["a"] != second["a"]


def test_matmul_output_must_fit_one_blob() -> None:
    check_matmul_size(2048, 64 << 20)
    with pytest.raises(JobArgsError, match="128 MiB output"):
        check_matmul_size(4096, 64 << 20)


def test_wasm_inputs_from_example_or_file(tmp_path: Path) -> None:
    inputs, params = build_inputs({"kind": "wasm", "fuel": 1000})
    assert inputs["module"][:4] == b"\0asm" and inputs["input"] == b"" and params == {
        "fuel": 1000}
    wat = tmp_path / "m.wat"
    wat.write_text('(module (memory (export "memory") 1))')
    (tmp_path / "in.bin").write_bytes(b"xyz")
    inputs, _ = build_inputs({"kind": "wasm", "module": str(wat),
                              "input": str(tmp_path / "in.bin")})
    assert inputs["module"] == compile_wat(wat.read_text()) and inputs["input"] == b"xyz"
    with pytest.raises(JobArgsError, match="no example"):
        build_inputs({"kind": "wasm", "module": "example:nope"})
    with pytest.raises(JobArgsError, match="cannot read"):
        build_inputs({"kind": "wasm", "module": str(tmp_path / "missing.wasm")})


def test_bad_arguments_say_what_is_wrong() -> None:
    with pytest.raises(JobArgsError, match="unknown job kind"):
        build_inputs({"kind": "render"})
    with pytest.raises(JobArgsError, match="n must be an integer"):
        build_inputs({"kind": "matmul", "n": 0})
    r = requirements({"requirements": {"cores": 4, "mem_mib": 2, "gpu": True}})
    assert (r.cores, r.mem, r.gpu_mem, r.gpu) == (4, 2 << 20, 0, True)
    with pytest.raises(JobArgsError, match="requirements"):
        requirements({"requirements": [1]})


def test_soundness_bits_become_the_jobs_verify_map() -> None:
    from p2pnode.api.jobs import _verify

    assert _verify({}) == {}
    assert _verify({"soundness_bits": 64}) == {"bits": 64}
    for bad in (39, 129, "64", True):
        with pytest.raises(JobArgsError):
            _verify({"soundness_bits": bad})
