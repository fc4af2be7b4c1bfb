"""Rules of the admin API's exposure, pure: where it may listen and which connections it
holds open (see ``p2pnode.api.server``).

Both apply before the token is checked: any local user can connect, so neither may depend
on knowing the token.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass


def api_listen_refusal(listen: str, allow_remote: bool) -> str | None:
    """Why the admin API must not listen on ``listen`` (``host:port``), or None.

    The API is plain TCP with a bearer token; on a non-loopback address the token would
    cross the network in clear, so that takes an explicit ``allow_remote``. A host name other
    than ``localhost`` cannot be checked without resolving it and counts as remote.
    """
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return f"[api] listen = {listen!r} is not host:port"
    if allow_remote or host == "localhost":
        return None
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (f"[api] listen = {listen!r} is not a loopback address; the admin API sends its "
            "token in clear, so listening there needs [api] allow_remote = true")


@dataclass(frozen=True, slots=True)
class Admitted:
    """The new connection is served; ``evicted`` (if any) must be closed to make room."""

    evicted: int | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """Every slot holds an authenticated connection: the new one is closed at once."""


class ApiSlots:
    """At most ``capacity`` connections open at once.

    When full, a new connection takes the slot of the oldest one that has not yet shown
    the token: idle or half-sent connections of other local users cannot lock the operator
    out, and only a token holder can occupy a slot for good.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._anonymous: OrderedDict[int, None] = OrderedDict()  # oldest first
        self._authenticated: set[int] = set()

    def __len__(self) -> int:
        return len(self._anonymous) + len(self._authenticated)

    def open(self, conn: int) -> Admitted | Refused:
        evicted = None
        if len(self) >= self.capacity:
            if not self._anonymous:
                return Refused()
            evicted, _ = self._anonymous.popitem(last=False)
        self._anonymous[conn] = None
        return Admitted(evicted)

    def authenticated(self, conn: int) -> None:
        if conn in self._anonymous:
            del self._anonymous[conn]
            self._authenticated.add(conn)

    def close(self, conn: int) -> None:
        self._anonymous.pop(conn, None)
        self._authenticated.discard(conn)
