"""The typed JSON form of a CBOR value, used in vectors and in the adapter protocol.

JSON cannot tell bytes from text or carry 64-bit integers safely, so a value of the profile
(spec/01-encoding.md §2.1) is written as:

| CBOR value          | typed JSON                                               |
|---------------------|----------------------------------------------------------|
| integer             | ``{"int": "<decimal>"}``                                 |
| byte string         | ``{"bytes": "<lowercase hex>"}``                         |
| text string         | a JSON string                                            |
| array               | a JSON array                                             |
| map                 | ``{"map": [[key, value], ...]}`` in canonical key order  |
| false / true / null | ``false`` / ``true`` / ``null``                          |
"""

from __future__ import annotations

from typing import Any

from p2pnode.wire import cbor
from p2pnode.wire.reasons import Reason, WireError


def to_json(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {"int": str(value)}
    if isinstance(value, bytes | bytearray):
        return {"bytes": bytes(value).hex()}
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        pairs = sorted(value.items(), key=lambda kv: cbor.encode(kv[0]))
        return {"map": [[to_json(k), to_json(v)] for k, v in pairs]}
    raise TypeError(f"no typed JSON form for {type(value).__name__}")


def from_json(obj: Any) -> Any:
    """Inverse of :func:`to_json`. A map listing one key twice is refused as
    ``duplicate_key``, the answer ENC-6 requires of an encoder given such a map."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, list):
        return [from_json(v) for v in obj]
    if isinstance(obj, dict) and len(obj) == 1:
        (tag, payload), = obj.items()
        if tag == "int" and isinstance(payload, str):
            return int(payload)
        if tag == "bytes" and isinstance(payload, str):
            return bytes.fromhex(payload)
        if tag == "map" and isinstance(payload, list):
            out: dict[Any, Any] = {}
            for pair in payload:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise ValueError("a map entry is a [key, value] pair")
                k = from_json(pair[0])
                if isinstance(k, list | dict):
                    raise WireError(Reason.UNSUPPORTED_TYPE, "map keys are text or integers")
                if any(type(k) is type(seen) and k == seen for seen in out):
                    raise WireError(Reason.DUPLICATE_KEY, repr(k))
                out[k] = from_json(pair[1])
            return out
    raise ValueError(f"not a typed JSON value: {obj!r}")
