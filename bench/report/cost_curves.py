"""Learning curves against cost, and time to accuracy (``time_to_accuracy.{csv,md}``).

A run records one :class:`~bench.store.learning_curves.CurvePoint` per finished epoch
(:mod:`bench.store.learning_curves`). From the curves, per cell (:mod:`bench.common.cells`: the same dataset, ways,
shots, budget and sweep settings) and for each *target* method (the caller says which; the
issue's targets are the gradient-based meta-learning methods), every other method gets:

* the target's best validation accuracy and the device-hours at which the target first
  reached it;
* the device-hours at which the method's validation accuracy first reaches that accuracy, and
  the speed-up = target's hours to its best / method's hours to reach it ("11x faster at the
  target's accuracy" in the shape of Wang, Zhao & Li 2021, Sec. 5, Figure 2);
* the method's own best accuracy, its hours to it, and the speed-up at its own best = target's
  hours to its best / method's hours to its own best (the paper's "3.6x faster when achieving
  the optimal accuracy").

Accuracy is only known at the end of an epoch (when validation runs), so "first reaches" is
the end of the first epoch whose accuracy is >= the target; no interpolation. Device-hours at
an epoch's end = cumulative seconds / 3600 x devices (``provenance.device_count``), from the
curve's ``train_seconds`` (the timing rule of :mod:`bench.common.timing`) or, with ``clock="run"``,
its ``run_seconds`` (training plus validation: the whole loop as it ran). Hours after the
first reach (epochs that early stopping needed to notice the plateau) are not counted here;
the efficiency table reports whole runs.

Seeds: a method's seed s is set against the target's seed s (their validation episodes are the
same); per-seed hours are averaged over the seeds common to both, and the speed-up is the ratio
of the mean hours. A target not reached in every paired seed is "not reached" (NaN in the CSV)
and the row says in how many seeds it was. Runs on different devices (or device counts) are
not compared, nor validation on different shots; no method or dataset is named here.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Collection, Iterable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from bench.common.cells import (ARM_FIELDS, Arm, Cell, group_cells, seeds_text,
                                unpaired_seed_notes)
from bench.common.timing import hours_text
from bench.store.learning_curves import curve_of, is_finite_number

CLOCKS = ("train", "run")
METRICS = ("val_accuracy", "test_accuracy")
#: Slack for "reaches": accuracies are recorded as floats in percent.
REACH_TOLERANCE = 1e-9


def device_count(run: Mapping[str, Any]) -> int:
    count = run.get("provenance", {}).get("device_count", 1)
    return int(count) if is_finite_number(count) and count >= 1 else 1


def curve_hours(run: Mapping[str, Any], clock: str = "train",
                metric: str = "val_accuracy") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epochs, device-hours at each epoch's end, accuracy) for the points that hold
    ``metric``; empty arrays when the run has no curve."""
    check_options(clock, metric)
    curve = curve_of(run) or []
    points = [p for p in curve if metric in p]
    scale = device_count(run) / 3600.0
    return (np.array([p["epoch"] for p in points], dtype=np.int64),
            np.array([p[f"{clock}_seconds"] * scale for p in points], dtype=np.float64),
            np.array([p[metric] for p in points], dtype=np.float64))


def check_options(clock: str, metric: str) -> None:
    """Refuse an unknown clock or metric before any work starts."""
    for value, choices, what in ((clock, CLOCKS, "clock"), (metric, METRICS, "metric")):
        if value not in choices:
            raise ValueError(f"{what} must be one of {', '.join(choices)}, got {value!r}")


def first_reach(accuracy: np.ndarray, target: float) -> int | None:
    """Index of the first accuracy >= ``target`` (within :data:`REACH_TOLERANCE`), or None."""
    hits = np.nonzero(accuracy >= target - REACH_TOLERANCE)[0]
    return int(hits[0]) if hits.size else None


# ---------------------------------------------------------------------------------------------
# The table.

