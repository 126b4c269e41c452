"""Accuracy against device-hours, one line per method: the curves behind time to accuracy.

One PNG per (dataset, ways, shots), named by :func:`curve_figure_name`; one panel per budget,
sweep setting and device-hours unit inside it (CPU-hours and GPU-hours never share an axis).
Every arm (:mod:`bench.cells`) is one colour; each of its seeds is a line through its
per-epoch points (x: cumulative device-hours at the epoch's end, log scale; y: validation
accuracy, or ``--test-every`` test accuracy). A target method's best accuracy (mean over its
seeds) is drawn as a dotted horizontal line in its colour, so where a curve crosses it is where
:func:`bench.cost_curves.time_to_accuracy` reads its hours. Shape of Wang, Zhao & Li 2021,
Figure 2, with the training cost itself on the x axis instead of a single speed-up per run.

Drawn with matplotlib's Agg renderer through :class:`matplotlib.figure.Figure` and written
atomically, as :mod:`bench.plots` does (its helpers are reused).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

import numpy as np

from bench.cells import ARM_FIELDS, Arm, Cell, group_cells
from bench.cost_curves import check_options, curve_hours, target_predicate, unit_of
from bench.plots import _grid, _legend_and_save, _log_axis, _style_map

_METRIC_LABEL = {"val_accuracy": "validation accuracy, unified protocol (%)",
                 "test_accuracy": "test accuracy, reduced --test-every episodes (%)"}


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def curve_figure_name(dataset: str, ways: int, shots: int,
                      metric: str = "val_accuracy") -> str:
    """``learning_curves_<dataset>_<ways>w<shots>s.png`` (``_test`` before the suffix for the
    test-accuracy curves); characters other than letters, digits, ``.``, ``_`` and ``-``
    become ``-``."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", dataset)
    suffix = "" if metric == "val_accuracy" else "_test"
    return f"learning_curves_{safe}_{ways}w{shots}s{suffix}.png"


def _arm_label(arm: Arm, display: Callable[[str], str]) -> str:
    return display(arm.method) + (f" ({arm.variant})" if arm.variant else "")


def _panel_title(cell: Cell, unit: str) -> str:
    extra = f", {cell.label}" if cell.label else ""
    return f"{cell.dataset} {cell.ways}-way {cell.shots}-shot, {cell.budget}{extra}, {unit}"


def _draw_panel(axis: Any, cell: Cell, unit: str, clock: str, metric: str,
                display: Callable[[str], str], is_target: Callable[[str], bool],
                styles: dict[str, dict[str, Any]]) -> bool:
    drawn_x: list[float] = []
    for arm in cell.arms:
        label = _arm_label(arm, display)
        bests = []
        for seed, run in sorted(arm.runs.items()):
            if unit_of(run) != unit:
                continue
            _, hours, accuracy = curve_hours(run, clock, metric)
            keep = hours > 0  # a log axis cannot show 0 hours
            if not keep.any():
                continue
            axis.plot(hours[keep], accuracy[keep], color=styles[label]["color"],
                      marker=styles[label]["marker"], markersize=3, linewidth=1.2, alpha=0.85,
                      label=label)
            drawn_x.extend(hours[keep].tolist())
            bests.append(float(accuracy.max()))
        if bests and is_target(arm.method):
            axis.axhline(float(np.mean(bests)), color=styles[label]["color"], linestyle=":",
                         linewidth=1.0, label=f"{label}: best")
    if not drawn_x:
        return False
    _log_axis(axis, "{:g}")
    axis.set_xlim(min(drawn_x) / 1.5, max(drawn_x) * 1.5)
    seconds = "training" if clock == "train" else "training + validation"
    axis.set_xlabel(f"{unit} ({seconds}, cumulative)")
    axis.set_ylabel(_METRIC_LABEL[metric])
    axis.set_title(_panel_title(cell, unit), fontsize=9)
    axis.grid(alpha=0.3, which="both")
    return True


def plot_learning_curves(results: Iterable[Mapping[str, Any]], out_dir: Path,
                         targets: Callable[[str], bool] | Collection[str] = (),
                         clock: str = "train", metric: str = "val_accuracy",
                         display: Callable[[str], str] = str,
                         arm_fields: Sequence[str] = ARM_FIELDS,
                         warn: Callable[[str], None] = _warn) -> list[Path]:
    """Write one figure per (dataset, ways, shots) into ``out_dir``; return their paths.

    ``targets`` (a predicate on the registry name, or names) get a dotted line at their best
    accuracy. Runs without a learning curve are left out; when no run has one, nothing is
    written and ``warn`` says so.
    """
    check_options(clock, metric)
    is_target = target_predicate(targets)
    figures: dict[tuple[str, int, int], list[tuple[Cell, str]]] = {}
    for cell in group_cells(results, arm_fields):
        units = sorted({unit_of(r) for a in cell.arms for r in a.runs.values()
                        if curve_hours(r, clock, metric)[0].size})
        for unit in units:
            figures.setdefault((cell.dataset, cell.ways, cell.shots), []).append((cell, unit))
    written = []
    for (dataset, ways, shots), panels in figures.items():
        labels = [_arm_label(a, display) for cell, _ in panels for a in cell.arms]
        styles = _style_map(labels)
        figure, axes = _grid(len(panels), width=6.0, height=4.4)
        for axis, (cell, unit) in zip(axes, panels):
            _draw_panel(axis, cell, unit, clock, metric, display, is_target, styles)
        title = (f"{_METRIC_LABEL[metric].split(',')[0].capitalize()} against device-hours, "
                 f"{dataset} {ways}-way {shots}-shot\n(a line per method and seed; dotted: "
                 "a target's best)")
        path = Path(out_dir) / curve_figure_name(dataset, ways, shots, metric)
        written.append(_legend_and_save(figure, axes, title, path))
    if not written:
        what = "validation" if metric == "val_accuracy" else "--test-every test"
        warn(f"learning-curve figure not drawn: no finished run has a {what} learning curve "
             "(results written before curves were recorded have none)")
    return written
