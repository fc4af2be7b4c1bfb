"""The cost of checking a matmul result against computing it (``p2pnode bench proofs``).

    python -m bench.bench_proofs [--n 512 1024 2048] [--repeat 7] [--json]

The benchmark lives in the package (:mod:`p2pnode.proofs.bench`) so that an installed node
runs it as ``p2pnode bench proofs``; this module runs the same code from a checkout.
"""

from __future__ import annotations

import os
import sys

from p2pnode.jobs.executors import BLAS_ENV

if __name__ == "__main__":
    # Before numpy loads: the BLAS settings of the node's executor processes.
    for k, v in BLAS_ENV.items():
        os.environ.setdefault(k, v)
    from p2pnode.proofs.bench import main

    sys.exit(main())
