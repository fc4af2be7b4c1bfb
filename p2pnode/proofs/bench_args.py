"""The arguments of ``p2pnode bench proofs``, apart from the benchmark (which imports numpy)
so that building the command line stays cheap."""

from __future__ import annotations

import argparse

DEFAULT_SIZES = (512, 1024, 2048)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, nargs="+", default=list(DEFAULT_SIZES),
                   help="matmul sizes (default 512 1024 2048)")
    p.add_argument("--repeat", type=int, default=7, help="best of this many runs (default 7)")
    p.add_argument("--wasm-steps", type=int, default=20_000,
                   help="steps of the wasm dispute's example job (default 20000, about 160 M "
                   "fuel)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