TIME_TO_ACCURACY_COLUMNS = [
    "dataset", "ways", "shots", "budget", "settings", "method", "variant", "target",
    "target_variant", "metric", "clock", "unit", "seeds", "paired_seeds", "target_best",
    "target_hours", "target_epoch", "method_hours", "method_epoch", "reached_seeds", "speedup",
    "speedup_min", "speedup_max", "method_best", "method_hours_to_best", "method_best_epoch",
    "speedup_at_own_best", "note",
]


def target_predicate(targets: Callable[[str], bool] | Collection[str]
                     ) -> Callable[[str], bool]:
    """A predicate on a method's registry name, from a predicate or a collection of names."""
    if callable(targets):
        return targets
    names = set(targets)
    return lambda method: method in names


def _validation_shots(run: Mapping[str, Any]) -> Any:
    budget = run["config"].get("budget", {})
    val_shots = budget.get("val_shots") if isinstance(budget, Mapping) else None
    return val_shots if val_shots is not None else run["config"].get("shots")


def _validation_episodes(run: Mapping[str, Any]) -> Any:
    budget = run["config"].get("budget", {})
    return budget.get("val_episodes") if isinstance(budget, Mapping) else None


def _device(run: Mapping[str, Any]) -> tuple[str, int]:
    return str(run.get("provenance", {}).get("device", "?")), device_count(run)


def unit_of(run: Mapping[str, Any]) -> str:
    """The run's device-hours label ("GPU-hours", "CPU-hours")."""
    return str(run.get("timings", {}).get("device_hours_unit", "device-hours"))


def _usable_seeds(arm: Arm, target: Arm, metric: str, method_name: str,
                  target_name: str) -> tuple[list[int], list[str], list[str]]:
    """(paired seeds, notes on the seeds left out, notes on the paired ones)."""
    notes = unpaired_seed_notes(arm, target, method_name, target_name)
    seeds = []
    for seed in sorted(set(arm.runs) & set(target.runs)):
        a, t = arm.runs[seed], target.runs[seed]
        lacking = [n for n, r in ((method_name, a), (target_name, t))
                   if not any(metric in p for p in (curve_of(r) or []))]
        if lacking:
            notes.append(f"seed {seed}: no {metric} curve for {' or '.join(lacking)}")
        elif _device(a) != _device(t):
            notes.append(f"seed {seed}: different devices ({_device(a)[0]} x{_device(a)[1]} vs "
                         f"{_device(t)[0]} x{_device(t)[1]}), hours not comparable")
        elif metric == "val_accuracy" and _validation_shots(a) != _validation_shots(t):
            notes.append(f"seed {seed}: validated on {_validation_shots(a)}-shot vs "
                         f"{_validation_shots(t)}-shot episodes, accuracies not comparable")
        else:
            seeds.append(seed)
    counts = {(_validation_episodes(arm.runs[s]), _validation_episodes(target.runs[s]))
              for s in seeds} if metric == "val_accuracy" else set()
    caveats = []
    for mine, theirs in sorted(c for c in counts if c[0] != c[1]):
        caveats.append(f"validated on {mine} vs {theirs} episodes (the best of the noisier "
                     "curve is biased upward more)")
    return seeds, notes, caveats


def _nan_row() -> dict[str, Any]:
    nan = math.nan
    return {"seeds": 0, "paired_seeds": "", "target_best": nan, "target_hours": nan,
            "target_epoch": "", "method_hours": nan, "method_epoch": "", "reached_seeds": 0,
            "speedup": nan, "speedup_min": nan, "speedup_max": nan, "method_best": nan,
            "method_hours_to_best": nan, "method_best_epoch": "", "speedup_at_own_best": nan}


def _epochs_text(epochs: Sequence[int | None]) -> str:
    return ", ".join("–" if e is None else str(e) for e in epochs)


