"""Efficiency figures of ``bench table``, drawn from :func:`bench.report.table.efficiency_rows`.

* :func:`figure2`: the shape of Figure 2 of Wang, Zhao & Li (ICML 2021): test accuracy (with
  its 95% CI) against the speed-up relative to MetaOptNet-SVM (Lee et al., CVPR 2019), one
  point per efficiency row, one panel per dataset, ways and shots. Both speed-ups are drawn:
  filled, run device-hours (training plus validation, what the paper's GPU-hours count);
  hollow, training device-hours only; both measured under the same budget on the same device
  (:mod:`bench.common.timing`, :mod:`bench.report.table`), so MetaOptNet sits at 1x. The paper's own Table 4
  point (mini-ImageNet 5-way 5-shot: 85.6 / 3.7 GPU-hours, from
  ``bench/reference/paper.csv``) is a black circle in the matching panel.
* :func:`accuracy_vs_device_hours`: accuracy against the (run) device-hours themselves, with
  bars over seeds, needing no MetaOptNet run; GPU-hours and CPU-hours get separate panels
  (they are not comparable).

Legend names are short (the method, lettered where one method has several rows); the
footnote says what each stands for. ``*_figure`` functions return the
:class:`matplotlib.figure.Figure` (Agg, no pyplot: no global backend switch); ``figure2`` and
``accuracy_vs_device_hours`` write it atomically (:mod:`bench.report.figure_kit`) and return the
path, or None with a message on stderr when there is nothing to draw.
"""
from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.report.figure_kit import (finish, grid, log_axis, padded_range, save_png, short_names,
                              style_map, unique_handles)
from bench.reference import REFERENCE_CSV
from bench.report.cost_notes import CLOCK_NOTES, efficiency_reference
from datasets import by_benchmark


def no_reference() -> str:
    """Why Figure 2 is missing when the reference method has not run."""
    return f"no {efficiency_reference().display} run to compare with"

_PANEL_KEYS = ["dataset", "ways", "shots"]
_DETAILS = (("backbone", "backbone"), ("budget", "budget"), ("variant", "settings"),
            ("device", "device"))


def _warn(message: str) -> None:
    print(f"{message}", file=sys.stderr)


