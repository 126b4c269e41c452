"""Accuracy against device-hours, one line per method: the curves behind time to accuracy.

One PNG per (dataset, ways, shots), named by :func:`curve_figure_name`; one panel per budget,
sweep setting and device-hours unit inside it (CPU-hours and GPU-hours never share an axis).
Every arm (:mod:`bench.common.cells`) is one colour: a thick line through the mean over its seeds at
each epoch they all reached, a band from the lowest to the highest seed, and each seed faint
(x: cumulative device-hours at the epoch's end, log scale; y: validation accuracy, or
``--test-every`` test accuracy). A target method's best accuracy (mean over its
seeds) is drawn as a dotted horizontal line in its colour, so where a curve crosses it is where
:func:`bench.report.cost_curves.time_to_accuracy` reads its hours. Shape of Wang, Zhao & Li 2021,
Figure 2, with the training cost itself on the x axis instead of a single speed-up per run.

Drawn with matplotlib's Agg renderer through :class:`matplotlib.figure.Figure` and written
atomically with :mod:`bench.report.figure_kit`'s helpers.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from bench.common.cells import ARM_FIELDS, Arm, Cell, group_cells
from bench.report.cost_curves import check_options, curve_hours, target_predicate, unit_of
from bench.report.figure_kit import finish, grid, log_axis, save_png, style_map

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
    """What tells the figure's panels apart (the figure's title names the dataset, ways and
    shots once)."""
    extra = f", {cell.label}" if cell.label else ""
    return f"{cell.budget} budget{extra}, {unit}"


def seed_mean(curves: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(hours, mean accuracy, lowest, highest) over the seeds' ``(epochs, hours, accuracy)``
    curves at every epoch all of them reached (hours: the mean over the seeds too)."""
    common = sorted(set.intersection(*(set(epochs.tolist()) for epochs, _, _ in curves)))
    if not common:
        empty = np.array([], dtype=np.float64)
        return empty, empty, empty, empty
    hours = np.array([[h[list(e).index(k)] for k in common] for e, h, _ in curves])
    accuracy = np.array([[a[list(e).index(k)] for k in common] for e, _, a in curves])
    return hours.mean(0), accuracy.mean(0), accuracy.min(0), accuracy.max(0)


def _draw_panel(axis: Any, cell: Cell, unit: str, clock: str, metric: str,
                display: Callable[[str], str], is_target: Callable[[str], bool],
                styles: dict[str, dict[str, Any]]) -> bool:
    drawn_x: list[float] = []
    for arm in cell.arms:
        label = _arm_label(arm, display)
        style = styles[label]
        curves = []
        for seed, run in sorted(arm.runs.items()):
            if unit_of(run) != unit:
                continue
            epochs, hours, accuracy = curve_hours(run, clock, metric)
            keep = hours > 0  # a log axis cannot show 0 hours
            if not keep.any():
                continue
            curves.append((epochs[keep], hours[keep], accuracy[keep]))
            drawn_x.extend(hours[keep].tolist())
        if not curves:
            continue
        for _, hours, accuracy in curves:  # every seed, faint
            axis.plot(hours, accuracy, color=style["color"], linewidth=0.8, alpha=0.3)
        hours, mean, low, high = seed_mean(curves)
        seeds = f"{len(curves)} seed{'s' if len(curves) > 1 else ''}"
        if hours.size:
            axis.plot(hours, mean, color=style["color"], marker=style["marker"], markersize=3.5,
                      linewidth=1.6, label=f"{label} ({seeds})")
            if len(curves) > 1:
                axis.fill_between(hours, low, high, color=style["color"], alpha=0.15,
                                  linewidth=0)
        if is_target(arm.method):
            best = float(np.mean([accuracy.max() for _, _, accuracy in curves]))
            axis.axhline(best, color=style["color"], linestyle=":", linewidth=1.0,
                         label=f"{label}: best")
    if not drawn_x:
        return False
    log_axis(axis, min(drawn_x) / 1.5, max(drawn_x) * 1.5)
    seconds = "training" if clock == "train" else "training + validation"
    axis.set_xlabel(f"{unit}, cumulative ({seconds}; log scale)")
    axis.set_ylabel(_METRIC_LABEL[metric])
    axis.set_title(_panel_title(cell, unit), fontsize=9)
    axis.grid(alpha=0.3, which="major")
    return True


