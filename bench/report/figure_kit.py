"""What every figure of ``bench table`` and ``bench theory`` shares: log axes whose tick
labels never collide, short legend names with the details in a footnote, the legend, title and
footnote laid out around the panels, atomic PNG writing, and a check that no two tick labels
of a drawn figure overlap (the renderer's own text extents).

Figures are :class:`matplotlib.figure.Figure` objects drawn with the Agg renderer (no pyplot,
so no global backend switch); :func:`save_png` writes them atomically (:mod:`core.atomic`).
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any, Hashable, Iterable, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

from core.atomic import atomic_file

MARKERS = "osD^vP*Xh<>p"
DPI = 130
MIN_WIDTH_IN = 8.0  # room for a legend row and a title line beside a single panel
FOOTNOTE_SIZE = 7
_LEGEND_ROW_IN = 0.22  # inches per legend row at font size 8
_FOOTNOTE_ROW_IN = 0.14  # inches per footnote line at font size 7
_TITLE_ROW_IN = 0.24  # inches per line of the title


def style_map(labels: Iterable[str]) -> dict[str, dict[str, Any]]:
    """One colour and marker per label, stable across panels (labels sorted, case-blind)."""
    return {label: {"color": f"C{i % 10}", "marker": MARKERS[i % len(MARKERS)]}
            for i, label in enumerate(sorted(set(labels), key=str.lower))}


def grid(n_panels: int, width: float = 5.2, height: float = 4.2) -> tuple[Figure, list]:
    """A figure of ``n_panels`` panels, at most three a row, each ``width`` x ``height``
    inches (the legend, title and footnote get room of their own in :func:`finish`)."""
    cols = min(max(n_panels, 1), 3)
    rows = math.ceil(max(n_panels, 1) / cols)
    figure = Figure(figsize=(max(width * cols, MIN_WIDTH_IN), height * rows))
    FigureCanvasAgg(figure)
    axes = [figure.add_subplot(rows, cols, i + 1) for i in range(n_panels)]
    return figure, axes


def _decade_ticks(lo: float, hi: float, subs: Sequence[float], every: int = 1) -> list[float]:
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    return [float(f"{s * 10.0 ** k:.12g}") for k in range(first, last + 1)
            if (k - first) % every == 0 for s in subs if lo <= s * 10.0 ** k <= hi]


def log_ticks(lo: float, hi: float, max_ticks: int = 6) -> list[float]:
    """Tick positions for a log axis from ``lo`` to ``hi``: powers of ten, or 1-3, 1-2-5 or
    1..9 times them, whichever gives the most ticks (at most ``max_ticks``) with no two closer
    than a seventh of the axis; inside less than such a step, three points evenly spaced on
    the log scale, rounded to the fewest significant digits (two or more) that keep
    them apart."""
    if not (0 < lo < hi) or not math.isfinite(hi):
        raise ValueError(f"a log axis needs 0 < lo < hi, got {lo!r}, {hi!r}")
    span = math.log10(hi / lo)
    min_gap = span / 7.0
    decades = max(1, math.ceil(span / max_ticks))
    candidates = [_decade_ticks(lo, hi, (1.0,), decades)]
    if decades == 1:
        candidates += [_decade_ticks(lo, hi, subs) for subs in
                       ((1.0, 3.0), (1.0, 2.0, 5.0), (1.0, 2.0, 3.0, 5.0, 7.0),
                        tuple(float(s) for s in range(1, 10)))]
    best: list[float] = []
    for ticks in candidates:
        gaps = [math.log10(b / a) for a, b in zip(ticks, ticks[1:])]
        if len(ticks) <= max_ticks and all(g >= min_gap for g in gaps) and len(ticks) > len(best):
            best = ticks
        if len(best) >= 3:
            break
    if len(best) >= 2:
        return best
    points = [lo * (hi / lo) ** f for f in (0.15, 0.5, 0.85)]
    for digits in range(2, 13):
        rounded = sorted({float(f"{p:.{digits}g}") for p in points})
        if len(rounded) == 3 and lo <= rounded[0] and rounded[-1] <= hi:
            return rounded
    return points


def log_axis(axis: Any, lo: float, hi: float, fmt: str = "{:g}", which: str = "x") -> None:
    """A log-scale ``which`` axis from ``lo`` to ``hi`` with :func:`log_ticks` labelled by
    ``fmt`` and unlabelled minor ticks."""
    ax = axis.xaxis if which == "x" else axis.yaxis
    (axis.set_xscale if which == "x" else axis.set_yscale)("log")
    (axis.set_xlim if which == "x" else axis.set_ylim)(lo, hi)
    ax.set_major_locator(FixedLocator(log_ticks(lo, hi)))
    ax.set_major_formatter(FuncFormatter(lambda value, _: fmt.format(value)))
    ax.set_minor_locator(NullLocator())
    ax.set_minor_formatter(NullFormatter())


def padded_range(values: Iterable[float], pad: float = 0.08, least: float = 1.0
                 ) -> tuple[float, float]:
    """``(low, high)`` around the finite ``values`` (for example means minus and plus their
    CIs), widened by ``pad`` of the span on each side and to at least ``least`` in all."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        raise ValueError("no finite value to take a range from")
    low, high = min(finite), max(finite)
    span = max(high - low, least)
    centre = (low + high) / 2.0
    return centre - span * (0.5 + pad), centre + span * (0.5 + pad)


