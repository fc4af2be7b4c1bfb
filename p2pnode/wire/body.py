"""A signed message body as a frozen dataclass: its fields are the body's keys.

Subclasses set ``T`` (the envelope type) and ``V`` (its version); ``to_body`` is the map of
the fields in declaration order and ``seal`` signs it (spec 01 §3)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from p2pnode.identity import Identity
from p2pnode.wire import envelope


@dataclass(frozen=True, slots=True)
class SealedBody:
    T: ClassVar[str] = ""
    V: ClassVar[int] = 1

    def to_body(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def seal(self, signer: Identity) -> bytes:
        return envelope.seal(signer, self.T, self.V, self.to_body())
