"""Case generators, one module per area; the one source of every vector.

Each area module has ``HANDLERS``: handler name -> a function yielding :class:`Case` values.
A vector's path is ``<area>/<handler>/<case name>``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from conformance.cases import (
    blob,
    caps,
    chain,
    encoding,
    envelope,
    framing,
    identity,
    jobs,
    ledger,
    market,
    proofs,
    tensors,
)
from conformance.model import Case

AREAS: dict[str, Mapping[str, Callable[[], Iterator[Case]]]] = {
    "encoding": {**encoding.HANDLERS, **framing.HANDLERS},
    "identity": identity.HANDLERS,
    "envelope": envelope.HANDLERS,
    "caps": caps.HANDLERS,
    "jobs": {**jobs.HANDLERS, **market.HANDLERS},
    "tensors": tensors.HANDLERS,
    "blob": blob.HANDLERS,
    "proofs": proofs.HANDLERS,
    "ledger": ledger.HANDLERS,
    "chain": chain.HANDLERS,
}


def all_cases() -> Iterator[tuple[str, Case]]:
    """``(handler path "area/handler", case)`` for every case, in a fixed order."""
    for area, handlers in AREAS.items():
        for handler, gen in handlers.items():
            names: set[str] = set()
            for case in gen():
                if case.name in names:
                    raise ValueError(f"{area}/{handler}: case {case.name!r} defined twice")
                names.add(case.name)
                yield f"{area}/{handler}", case
