"""A cheating worker, for testnets that show cheaters caught (``testnet up --cheaters``).

Never on by default: a node cheats only when its configuration's ``[jobs] cheat`` lists
modes, and then it cheats on every matmul job, the matmul modes in rotation, and with
``segment`` on every step job. Each mode is one way a worker might hope to be paid for less
than the work:

    row      one row of the product replaced (zeros), committed honestly: a fraud proof
    entry    one entry off by one, committed honestly: a fraud proof
    commit   one entry off by one, with the root of the true product: rejected (bad_proof)
    zero     an all-zero product of the right shape, committed honestly: a fraud proof
    segment  a step job's memory altered after its second step, and the chain that follows
             committed: a dispute, lost on the replay of one segment, and a fraud proof
"""

from __future__ import annotations

import numpy as np

from p2pnode.config import CHEAT_MODES
from p2pnode.jobs.tensors import decode_matrix, encode_matrix
from p2pnode.proofs import matmul
from p2pnode.proofs.wasm_step import StepRun

MODES = CHEAT_MODES
MATMUL_MODES = tuple(m for m in MODES if m != "segment")
DIVERGE_AFTER = 2  # steps
MAX_ELEMENTS = 1 << 26


def tamper(mode: str, output: bytes) -> tuple[bytes, dict[str, bytes]]:
    """The output blob and ``proof`` a cheater in ``mode`` sends instead of ``output``'s."""
    true = decode_matrix(output, MAX_ELEMENTS)
    c = np.array(true, dtype=np.int64)
    if mode == "row":
        i = c.shape[0] // 2
        c[i] = 0 if c[i].any() else 1
    elif mode in ("entry", "commit"):
        c[-1, -1] += 1
    elif mode == "zero":
        c[...] = 0 if true.any() else 1
    else:
        raise ValueError(f"unknown cheat mode {mode!r} (one of {', '.join(MODES)})")
    proof = matmul.commitment(true if mode == "commit" else c)
    return encode_matrix(c), proof


def diverge(run: StepRun, steps: int) -> None:
    """``segment``: flip the first byte of memory after the second step (a run's tamper)."""
    if steps == DIVERGE_AFTER:
        run.flip(0)