def _measure(arm: Arm, target: Arm, seeds: list[int], clock: str,
             metric: str) -> tuple[dict[str, Any], list[str]]:
    target_best, target_hours, target_epoch = [], [], []
    method_hours, method_epoch, speedups = [], [], []
    own_best, own_hours, own_epoch = [], [], []
    for seed in seeds:
        t_epochs, t_hours, t_acc = curve_hours(target.runs[seed], clock, metric)
        m_epochs, m_hours, m_acc = curve_hours(arm.runs[seed], clock, metric)
        best = float(t_acc.max())
        i_t = first_reach(t_acc, best)
        target_best.append(best)
        target_hours.append(float(t_hours[i_t]))
        target_epoch.append(int(t_epochs[i_t]))
        i_m = first_reach(m_acc, best)
        method_epoch.append(None if i_m is None else int(m_epochs[i_m]))
        if i_m is not None:
            method_hours.append(float(m_hours[i_m]))
            speedups.append(target_hours[-1] / method_hours[-1] if method_hours[-1] > 0
                            else math.nan)
        i_own = first_reach(m_acc, float(m_acc.max()))
        own_best.append(float(m_acc.max()))
        own_hours.append(float(m_hours[i_own]))
        own_epoch.append(int(m_epochs[i_own]))
    reached = len(method_hours)
    all_reached = reached == len(seeds)
    mean_target_hours = float(np.mean(target_hours))
    mean_method_hours = float(np.mean(method_hours)) if all_reached else math.nan
    mean_own_hours = float(np.mean(own_hours))

    def ratio(num: float, den: float) -> float:
        return num / den if den > 0 and math.isfinite(den) else math.nan

    row = {"seeds": len(seeds), "paired_seeds": seeds_text(seeds),
           "target_best": float(np.mean(target_best)), "target_hours": mean_target_hours,
           "target_epoch": _epochs_text(target_epoch), "method_hours": mean_method_hours,
           "method_epoch": _epochs_text(method_epoch), "reached_seeds": reached,
           "speedup": ratio(mean_target_hours, mean_method_hours),
           "speedup_min": float(np.min(speedups)) if all_reached else math.nan,
           "speedup_max": float(np.max(speedups)) if all_reached else math.nan,
           "method_best": float(np.mean(own_best)), "method_hours_to_best": mean_own_hours,
           "method_best_epoch": _epochs_text(own_epoch),
           "speedup_at_own_best": ratio(mean_target_hours, mean_own_hours)}
    notes = [] if all_reached else [f"reached in {reached} of {len(seeds)} seeds"]
    return row, notes


def time_to_accuracy(results: Iterable[Mapping[str, Any]],
                     targets: Callable[[str], bool] | Collection[str],
                     clock: Literal["train", "run"] = "train",
                     metric: Literal["val_accuracy", "test_accuracy"] = "val_accuracy",
                     display: Callable[[str], str] = str,
                     arm_fields: Sequence[str] = ARM_FIELDS) -> pd.DataFrame:
    """For every arm and every target arm of a cell (target != arm): device-hours to reach the
    target's best accuracy, and the speed-ups (module docstring).

    ``targets``: a predicate on a method's registry name, or a collection of names (e.g. the
    methods whose class declares itself gradient-based meta-learning). ``display`` maps a
    registry name to the name shown. Runs without a learning curve are skipped with a note;
    failed runs are ignored. Columns: :data:`TIME_TO_ACCURACY_COLUMNS`.
    """
    check_options(clock, metric)
    is_target = target_predicate(targets)
    rows: list[dict[str, Any]] = []
    for cell in group_cells(results, arm_fields):
        arms = [a for a in cell.arms if a.runs]
        for target in (a for a in arms if is_target(a.method)):
            for arm in arms:
                if arm is target:
                    continue
                rows.append(_row(cell, arm, target, clock, metric, display))
    return pd.DataFrame(rows, columns=TIME_TO_ACCURACY_COLUMNS)


def _row(cell: Cell, arm: Arm, target: Arm, clock: str, metric: str,
         display: Callable[[str], str]) -> dict[str, Any]:
    method_name, target_name = display(arm.method), display(target.method)
    seeds, notes, caveats = _usable_seeds(arm, target, metric, method_name, target_name)
    any_run = next(iter(target.runs.values()))
    row = {**cell.columns(), "method": method_name, "variant": arm.variant,
           "target": target_name, "target_variant": target.variant, "metric": metric,
           "clock": clock, "unit": unit_of(any_run)}
    if not seeds:
        row.update(_nan_row())
        row["note"] = "; ".join(notes or ["no seed on both sides"])
        return row
    measured, more = _measure(arm, target, seeds, clock, metric)
    row.update(measured)
    row["unit"] = unit_of(target.runs[seeds[0]])
    if notes:  # some seed was left out: say which were used
        notes.insert(0, f"seed{'s' if len(seeds) > 1 else ''} {seeds_text(seeds)} only")
    row["note"] = "; ".join(notes + caveats + more)
    return row


