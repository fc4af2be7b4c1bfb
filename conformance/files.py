"""Vector files: how a value is stored on disk and carried in adapter JSON, by file extension.

| extension        | value   | on disk                    | in adapter JSON            |
|------------------|---------|----------------------------|----------------------------|
| ``.cbor``/``.bin`` | bytes | the raw bytes              | lowercase hex string       |
| ``.txt``         | str     | UTF-8, one trailing ``\\n`` | the string                 |
| ``.json``        | JSON    | sorted keys, 2-space indent | the JSON value            |
"""

from __future__ import annotations

import json
from typing import Any

BINARY_EXTENSIONS = (".cbor", ".bin")


def kind(name: str) -> str:
    if name.endswith(BINARY_EXTENSIONS):
        return "binary"
    if name.endswith(".txt"):
        return "text"
    if name.endswith(".json"):
        return "json"
    raise ValueError(f"vector file {name!r} has no known extension")


def dump_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def to_disk(name: str, value: Any) -> bytes:
    k = kind(name)
    if k == "binary":
        if not isinstance(value, bytes | bytearray):
            raise TypeError(f"{name}: expected bytes, got {type(value).__name__}")
        return bytes(value)
    if k == "text":
        if not isinstance(value, str) or "\n" in value:
            raise TypeError(f"{name}: expected one line of text")
        return (value + "\n").encode("utf-8")
    return dump_json(value).encode("utf-8")


def from_disk(name: str, data: bytes) -> Any:
    k = kind(name)
    if k == "binary":
        return data
    text = data.decode("utf-8")
    if k == "text":
        return text[:-1] if text.endswith("\n") else text
    return json.loads(text)


def to_wire(name: str, value: Any) -> Any:
    """The adapter-JSON form of a file's value."""
    return value.hex() if kind(name) == "binary" else value


def from_wire(name: str, obj: Any) -> Any:
    if kind(name) == "binary":
        if not isinstance(obj, str):
            raise ValueError(f"{name}: expected a hex string")
        return bytes.fromhex(obj)
    return obj


def same(name: str, a: Any, b: Any) -> bool:
    """Whether two values of file ``name`` are equal (JSON compared as parsed values)."""
    if kind(name) == "json":
        return bool(json.loads(json.dumps(a)) == json.loads(json.dumps(b)))
    return bool(a == b)
