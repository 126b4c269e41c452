"""Efficiency figures of ``bench table``, drawn from :func:`bench.table.efficiency_rows`.

* :func:`figure2`: the shape of Figure 2 of Wang, Zhao & Li (ICML 2021): test accuracy against
  the training speed-up relative to MetaOptNet-SVM (Lee et al., CVPR 2019), one point per
  efficiency row, one panel per dataset, ways and shots. Speed-ups compare run device-hours
  (training plus validation, what the paper's GPU-hours count) measured under the same budget
  on the same device (:mod:`bench.timing`, :mod:`bench.table`), so MetaOptNet sits at 1x. The paper's own Table 4 point (mini-ImageNet 5-way 5-shot: 85.6 / 3.7 GPU-hours,
  from ``bench/reference/paper.csv``) is drawn hollow in the matching panel.
* :func:`accuracy_vs_device_hours`: accuracy against the (run) device-hours themselves,
  needing no MetaOptNet run; GPU-hours and CPU-hours get separate panels (they are not
  comparable).

Both write PNGs atomically (:mod:`core.atomic`) with
matplotlib's Agg renderer through :class:`matplotlib.figure.Figure` (no pyplot, so no global
backend switch) and return the path, or None with a message on stderr when there is nothing
to draw.
"""
from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from core.atomic import atomic_file
from bench.reference import REFERENCE_CSV
from bench.table import efficiency_reference
from datasets import by_benchmark


def no_reference() -> str:
    """Why Figure 2 is missing when the reference method has not run."""
    return f"no {efficiency_reference().display} run to compare with"

_MARKERS = "osD^vP*Xh<>p"
_PANEL_KEYS = ["dataset", "ways", "shots"]


def _warn(message: str) -> None:
    print(f"{message}", file=sys.stderr)


def _save_atomic(figure: Figure, path: Path) -> Path:
    """Render ``figure`` to ``path`` atomically (:mod:`core.atomic`)."""
    path = Path(path)
    with atomic_file(path) as handle:
        figure.savefig(handle, dpi=130, format="png")
    return path


def _label(row: Any) -> str:
    variant = getattr(row, "variant", "")
    device = getattr(row, "device", "")
    return (f"{row.method} ({row.backbone}, {row.budget}"
            + (f", {variant}" if variant else "") + (f"; {device}" if device else "") + ")")


def _style_map(labels: Iterable[str]) -> dict[str, dict[str, Any]]:
    """One colour and marker per label, stable across panels."""
    return {label: {"color": f"C{i % 10}", "marker": _MARKERS[i % len(_MARKERS)]}
            for i, label in enumerate(sorted(set(labels), key=str.lower))}


def _panels(frame: pd.DataFrame, keys: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    return [(key if isinstance(key, tuple) else (key,), group)
            for key, group in frame.groupby(keys, sort=True)]


def _grid(n_panels: int, width: float = 5.2, height: float = 4.2) -> tuple[Figure, list]:
    cols = min(n_panels, 3)
    rows = math.ceil(n_panels / cols)
    figure = Figure(figsize=(width * cols, height * rows + 0.9))
    axes = [figure.add_subplot(rows, cols, i + 1) for i in range(n_panels)]
    return figure, axes


def _legend_and_save(figure: Figure, axes: list, title: str, path: Path) -> Path:
    handles, labels = [], []
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8)
    figure.suptitle(title, fontsize=10)
    rows = math.ceil(len(labels) / 3)
    height = figure.get_figheight()
    bottom = min(0.4, (0.25 + 0.22 * rows) / height)
    figure.tight_layout(rect=(0, bottom, 1, 1))  # leaves room for the suptitle itself
    return _save_atomic(figure, path)


def _log_axis(axis: Any, fmt: str) -> None:
    """Log-scale x axis with plain tick labels at 1, 2 and 5 times powers of ten."""
    axis.set_xscale("log")
    axis.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: fmt.format(value)))
    axis.xaxis.set_minor_formatter(NullFormatter())


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
    """Accuracy (unified protocol) against speed-up relative to MetaOptNet: Figure 2's shape.

    ``efficiency`` is :func:`bench.table.efficiency_rows`' frame. One panel per dataset, ways
    and shots that has a MetaOptNet row (speed-ups are only defined there); x is the speed-up
    (log scale, MetaOptNet at 1x, dotted), y the mean test accuracy, with MetaOptNet's accuracy
    dashed. Returns ``out_png``, or None (and says why through ``warn``) when no row has a
    speed-up.
    """
    if efficiency.empty:
        warn(f"figure 2 not drawn: no finished results ({no_reference()})")
        return None
    reference = efficiency_reference()
    has_reference = bool((efficiency["method"] == reference.display).any())
    speedup = efficiency[reference.speedup_column]
    rows = efficiency[speedup.notna() & (speedup > 0)]
    if not has_reference or rows.empty:
        cells = sorted({f"{d} {w}-way {s}-shot" for d, w, s in
                        zip(efficiency["dataset"], efficiency["ways"], efficiency["shots"])})
        warn(f"figure 2 not drawn: {no_reference()} (results for {', '.join(cells)}; run "
             f"`python -m bench run --methods {reference.name} ...` with the same dataset, "
             "shots and budget)")
        return None
    paper = paper_points(reference_csv)
    styles = _style_map(_label(r) for r in rows.itertuples(index=False))
    panels = _panels(rows, _PANEL_KEYS)
    figure, axes = _grid(len(panels))
    for axis, ((dataset, ways, shots), group) in zip(axes, panels):
        _draw_figure2_panel(axis, group, styles)
        _draw_paper_points(axis, paper, dataset, ways, shots)
        axis.set_title(f"{dataset} {ways}-way {shots}-shot", fontsize=10)
    title = (f"Accuracy vs training speed-up relative to {reference.display}\n"
             "(shape of Wang, Zhao & Li 2021, Figure 2; same budget and device unit)")
    return _legend_and_save(figure, axes, title, out_png)


