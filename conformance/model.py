"""The shapes shared by case generators, vector files, the reference handlers and the runner.

A *case* is what a generator in ``conformance/cases/`` states: its inputs and the outcome the
spec requires. A *vector* is a case written to disk (``conformance/vectors/``). An *outcome*
is what an implementation answered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from p2pnode.wire.reasons import Reason

Result = Literal["valid", "reject", "ignore"]
RESULTS: tuple[Result, ...] = ("valid", "reject", "ignore")


@dataclass(frozen=True)
class Inputs:
    """Input files (name -> value, typed by the name's extension, see ``files.py``) and small
    JSON parameters (they go into ``meta.json``)."""

    files: Mapping[str, Any]
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Expected:
    """The outcome a case requires.

    ``outputs`` holds the output files whose content the case states itself; the generator
    takes the remaining outputs of a valid case from the reference implementation and fails
    if the reference disagrees with any stated one.
    """

    result: Result
    reason: str | None = None
    outputs: Mapping[str, Any] = field(default_factory=dict)


def valid(outputs: Mapping[str, Any] | None = None) -> Expected:
    return Expected("valid", None, dict(outputs or {}))


def reject(reason: Reason) -> Expected:
    return Expected("reject", reason.value)


def ignore(reason: Reason) -> Expected:
    return Expected("ignore", reason.value)


@dataclass(frozen=True)
class Case:
    """One conformance case: ``(name, inputs, expected)`` plus what it checks and why."""

    name: str
    inputs: Inputs
    expected: Expected
    description: str
    rules: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    """What an implementation answered for one case."""

    result: Result
    reason: str | None = None
    outputs: Mapping[str, Any] = field(default_factory=dict)