def no_curves_warning(metric: str = "val_accuracy") -> str:
    """What is said when no run has a learning curve of ``metric`` to draw."""
    what = "validation" if metric == "val_accuracy" else "--test-every test"
    return (f"learning-curve figure not drawn: no finished run has a {what} learning curve "
            "(results written before curves were recorded have none)")


def plot_learning_curves(results: Iterable[Mapping[str, Any]], out_dir: Path,
                         targets: Callable[[str], bool] | Collection[str] = (),
                         clock: str = "train", metric: str = "val_accuracy",
                         display: Callable[[str], str] = str,
                         arm_fields: Sequence[str] = ARM_FIELDS,
                         warn: Callable[[str], None] = _warn) -> list[Path]:
    """Write :func:`learning_curve_figures` into ``out_dir``; return their paths. When no
    run has a learning curve, nothing is written and ``warn`` says so."""
    written = [save_png(draw(), Path(out_dir) / name) for name, draw in
               learning_curve_plan(results, targets, clock, metric, display, arm_fields)]
    if not written:
        warn(no_curves_warning(metric))
    return written


def learning_curve_figures(results: Iterable[Mapping[str, Any]],
                           targets: Callable[[str], bool] | Collection[str] = (),
                           clock: str = "train", metric: str = "val_accuracy",
                           display: Callable[[str], str] = str,
                           arm_fields: Sequence[str] = ARM_FIELDS
                           ) -> list[tuple[str, Figure]]:
    """One (file name, figure) per (dataset, ways, shots) whose runs have a learning curve.

    ``targets`` (a predicate on the registry name, or names) get a dotted line at their best
    accuracy. Runs without a learning curve are left out.
    """
    return [(name, draw()) for name, draw in
            learning_curve_plan(results, targets, clock, metric, display, arm_fields)]


def learning_curve_plan(results: Iterable[Mapping[str, Any]],
                        targets: Callable[[str], bool] | Collection[str] = (),
                        clock: str = "train", metric: str = "val_accuracy",
                        display: Callable[[str], str] = str,
                        arm_fields: Sequence[str] = ARM_FIELDS
                        ) -> list[tuple[str, Callable[[], Figure]]]:
    """The figures :func:`learning_curve_figures` draws, not drawn yet: (file name, a
    function that draws it) each, in the same order."""
    check_options(clock, metric)
    is_target = target_predicate(targets)
    figures: dict[tuple[str, int, int], list[tuple[Cell, str]]] = {}
    for cell in group_cells(results, arm_fields):
        units = sorted({unit_of(r) for a in cell.arms for r in a.runs.values()
                        if curve_hours(r, clock, metric)[0].size})
        for unit in units:
            figures.setdefault((cell.dataset, cell.ways, cell.shots), []).append((cell, unit))

    def drawer(dataset: str, ways: int, shots: int, panels: list[tuple[Cell, str]]
               ) -> Callable[[], Figure]:
        return lambda: _figure(dataset, ways, shots, panels, clock, metric, display, is_target)

    return [(curve_figure_name(dataset, ways, shots, metric),
             drawer(dataset, ways, shots, panels))
            for (dataset, ways, shots), panels in figures.items()]


def _figure(dataset: str, ways: int, shots: int, panels: list[tuple[Cell, str]], clock: str,
            metric: str, display: Callable[[str], str], is_target: Callable[[str], bool]
            ) -> Figure:
    """The learning-curve figure of one (dataset, ways, shots): a panel per (cell, unit)."""
    labels = [_arm_label(a, display) for cell, _ in panels for a in cell.arms]
    styles = style_map(labels)
    figure, axes = grid(len(panels), width=6.0, height=4.4)
    for axis, (cell, unit) in zip(axes, panels):
        _draw_panel(axis, cell, unit, clock, metric, display, is_target, styles)
    title = (f"{_METRIC_LABEL[metric].split(',')[0].capitalize()} against device-hours, "
             f"{dataset} {ways}-way {shots}-shot")
    notes = ["Thick line: the mean over a method's seeds at every epoch all its seeds "
             "reached (x: their mean device-hours); band: the lowest to the highest seed "
             "there; faint lines: each seed. Dotted: a target's best accuracy (mean over "
             "its seeds), where time to accuracy reads its hours."]
    return finish(figure, axes, title, notes)
