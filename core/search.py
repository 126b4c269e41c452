"""Search spaces for ``bench tune``: what a method declares it can be tuned over.

A method class declares ``search_space`` (:attr:`methods.base.FewShotMethod.search_space`), a
mapping from a hyperparameter of its ``hparam_spec`` to a :class:`Range` or a :class:`Choice`::

    search_space = {"scale_init": Range(1.0, 30.0, log=True)}

It lives in the neutral layer so a method declares its space without importing Optuna; the
tuner (:mod:`bench.tune.study`) turns each entry into the matching Optuna suggestion. Every method is
tuned over the same shared optimiser space plus its own entries (docs/findings.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

__all__ = ["Choice", "Range", "SearchDim", "describe"]


@dataclass(frozen=True)
class Range:
    """Numbers from ``low`` to ``high`` (inclusive), sampled log-uniformly with ``log``;
    integers only with ``integer``."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"Range needs low < high, got {self.low!r} and {self.high!r}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log Range needs low > 0, got {self.low!r}")
        if self.integer and (int(self.low) != self.low or int(self.high) != self.high):
            raise ValueError(f"an integer Range needs integer bounds, got {self.low!r}, "
                             f"{self.high!r}")

    def contains(self, value: Any) -> bool:
        return self.low <= value <= self.high

    def describe(self) -> str:
        kind = "integers" if self.integer else "numbers"
        return f"{kind} {self.low:g}..{self.high:g}{' (log)' if self.log else ''}"


@dataclass(frozen=True)
class Choice:
    """One of ``values``."""

    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if len(self.values) < 2:
            raise ValueError(f"a Choice needs at least two values, got {self.values!r}")

    def contains(self, value: Any) -> bool:
        return value in self.values

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


SearchDim = Union[Range, Choice]


def describe(space: dict[str, SearchDim]) -> dict[str, str]:
    """``{name: "numbers 1..30 (log)"}``: a space as plain text, for result files."""
    return {name: dim.describe() for name, dim in space.items()}
