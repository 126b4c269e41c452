"""The learning-curve schema of a result file: one :class:`CurvePoint` per finished epoch under
the result key :data:`CURVE_KEY`, validated on every read (:func:`validate_curve`). The curves'
tables and figures are :mod:`bench.report.cost_curves` and :mod:`bench.report.curve_plots`."""
from __future__ import annotations

import math
from typing import Any, Mapping, NotRequired, TypedDict

#: The result key holding the learning curve (a list of :class:`CurvePoint`, one per epoch).
CURVE_KEY = "learning_curve"


class CurvePoint(TypedDict):
    """One finished epoch of a run (proposed result schema: ``result["learning_curve"]``).

    Cumulative quantities count from the start of training, across resumes (a resumed run
    continues its curve, it never restarts it).
    """

    epoch: int  # 1-based epoch number; one point per epoch, in order, no gaps
    train_seconds: float  # cumulative timed training seconds at this epoch's end (bench.common.timing)
    run_seconds: float  # cumulative training + validation seconds (the whole training loop;
    # checkpoint writing, resume loading and --test-every evaluations excluded)
    images_seen: int  # cumulative training images (support + query of every task)
    steps: int  # cumulative optimiser steps
    val_accuracy: float  # validation accuracy after this epoch, percent, unified protocol
    # (the number model selection uses)
    test_accuracy: NotRequired[float]  # --test-every N: test accuracy (percent) on a reduced
    # number of episodes, on epochs N, 2N, ...; excluded from both clocks; never used to select
    test_episodes: NotRequired[int]  # number of test episodes behind ``test_accuracy``


#: The keys every point holds, and those it may hold (named here because the TypedDict's
#: own ``__required_keys__`` cannot see ``NotRequired`` under postponed annotations).
CURVE_REQUIRED = ("epoch", "train_seconds", "run_seconds", "images_seen", "steps",
                  "val_accuracy")
CURVE_OPTIONAL = ("test_accuracy", "test_episodes")


class CurveError(ValueError):
    """A learning curve that does not follow :class:`CurvePoint`; names the run."""


_INT_FIELDS = ("epoch", "images_seen", "steps", "test_episodes")
_CUMULATIVE = ("train_seconds", "run_seconds", "images_seen", "steps")
_ACCURACIES = ("val_accuracy", "test_accuracy")


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def validate_curve(curve: Any, source: str) -> list[CurvePoint]:
    """Check a learning curve against :class:`CurvePoint`; raise :class:`CurveError` naming
    ``source`` (a run key or file) and the epoch."""

    def fail(why: str) -> CurveError:
        return CurveError(f"{source}: {CURVE_KEY} {why}")

    if not isinstance(curve, list) or not curve:
        raise fail("must be a non-empty list of per-epoch points")
    previous: Mapping[str, Any] | None = None
    for index, point in enumerate(curve):
        where = f"point {index}"
        if not isinstance(point, dict):
            raise fail(f"{where} is not an object")
        missing = [k for k in CURVE_REQUIRED if k not in point]
        if missing:
            raise fail(f"{where} lacks {', '.join(missing)}")
        for key in (*CURVE_REQUIRED, *(k for k in CURVE_OPTIONAL if k in point)):
            if not is_finite_number(point[key]):
                raise fail(f"{where}: {key} is {point[key]!r}, not a finite number")
            if key in _INT_FIELDS and point[key] != int(point[key]):
                raise fail(f"{where}: {key} is {point[key]!r}, not a whole number")
        if point["epoch"] != index + 1:
            raise fail(f"{where}: epoch is {point['epoch']}, expected {index + 1} (one point "
                       "per epoch, in order)")
        for key in _ACCURACIES:
            if key in point and not 0.0 <= point[key] <= 100.0:
                raise fail(f"epoch {point['epoch']}: {key} {point[key]} is not a percentage")
        if point["run_seconds"] < point["train_seconds"]:
            raise fail(f"epoch {point['epoch']}: run_seconds {point['run_seconds']} < "
                       f"train_seconds {point['train_seconds']}")
        if previous is not None:
            for key in _CUMULATIVE:
                if point[key] < previous[key]:
                    raise fail(f"epoch {point['epoch']}: {key} decreased from {previous[key]} "
                               f"to {point[key]} (cumulative)")
        previous = point
    return curve  # type: ignore[return-value]


def curve_of(run: Mapping[str, Any]) -> list[CurvePoint] | None:
    """The run's validated learning curve, or None when the result has none (older runs)."""
    curve = run.get(CURVE_KEY)
    if curve is None:
        return None
    return validate_curve(curve, str(run.get("key", "result")))
