"""Declared hyperparameters and their one validation.

A method declares each hyperparameter once, as an :class:`HParam` (default, type, valid range or
choices, what it does)::

    hparam_spec = {
        "inner_lr": HParam(0.01, float, gt=0, doc="inner-loop learning rate in training"),
        "train_steps": HParam(5, int, ge=1, doc="inner steps per training task"),
    }

and :func:`validate_hparams` checks any set of overrides against the spec: an unknown key is an
error listing every valid key with its type, range and default (and the closest match); a value
of the wrong type or out of range is an error saying what is accepted. Values are taken as they
arrive from the command line (``--hparam inner_lr=0.5`` is JSON-decoded to ``0.5``; an
undecodable ``--hparam inner_lr=abc`` arrives as the string ``"abc"`` and is refused). It needs
no model, so a whole sweep can be checked before anything is built.
"""
from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["HParam", "HParamError", "unknown_names", "validate_hparams"]

_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


class HParamError(ValueError):
    """Unknown hyperparameter, or a value of the wrong type or out of range."""


def _json(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


@dataclass(frozen=True)
class HParam:
    """One declared hyperparameter.

    ``type``: ``bool``, ``int``, ``float`` (integers are accepted too; booleans never count as
    numbers) or ``str``. Bounds ``gt``/``ge``/``lt``/``le`` (numbers) and ``choices`` restrict
    the value; ``optional=True`` also accepts ``None`` (``null`` on the command line), whose
    meaning ``doc`` says. Floats must be finite.
    """

    default: Any
    type: type
    doc: str = ""
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple[Any, ...] | None = None
    optional: bool = False

    def __post_init__(self) -> None:
        if self.type not in _TYPE_NAMES:
            raise TypeError(f"HParam type must be bool, int, float or str, not {self.type!r}")
        problem = self.problem(self.default)
        if problem is not None:
            raise TypeError(f"HParam default {self.default!r} is not valid: it {problem}")

    def accepted(self) -> str:
        """What this hyperparameter accepts, in words ("a number > 0", "an integer >= 1", ...)."""
        if self.choices is not None:
            text = "one of " + ", ".join(_json(c) for c in self.choices)
        else:
            text = _TYPE_NAMES[self.type]
            bounds = [f"{op} {bound:g}" for op, bound in
                      ((">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le))
                      if bound is not None]
            if bounds:
                text += " " + " and ".join(bounds)
        return text + (" or null" if self.optional else "")

    def describe(self) -> str:
        """``type and range, default``: the line an error message lists for this key."""
        return f"{self.accepted()}, default {_json(self.default)}"

    def problem(self, value: Any) -> str | None:
        """None when ``value`` is valid, else what is wrong with it ("must be ...")."""
        if value is None and self.optional:
            return None
        ok = _is_type(value, self.type)
        if ok and self.type is float:
            ok = math.isfinite(value)
        if ok and self.choices is not None:
            ok = value in self.choices
        if ok and isinstance(value, (int, float)) and not isinstance(value, bool):
            ok = ((self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                  and (self.lt is None or value < self.lt)
                  and (self.le is None or value <= self.le))
        return None if ok else f"must be {self.accepted()}"


def _is_type(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)


def unknown_names(unknown: Sequence[str], known: Iterable[str]) -> str:
    """``'lrr' (did you mean 'lr'?), 'x'``: the unknown keys, each with its closest known one."""
    known = list(known)
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return ", ".join(hints)


def validate_hparams(owner: str, spec: Mapping[str, HParam],
                     overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults of ``spec`` updated with ``overrides``, after checking every override.

    ``owner`` names whose hyperparameters these are in messages (e.g. ``"method 'maml'"``).
    Raises :class:`HParamError` naming every unknown key (with the valid keys, their types,
    ranges and defaults) or every invalid value (with what is accepted).
    """
    unknown = [key for key in overrides if key not in spec]
    if unknown:
        valid = "; ".join(f"{name} ({hp.describe()})" for name, hp in spec.items())
        raise HParamError(f"{owner} has no hyperparameter {unknown_names(unknown, spec)}. "
                          f"Valid: {valid or '(none)'}")
    problems = [f"{key} {spec[key].problem(value)}, got {_json(value)}"
                for key, value in overrides.items() if spec[key].problem(value) is not None]
    if problems:
        raise HParamError(f"{owner}: hyperparameter " + "; ".join(problems))
    return {**{name: hp.default for name, hp in spec.items()}, **overrides}