# ---------------------------------------------------------------------------------------------
# Markdown and CSV.

def time_to_accuracy_footer(clock: str = "train", metric: str = "val_accuracy") -> str:
    """The method, stated for the reader of ``time_to_accuracy.md`` (``clock="both"``: one
    footer under a table per clock)."""
    what = "validation accuracy (unified protocol)" if metric == "val_accuracy" else \
        "test accuracy on the reduced --test-every episodes"
    seconds = {"train": "training seconds (timing rule)",
               "run": "training + validation seconds",
               "both": "training seconds (timing rule; for run device-hours, training + "
                       "validation seconds)"}[clock]
    return (
        f"Accuracy: {what}, known at the end of each epoch. Target's best: the highest value on "
        "the target's curve; its hours: device-hours at the end of the first epoch that reached "
        "it. Method's hours: device-hours at the end of its first epoch at or above the "
        "target's best (not reached: never, in at least one seed). Speed-up = target's hours "
        "/ method's hours; at its own best = target's hours to its best / method's hours to "
        f"its own best. Device-hours = cumulative {seconds} / 3600 x devices, counted to the "
        "epoch of the first reach (later epochs excluded). Over several seeds: seed s of the "
        "method against seed s of the target, hours averaged over the paired seeds, speed-up "
        "= ratio of the mean hours (per-seed range in the CSV). Only runs on the same device "
        "and device count are compared. A curve's best is its maximum, which validation noise "
        "biases upward (more so with fewer validation episodes): read small differences in "
        "speed-up with that in mind.")


def _speed(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.1f}x"


def time_to_accuracy_markdown(frame: pd.DataFrame, clock: str = "train",
                              metric: str = "val_accuracy") -> str:
    """``time_to_accuracy.md``: one row per (method, target), then the footer."""
    footer = time_to_accuracy_footer(clock, metric)
    if frame.empty:
        return "_No learning curves to compare (no target method with a curve)._\n\n" \
            + footer + "\n"
    show_settings = bool(frame["settings"].astype(str).str.len().gt(0).any())
    header = ["dataset", "budget", *(["settings"] if show_settings else []), "method",
              "target", "target's best (%)", "target: hours to its best",
              "method: hours to target's best", "speed-up at target's best",
              "method's best (%)", "method: hours to its best", "speed-up at method's best",
              "seeds", "note"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in frame.itertuples(index=False):
        paired = row.seeds > 0
        reached = paired and not math.isnan(row.method_hours)
        cells = [
            f"{row.dataset} {row.ways}-way {row.shots}-shot", str(row.budget),
            *([str(row.settings)] if show_settings else []),
            row.method + (f" ({row.variant})" if row.variant else ""),
            row.target + (f" ({row.target_variant})" if row.target_variant else ""),
            f"{row.target_best:.2f}" if paired else "–",
            f"{hours_text(row.target_hours)} {row.unit}" if paired else "–",
            (f"{hours_text(row.method_hours)} {row.unit}" if reached
             else ("not reached" if paired else "–")),
            _speed(row.speedup),
            f"{row.method_best:.2f}" if paired else "–",
            f"{hours_text(row.method_hours_to_best)} {row.unit}" if paired else "–",
            _speed(row.speedup_at_own_best),
            str(row.seeds) if paired else "–", str(row.note)]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n\n" + footer + "\n"


def time_to_accuracy_csv(frame: pd.DataFrame) -> str:
    """``time_to_accuracy.csv``: six significant digits; "not reached" is an empty (NaN)
    cell."""
    return frame.to_csv(index=False, float_format="%.6g")