def _draw_figure2_panel(axis: Any, group: pd.DataFrame, styles: dict[str, dict]) -> None:
    reference = efficiency_reference()
    column = reference.speedup_column
    for row, speedup in zip(group.itertuples(index=False), group[column]):
        label = _label(row)
        axis.scatter([speedup], [row.accuracy_unified], s=45, label=label, zorder=3,
                     **styles[label])
        axis.annotate(f"{speedup:.1f}x", (speedup, row.accuracy_unified),
                      textcoords="offset points", xytext=(5, 4), fontsize=7)
    ref = group[group["method"] == reference.display]
    if not ref.empty:
        axis.axhline(float(ref["accuracy_unified"].iloc[0]), color="0.5", linestyle="--",
                     linewidth=0.8)
    axis.axvline(1.0, color="0.5", linestyle=":", linewidth=0.8)
    axis.margins(y=0.15)
    _log_axis(axis, "{:g}x")
    lo = min(0.8, float(group[column].min()) / 1.5)
    hi = max(1.25, float(group[column].max()) * 1.5)
    axis.set_xlim(lo, hi)
    axis.set_xlabel(f"speed-up vs {reference.display} ({group['unit'].iloc[0]})")
    axis.set_ylabel("test accuracy, unified protocol (%)")
    axis.grid(alpha=0.3, which="both")


def _draw_paper_points(axis: Any, paper: pd.DataFrame, dataset: str, ways: int,
                       shots: int) -> None:
    here = paper[(paper["dataset"] == dataset) & (paper["ways"] == ways)
                 & (paper["shots"] == shots)]
    for row in here.itertuples(index=False):
        axis.scatter([row.speedup], [row.accuracy], s=60, facecolors="none", edgecolors="k",
                     marker="o", zorder=2, label="paper, Table 4 (4x V100 GPU-hours)")
        axis.annotate(f"{row.method} (paper)", (row.speedup, row.accuracy),
                      textcoords="offset points", xytext=(5, -10), fontsize=7)
    if not here.empty:
        left, right = axis.get_xlim()
        axis.set_xlim(min(left, float(here["speedup"].min()) / 1.5),
                      max(right, float(here["speedup"].max()) * 1.5))


CLOCK_LABELS = {"train": "training", "run": "run (training + validation)"}


def accuracy_vs_device_hours(efficiency: pd.DataFrame, out_png: Path,
                             warn: Callable[[str], None] = _warn, clock: str = "run"
                             ) -> Path | None:
    """Accuracy (unified protocol) against measured device-hours (log scale) of ``clock``:
    ``"run"`` (training plus validation, what the paper's GPU-hours count; the default) or
    ``"train"`` (the timing rule's training steps).

    One panel per dataset, ways, shots and unit, so CPU-hours and GPU-hours never share an
    axis; needs no MetaOptNet run. Returns ``out_png``, or None when the frame is empty.
    """
    column = f"{clock}_device_hours"
    if column not in efficiency.columns:
        raise ValueError(f"clock must be train or run, got {clock!r}")
    rows = efficiency[efficiency[column].notna() & (efficiency[column] > 0)] \
        if not efficiency.empty else efficiency
    if rows.empty:
        warn("device-hours plot not drawn: no finished results with measured device-hours")
        return None
    styles = _style_map(_label(r) for r in rows.itertuples(index=False))
    panels = _panels(rows, _PANEL_KEYS + ["unit"])
    figure, axes = _grid(len(panels))
    for axis, ((dataset, ways, shots, unit), group) in zip(axes, panels):
        for row in group.itertuples(index=False):
            label = _label(row)
            axis.scatter([getattr(row, column)], [row.accuracy_unified], s=45, label=label,
                         zorder=3, **styles[label])
        axis.margins(y=0.15)
        _log_axis(axis, "{:g}")
        lo, hi = float(group[column].min()), float(group[column].max())
        axis.set_xlim(lo / 2.0, hi * 2.0)
        axis.set_xlabel(f"{CLOCK_LABELS[clock]} {unit} (timing rule of bench.timing)")
        axis.set_ylabel("test accuracy, unified protocol (%)")
        axis.set_title(f"{dataset} {ways}-way {shots}-shot, {unit}", fontsize=10)
        axis.grid(alpha=0.3, which="both")
    return _legend_and_save(figure, axes, f"Accuracy vs {CLOCK_LABELS[clock]} device-hours",
                            out_png)
