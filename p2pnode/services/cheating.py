"""A testnet's cheating worker (``[jobs] cheat``, ``testnet up --cheaters``): what it sends
instead of honest work. Never on by default; the modes are :mod:`p2pnode.proofs.cheat`'s."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from p2pnode.jobs.executors.base import Limits
from p2pnode.jobs.model import SignedJob
from p2pnode.log import event

if TYPE_CHECKING:
    from p2pnode.proofs.wasm_step import Chain, Tamper

log = logging.getLogger("p2pnode.worker")


class Cheater:
    def __init__(self, modes: tuple[str, ...], limits: Limits) -> None:
        self.matmul_modes = [m for m in modes if m != "segment"]
        self.segment = "segment" in modes
        self.limits = limits
        self.cheated = 0  # matmul results tampered with so far

    def tamper_for(self, sj: SignedJob) -> Tamper | None:
        """``segment``: the hook that makes a step job's run diverge, or None."""
        if not self.segment or sj.spec.param("checkpoint_fuel") is None:
            return None
        from p2pnode.proofs.cheat import diverge

        return diverge

    def steps(self, sj: SignedJob, inputs: dict[str, bytes]) -> Chain | None:
        """``segment``: the step job run again, diverging; its output and chain are what
        the cheater sends (and answers a referee from)."""
        tamper = self.tamper_for(sj)
        if tamper is None:
            return None
        from p2pnode.proofs import wasm_step

        chain = wasm_step.run(inputs["module"], inputs["input"],
                              sj.spec.param("fuel", self.limits.wasm_fuel),
                              sj.spec.param("checkpoint_fuel"), tamper=tamper,
                              memory_bytes=self.limits.wasm_memory_bytes)
        event(log, "job.cheat", logging.WARNING, job=sj.id.hex(), mode="segment")
        return chain

    def matmul(self, sj: SignedJob, output: bytes) -> tuple[bytes, dict[str, Any]] | None:
        """The next matmul mode in rotation: the output blob and proof sent instead, or
        None for an honest worker."""
        if not self.matmul_modes:
            return None
        from p2pnode.proofs.cheat import tamper

        mode = self.matmul_modes[self.cheated % len(self.matmul_modes)]
        self.cheated += 1
        event(log, "job.cheat", logging.WARNING, job=sj.id.hex(), mode=mode)
        return tamper(mode, output)