def legend_names(rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Short legend names (the method, lettered where one method has several rows that
    differ) and the footnotes that say what each name stands for (:func:`short_names`)."""
    entries = []
    for row in rows.itertuples(index=False):
        device = str(getattr(row, "device", "") or "")
        count = int(getattr(row, "device_count", 1) or 1)
        details = [(label, str(getattr(row, field, "") or "")) for field, label in _DETAILS]
        details[-1] = ("device", device + (f" x{count}" if count > 1 else ""))
        entries.append((str(row.method), details))
    return short_names(entries)


def _panels(frame: pd.DataFrame, keys: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    return [(key if isinstance(key, tuple) else (key,), group)
            for key, group in frame.groupby(keys, sort=True)]


def paper_points(reference_csv: Path = REFERENCE_CSV) -> pd.DataFrame:
    """The paper's Table 4 as Figure 2 points: method, dataset, ways, shots, accuracy and
    speed-up relative to the reference method (MetaOptNet: 85.6 / 3.7 GPU-hours for MTL)."""
    columns = ["method", "dataset", "ways", "shots", "accuracy", "speedup"]
    if not Path(reference_csv).exists():
        return pd.DataFrame(columns=columns)
    cells: dict[tuple, dict[str, float]] = {}
    to_ours = by_benchmark()  # the paper's dataset names -> ours
    with open(reference_csv, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["table"] != "4" or row["dataset"] not in to_ours:
                continue
            key = (row["method"], to_ours[row["dataset"]], int(row["ways"]),
                   int(row["shots"]))
            cells.setdefault(key, {})[row["metric"]] = float(row["value"])
    reference, rows = efficiency_reference(), []
    for (method, dataset, ways, shots), metrics in cells.items():
        ref = cells.get((reference.display, dataset, ways, shots), {}).get("gpu_hours")
        hours, acc = metrics.get("gpu_hours"), metrics.get("test_accuracy_pct")
        if ref is None or hours is None or acc is None or hours <= 0:
            continue
        rows.append([method, dataset, ways, shots, acc, ref / hours])
    return pd.DataFrame(rows, columns=columns)


def figure2(efficiency: pd.DataFrame, out_png: Path,
            reference_csv: Path = REFERENCE_CSV,
            warn: Callable[[str], None] = _warn) -> Path | None:
    """Draw :func:`figure2_figure` into ``out_png``; returns the path, or None (and says why
    through ``warn``) when no row has a speed-up."""
    figure = figure2_figure(efficiency, reference_csv, warn)
    return None if figure is None else save_png(figure, out_png)


def figure2_figure(efficiency: pd.DataFrame, reference_csv: Path = REFERENCE_CSV,
                   warn: Callable[[str], None] = _warn) -> Figure | None:
    """Accuracy (unified protocol) against speed-up relative to MetaOptNet: Figure 2's shape.

    ``efficiency`` is :func:`bench.report.table.efficiency_rows`' frame. One panel per dataset, ways
    and shots that has a MetaOptNet row (speed-ups are only defined there). Each row is drawn
    twice on the log x axis: filled at its run device-hours speed-up (training plus
    validation, what the paper's GPU-hours count) and hollow at its training-only speed-up,
    joined by a thin line; vertical bars are the accuracy's 95% CI, and the y range is chosen
    from those CIs. MetaOptNet's accuracy is dashed, 1x dotted. Legend names are short; what
    each stands for (backbone, budget, settings, device) is in the footnote. None (said
    through ``warn``) when no row has a speed-up.
    """
    if efficiency.empty:
        warn(f"figure 2 not drawn: no finished results ({no_reference()})")
        return None
    reference = efficiency_reference()
    has_reference = bool((efficiency["method"] == reference.display).any())
    speedup = efficiency[reference.speedup_column]
    rows = efficiency[speedup.notna() & (speedup > 0)].reset_index(drop=True)
    if not has_reference or rows.empty:
        cells = sorted({f"{d} {w}-way {s}-shot" for d, w, s in
                        zip(efficiency["dataset"], efficiency["ways"], efficiency["shots"])})
        warn(f"figure 2 not drawn: {no_reference()} (results for {', '.join(cells)}; run "
             f"`python -m bench run --methods {reference.name} ...` with the same dataset, "
             "shots and budget)")
        return None
    paper = paper_points(reference_csv)
    names, notes = legend_names(rows)
    rows = rows.assign(legend_name=names)
    styles = style_map(names)
    panels = _panels(rows, _PANEL_KEYS)
    figure, axes = grid(len(panels))
    for axis, ((dataset, ways, shots), group) in zip(axes, panels):
        _draw_figure2_panel(axis, group, styles, paper, dataset, ways, shots)
        axis.set_title(f"{dataset} {ways}-way {shots}-shot", fontsize=10)
    handles, labels = unique_handles(axes)
    handles += [Line2D([], [], color="0.3", marker="o", linestyle="none"),
                Line2D([], [], color="0.3", marker="o", markerfacecolor="none",
                       linestyle="none")]
    labels += ["filled: run device-hours (training + validation)",
               "hollow: training device-hours only"]
    title = (f"Test accuracy against speed-up relative to {reference.display} "
             f"({reference.display}'s device-hours / the method's)\n"
             "filled: run device-hours, as the paper's Figure 2 counts GPU-hours; "
             "hollow: training steps only")
    drawn = {(d, w, s) for (d, w, s), _ in panels}
    notes = notes + [
        "Bars: 95% CI of the accuracy (over seeds where there are two or more, else over the "
        f"test episodes of one seed). Each speed-up is against {reference.display} in the "
        "same panel with the same budget, sweep settings, device and device count."
        + (" Black circles: the paper's Table 4 (4x V100 GPU-hours, no CI)."
           if any(key in drawn for key in zip(paper["dataset"], paper["ways"], paper["shots"]))
           else "")]
    return finish(figure, axes, title, notes, (handles, labels), columns=4)


def _draw_figure2_panel(axis: Any, group: pd.DataFrame, styles: dict[str, dict],
                        paper: pd.DataFrame, dataset: str, ways: int, shots: int) -> None:
    reference = efficiency_reference()
    run, train = reference.speedup("run"), reference.speedup("train")
    xs, ys = [], []
    for row in group.itertuples(index=False):
        style = styles[row.legend_name]
        x_run, x_train = float(getattr(row, run)), float(getattr(row, train))
        y, ci = float(row.accuracy_unified), _ci(row)
        axis.errorbar([x_run], [y], yerr=None if math.isnan(ci) else [[ci], [ci]],
                      color=style["color"], marker=style["marker"], markersize=7, capsize=3,
                      linestyle="none", label=row.legend_name, zorder=3)
        xs.append(x_run)
        if math.isfinite(x_train) and x_train > 0:
            axis.plot([x_train], [y], linestyle="none", marker=style["marker"], markersize=7,
                      markerfacecolor="none", color=style["color"], zorder=3)
            axis.plot([x_train, x_run], [y, y], color=style["color"], linewidth=0.8,
                      alpha=0.6, zorder=2)
            xs.append(x_train)
        axis.annotate(f"{x_run:.1f}x" + (f" (training {x_train:.1f}x)"
                                         if math.isfinite(x_train) else ""),
                      (x_run, y), textcoords="offset points", xytext=(6, 4), fontsize=7)
        ys += [y - ci, y + ci] if not math.isnan(ci) else [y]
    ref = group[group["method"] == reference.display]
    if not ref.empty:
        axis.axhline(float(ref["accuracy_unified"].iloc[0]), color="0.5", linestyle="--",
                     linewidth=0.8)
    axis.axvline(1.0, color="0.5", linestyle=":", linewidth=0.8)
    here = paper[(paper["dataset"] == dataset) & (paper["ways"] == ways)
                 & (paper["shots"] == shots)]
    for row in here.itertuples(index=False):
        axis.scatter([row.speedup], [row.accuracy], s=60, facecolors="none", edgecolors="k",
                     marker="o", zorder=2)
        axis.annotate(f"{row.method} (paper)", (row.speedup, row.accuracy),
                      textcoords="offset points", xytext=(5, -10), fontsize=7)
        xs.append(float(row.speedup))
        ys.append(float(row.accuracy))
    lo, hi = min([*xs, 1.0]), max([*xs, 1.0])
    log_axis(axis, lo / 1.5, hi * 1.5, "{:g}x")
    axis.set_ylim(*padded_range(ys, least=1.0))
    axis.set_xlabel(f"speed-up vs {reference.display} ({group['unit'].iloc[0]}, log scale)")
    axis.set_ylabel("test accuracy, unified protocol (%)")
    axis.grid(alpha=0.3, which="major")


def _ci(row: Any) -> float:
    value = getattr(row, "accuracy_unified_ci95", float("nan"))
    return float(value) if value is not None else float("nan")


CLOCK_LABELS = {"train": "training", "run": "run (training + validation)"}


def accuracy_vs_device_hours(efficiency: pd.DataFrame, out_png: Path,
                             warn: Callable[[str], None] = _warn, clock: str = "run"
                             ) -> Path | None:
    """Draw :func:`device_hours_figure` into ``out_png``; returns the path, or None when the
    frame has no row with device-hours."""
    figure = device_hours_figure(efficiency, warn, clock)
    return None if figure is None else save_png(figure, out_png)


def device_hours_figure(efficiency: pd.DataFrame, warn: Callable[[str], None] = _warn,
                        clock: str = "run") -> Figure | None:
    """Accuracy (unified protocol) against measured device-hours (log scale) of ``clock``:
    ``"run"`` (training plus validation, what the paper's GPU-hours count; the default) or
    ``"train"`` (the timing rule's training steps).

    One panel per dataset, ways, shots and unit, so CPU-hours and GPU-hours never share an
    axis; needs no MetaOptNet run. Where a row has several seeds, bars show the accuracy's 95%
    CI and one standard deviation of the device-hours over its seeds (one seed: the CI over
    its test episodes, no horizontal bar). None when the frame has no device-hours.
    """
    column = f"{clock}_device_hours"
    if column not in efficiency.columns:
        raise ValueError(f"clock must be train or run, got {clock!r}")
    rows = efficiency[efficiency[column].notna() & (efficiency[column] > 0)] \
        if not efficiency.empty else efficiency
    if rows.empty:
        warn("device-hours plot not drawn: no finished results with measured device-hours")
        return None
    rows = rows.reset_index(drop=True)
    names, notes = legend_names(rows)
    rows = rows.assign(legend_name=names)
    styles = style_map(names)
    panels = _panels(rows, _PANEL_KEYS + ["unit"])
    figure, axes = grid(len(panels))
    spread = f"{column}_sd"
    for axis, ((dataset, ways, shots, unit), group) in zip(axes, panels):
        xs, ys = [], []
        for row in group.itertuples(index=False):
            x, y, ci = float(getattr(row, column)), float(row.accuracy_unified), _ci(row)
            sd = float(getattr(row, spread, float("nan")))
            xerr = [[min(sd, 0.5 * x)], [sd]] if row.seeds > 1 and math.isfinite(sd) else None
            style = styles[row.legend_name]
            axis.errorbar([x], [y], xerr=xerr, yerr=None if math.isnan(ci) else [[ci], [ci]],
                          color=style["color"], marker=style["marker"], markersize=7, capsize=3,
                          linestyle="none", label=row.legend_name, zorder=3)
            xs += [x - (xerr[0][0] if xerr else 0.0), x + (xerr[1][0] if xerr else 0.0)]
            ys += [y - ci, y + ci] if not math.isnan(ci) else [y]
        log_axis(axis, min(xs) / 1.6, max(xs) * 1.6)
        axis.set_ylim(*padded_range(ys, least=1.0))
        axis.set_xlabel(f"{CLOCK_LABELS[clock]} {unit} per run (log scale)")
        axis.set_ylabel("test accuracy, unified protocol (%)")
        axis.set_title(f"{dataset} {ways}-way {shots}-shot, {unit}", fontsize=10)
        axis.grid(alpha=0.3, which="major")
    clock_note = CLOCK_NOTES[clock]
    notes = notes + [f"x: {clock_note} (mean over seeds; bars: one standard deviation over "
                     "seeds, shown where a row has several). y: mean test accuracy; bars: its "
                     "95% CI (over seeds where there are two or more, else over the test "
                     "episodes of one seed)."]
    return finish(figure, axes, f"Test accuracy against {CLOCK_LABELS[clock]} device-hours",
                  notes)
