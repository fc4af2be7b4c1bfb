"""What the ``p2pnode`` subcommands share: exit codes, output helpers, the admin API call."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from p2pnode.config import resolve_home

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3


class UsageError(ValueError):
    """A command given arguments it must refuse; ``main`` exits with EXIT_USAGE."""


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=None, default=str)
    sys.stdout.write("\n")


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    return "\n".join(lines)


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def ask(a: argparse.Namespace, cmd: str, args: dict[str, Any] | None = None) -> Any:
    """One admin API call to the node of ``a.home``."""
    from p2pnode.api.client import call

    return call(resolve_home(a.home), cmd, args)
