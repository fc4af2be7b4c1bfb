"""Who may run a job: one matching function for both sides of the market (JOB-6, OFR-1).

The requester matches a job against the capability ads in its table (offers, and the
qualification of a claimant, LEASE-3); the worker matches it against its own hardware and
config (WRK-1). Both go through :func:`meets` and :class:`Capacity`, so the two sides
can never disagree about what "meets the requirements" means.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from p2pnode.caps.model import CapabilityAd
from p2pnode.jobs.model import JobSpec, Requirements
from p2pnode.wire.reasons import Reason


@dataclass(frozen=True, slots=True)
class Capacity:
    """What a worker is and offers: from its capability ad, or its own probe and config."""

    kinds: frozenset[str]
    cores: int
    mem: int
    gpus: int
    gpu_mem: int  # of its largest GPU
    prices: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of_ad(cls, ad: CapabilityAd) -> Capacity:
        return cls(kinds=frozenset(ad.kinds), cores=ad.cores, mem=ad.mem, gpus=len(ad.gpus),
                   gpu_mem=ad.gpu_mem, prices=dict(ad.price))

    def price_for(self, kind: str) -> int:
        return self.prices.get(kind, 0)

    @property
    def resource_classes(self) -> tuple[str, ...]:
        return ("cpu", "gpu") if self.gpus else ("cpu",)


def meets(c: Capacity, req: Requirements) -> bool:
    """JOB-6: cores, RAM, the largest GPU's memory and, if asked, a GPU at all."""
    if req.gpu and c.gpus == 0:
        return False
    return c.cores >= req.cores and c.mem >= req.mem and c.gpu_mem >= req.gpu_mem


def unmet(c: Capacity, spec: JobSpec) -> Reason | None:
    """None if ``c`` can run ``spec`` at a price it accepts, else why not (WRK-1, OFR-1)."""
    if spec.kind not in c.kinds or not meets(c, spec.req):
        return Reason.REQUIREMENTS_UNMET
    if c.price_for(spec.kind) > spec.max_price:
        return Reason.BAD_FIELD
    return None
