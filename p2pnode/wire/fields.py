"""Field checks shared by every message body decoder (CAPS-4, JOB-2, JOB-3, JOB-7).

Each raises ``WireError`` with BAD_FIELD (wrong type, size or range) or UNKNOWN_FIELD.
"""

from __future__ import annotations

from typing import Any

from p2pnode.wire.reasons import Reason, WireError

UINT64_MAX = (1 << 64) - 1


def map_exact(v: Any, keys: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise WireError(Reason.BAD_FIELD, "%s must be a map" % what)
    present = set(v)
    extra = present - keys
    if extra:
        raise WireError(Reason.UNKNOWN_FIELD, "%s: %s" % (what, sorted(map(str, extra))))
    missing = keys - present
    if missing:
        raise WireError(Reason.BAD_FIELD, "%s lacks %s" % (what, sorted(missing)))
    return v


def list_of(v: Any, max_len: int, what: str) -> list[Any]:
    if not isinstance(v, list) or len(v) > max_len:
        raise WireError(Reason.BAD_FIELD, "%s must be an array of at most %d" % (what, max_len))
    return v


def text(v: Any, max_len: int, what: str, nonempty: bool = False) -> str:
    if not isinstance(v, str) or len(v.encode("utf-8")) > max_len or (nonempty and not v):
        raise WireError(Reason.BAD_FIELD, "%s must be text of 1..%d bytes" % (what, max_len))
    return v


def uint(v: Any, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= UINT64_MAX:
        raise WireError(Reason.BAD_FIELD, "%s must be an unsigned integer" % what)
    return v


def bstr(v: Any, what: str, size: int | None = None, max_len: int | None = None) -> bytes:
    if not isinstance(v, bytes):
        raise WireError(Reason.BAD_FIELD, "%s must be a byte string" % what)
    if size is not None and len(v) != size:
        raise WireError(Reason.BAD_FIELD, "%s must be %d bytes" % (what, size))
    if max_len is not None and len(v) > max_len:
        raise WireError(Reason.BAD_FIELD, "%s longer than %d bytes" % (what, max_len))
    return v


def boolean(v: Any, what: str) -> bool:
    if not isinstance(v, bool):
        raise WireError(Reason.BAD_FIELD, "%s must be true or false" % what)
    return v


# Short aliases used by the body decoders.
_map, _list, _text, _uint = map_exact, list_of, text, uint


def hashes(v: Any, max_len: int, what: str) -> list[bytes]:
    """An array of at most ``max_len`` 32-byte strings (an audit path, say)."""
    return [bstr(h, what, size=32) for h in list_of(v, max_len, what)]