def short_names(rows: Sequence[tuple[str, Sequence[tuple[str, str]]]]
                ) -> tuple[list[str], list[str]]:
    """Legend names and footnotes for ``rows`` of (name, details), details being (what,
    value) pairs such as ("backbone", "conv4-64").

    A detail the same in every row goes into one footnote ("All: ..."); a name whose rows
    differ in the other details gets a letter per distinct set ("MTL (a)"), each explained in
    a footnote; a name with one set keeps its bare name, its details in a footnote. Returns
    one legend name per row and the footnote lines."""
    if not rows:
        return [], []
    fields = [what for what, _ in rows[0][1]]
    values = {what: {dict(details).get(what, "") for _, details in rows} for what in fields}
    common = [what for what in fields if len(values[what]) == 1]
    varying = [what for what in fields if what not in common]

    def text(details: Sequence[tuple[str, str]], keep: Sequence[str]) -> str:
        found = dict(details)
        return "; ".join(f"{what} {found[what]}" for what in keep if found.get(what))

    sets: dict[str, list[Hashable]] = {}
    for name, details in rows:
        key = tuple(dict(details).get(what, "") for what in varying)
        if key not in sets.setdefault(name, []):
            sets[name].append(key)
    names, notes = [], []
    seen: set[str] = set()
    for name, details in rows:
        key = tuple(dict(details).get(what, "") for what in varying)
        several = len(sets[name]) > 1
        label = f"{name} ({'abcdefghijklmnopqrstuvwxyz'[sets[name].index(key) % 26]})" \
            if several else name
        names.append(label)
        detail = text(details, varying)
        if label not in seen and detail:
            notes.append(f"{label}: {detail}")
        seen.add(label)
    shared = text(rows[0][1], common)
    return names, ([f"All: {shared}"] if shared else []) + notes


def wrap_notes(notes: Sequence[str], width_in: float) -> list[str]:
    """Footnote lines wrapped to a figure ``width_in`` inches wide (font size 7)."""
    chars = max(40, int(width_in * 17))
    return [line for note in notes for line in textwrap.wrap(note, chars) or [""]]


def unique_handles(axes: Sequence[Any]) -> tuple[list, list[str]]:
    """Every axis' legend handles and labels, each label once (first seen)."""
    handles, labels = [], []
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            if label not in labels and not label.startswith("_"):
                handles.append(handle)
                labels.append(label)
    return handles, labels


def finish(figure: Figure, axes: Sequence[Any], title: str, notes: Sequence[str] = (),
           handles: tuple[list, list[str]] | None = None, columns: int = 3) -> Figure:
    """Legend (``handles``, default: every axis' labels, each once) below the panels, the
    footnote ``notes`` below it and ``title`` above, the figure made taller to hold them."""
    handles, labels = handles if handles is not None else unique_handles(axes)
    width = figure.get_figwidth()
    panels_in = figure.get_figheight()
    lines = wrap_notes(notes, width)
    legend_rows = math.ceil(len(labels) / columns) if labels else 0
    foot_in = 0.1 + _FOOTNOTE_ROW_IN * len(lines)
    legend_in = (0.15 + _LEGEND_ROW_IN * legend_rows) if labels else 0.0
    title = "\n".join(line for part in title.split("\n")
                      for line in textwrap.wrap(part, max(40, int(width * 12.5))))
    title_in = 0.15 + _TITLE_ROW_IN * (title.count("\n") + 1)
    height = panels_in + foot_in + legend_in + title_in
    figure.set_figheight(height)
    if labels:
        figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), columns),
                      fontsize=8, bbox_to_anchor=(0.5, foot_in / height), frameon=False)
    if lines:
        figure.text(0.01, 0.05 / height, "\n".join(lines), fontsize=FOOTNOTE_SIZE,
                    va="bottom", ha="left", linespacing=1.3)
    figure.suptitle(title, fontsize=10, y=1 - 0.08 / height, va="top")
    figure.tight_layout(rect=(0, (foot_in + legend_in) / height, 1, 1))  # the suptitle counts
    return figure


def save_png(figure: Figure, path: Path) -> Path:
    """Render ``figure`` to ``path`` atomically (:mod:`core.atomic`)."""
    path = Path(path)
    with atomic_file(path) as handle:
        figure.savefig(handle, dpi=DPI, format="png")
    return path


def tick_label_overlaps(figure: Figure) -> list[str]:
    """Pairs of visible tick labels of one axis of ``figure`` whose rendered boxes overlap
    (drawn at :data:`DPI`; empty: none do)."""
    if figure.canvas is None or not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    figure.set_dpi(DPI)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    found = []
    for axis in figure.axes:
        for which in (axis.xaxis, axis.yaxis):
            labels = [t for t in which.get_ticklabels(minor=False) + which.get_ticklabels(
                minor=True) if t.get_visible() and t.get_text()]
            boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
            for i, (text_a, a) in enumerate(boxes):
                for text_b, b in boxes[i + 1:]:
                    if a.overlaps(b):
                        found.append(f"{axis.get_title() or 'panel'}: {text_a!r} and {text_b!r}")
    return found
