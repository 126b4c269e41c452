"""``bench table``'s answer to the paper's question: paired comparisons against a baseline and
time to accuracy, written next to the accuracy and efficiency tables.

Files (into the table's output folder):

- ``comparison.csv`` / ``comparison.md``: every method against the baseline on identical test
  episodes, with a TOST verdict against an equivalence margin and, next to it, the verdict
  after Holm's correction over each cell's comparisons with the baseline (:mod:`bench.report.compare`);
- ``time_to_accuracy.csv`` / ``time_to_accuracy.md``: the device-hours at which each method's
  validation accuracy first reaches each gradient-based meta-learning method's best, and the
  speed-ups, on both cost clocks (training, and training + validation: what the paper's
  GPU-hours count) (:mod:`bench.report.cost_curves`); with ``--test-every`` curves, the same on the
  reduced test episodes too;
- ``learning_curves_<dataset>_<ways>w<shots>s.png``: validation accuracy against run
  device-hours (log x), one line per method and seed (:mod:`bench.report.curve_plots`); a ``_test``
  figure too where runs recorded test accuracy along the way.

What the harness needs to know about methods comes from their classes: the default baseline is
the method that declares ``comparison_baseline`` (the paper's MTL), the time-to-accuracy
targets are the gradient-based meta-learning methods: those whose class declares a cell of the
paper's Table 1 (``table1``, :mod:`methods.taxonomy`).
Results without a learning curve (files written before curves were recorded) are left out of
time to accuracy and the figures, with a note; they still enter the paired comparisons.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from bench.report.compare import DEFAULT_MARGIN, comparison_csv, comparison_markdown, \
    paired_comparisons
from bench.report.cost_curves import CLOCKS, time_to_accuracy, time_to_accuracy_csv, \
    time_to_accuracy_footer, time_to_accuracy_markdown
from bench.report.curve_plots import learning_curve_plan, no_curves_warning
from bench.report.figure_kit import save_png
from bench.report.method_names import display_name
from bench.report.output import OutputFile, Section
from bench.report.plan_vs_measured import plan_vs_measured, plan_vs_measured_markdown
from bench.store.learning_curves import CURVE_KEY
from core.atomic import write_text_atomic
from core.registry import UnknownNameError
from methods import METHODS, comparison_baseline
from methods.taxonomy import Table1Cell

OUTPUTS = ("comparison.csv", "comparison.md", "time_to_accuracy.csv", "time_to_accuracy.md")
#: The clock the learning-curve figures are drawn on (the paper's GPU-hours: whole loops).
FIGURE_CLOCK = "run"
_CLOCK_TITLES = {"train": "training device-hours", "run": "run device-hours (training + "
                 "validation, as the paper's GPU-hours)"}
_METRIC_TITLES = {"val_accuracy": "validation accuracy",
                  "test_accuracy": "test accuracy on the reduced --test-every episodes"}


@dataclass(frozen=True)
class PairedOptions:
    """``bench table --baseline NAME --margin POINTS``."""

    baseline: str | None = None  # a method's name or alias; None: the declared baseline
    margin: float = DEFAULT_MARGIN  # equivalence margin, percentage points


def resolve_baseline(name: str | None, results: Sequence[Mapping[str, Any]] = ()) -> str:
    """The baseline's registry name: the declared one when ``name`` is None; a method named in
    ``results`` (a plugin no longer importable keeps its name); else the registry's canonical
    name for ``name`` or its alias (:class:`core.registry.UnknownNameError` listing the valid
    names otherwise)."""
    if name is None:
        return comparison_baseline().name
    recorded = {str(r["config"]["method"]) for r in results}
    if name in recorded:
        return name
    return METHODS.canonical(name)


def is_gradient_based(method: str) -> bool:
    """The method's class declares a cell of the paper's Table 1 (an inner loop: gradient-based
    meta-learning, :mod:`methods.taxonomy`); False for a method that is not registered."""
    try:
        return isinstance(getattr(METHODS.get(method), "table1", None), Table1Cell)
    except UnknownNameError:
        return False


def _display(results: Sequence[Mapping[str, Any]]) -> Callable[[str], str]:
    names = {str(r["config"]["method"]): display_name(r["config"]) for r in results}
    return lambda method: names.get(method, method)


def has_curve(run: Mapping[str, Any], metric: str = "val_accuracy") -> bool:
    return any(metric in point for point in run.get(CURVE_KEY) or [])


def _without_curves(results: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted(str(r.get("key")) for r in results
                  if r.get("status") == "ok" and not has_curve(r))


def curve_note(missing: list[str], finished: int) -> str:
    """Which finished runs were left out of time to accuracy (no learning curve)."""
    if not missing:
        return ""
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return (f"{len(missing)} of {finished} finished runs have no learning curve (written before "
            "curves were recorded, or resumed from a checkpoint without one) and are left out "
            f"of time to accuracy and the figures: {shown}.")


@dataclass(frozen=True)
class PairedTables:
    """The paired tables of a set of results, built: the comparison frame (with the baseline
    and the names it shows methods by) and the Markdown and files of every table and figure."""

    comparison: pd.DataFrame
    baseline: str  # the baseline's registry name (:func:`resolve_baseline`)
    display: Callable[[str], str]  # registry name -> the name the tables show
    section: Section


def build_paired_tables(results: Sequence[Mapping[str, Any]],
                        options: PairedOptions | None = None,
                        plan: Mapping[str, Mapping[str, Any]] | None = None) -> PairedTables:
    """:data:`OUTPUTS`, the learning-curve figures and, where ``plan`` (the results folder's
    saved ``bench plan``, :func:`bench.store.plan_file.read_plan`) has finished runs,
    ``plan_vs_measured.{csv,md}``, with the Markdown ``bench table`` prints: the tables, their
    footers and notes (without the files written: the same less the figures' names and
    notes)."""
    options = options or PairedOptions()
    files: list[OutputFile] = []

    def put(name: str, text: str) -> None:
        files.append(OutputFile(name, lambda path: write_text_atomic(path, text)))
    display = _display(results)  # imports the results' plugin methods (method_source)
    baseline = resolve_baseline(options.baseline, results)

    comparison = paired_comparisons(results, baseline, options.margin, display)
    put("comparison.csv", comparison_csv(comparison))
    comparison_md = ("## Paired comparison with " + display(baseline) + "\n\n"
                     + comparison_markdown(comparison, options.margin))
    put("comparison.md", comparison_md)

    missing = _without_curves(results)
    finished = sum(1 for r in results if r.get("status") == "ok")
    with_curves = [r for r in results if r.get("status") != "ok" or has_curve(r)]
    metrics = ["val_accuracy"] + (["test_accuracy"] if any(
        has_curve(r, "test_accuracy") for r in with_curves) else [])
    frames, sections = [], []
    for metric in metrics:
        for clock in CLOCKS:
            frame = time_to_accuracy(with_curves, is_gradient_based, clock, metric, display)
            frames.append(frame)
            table = time_to_accuracy_markdown(frame, clock, metric).removesuffix(
                "\n" + time_to_accuracy_footer(clock, metric) + "\n")
            sections.append(f"### {_METRIC_TITLES[metric].capitalize()}, "
                            f"{_CLOCK_TITLES[clock]}\n\n" + table)
        sections.append(time_to_accuracy_footer("both", metric) + "\n")  # one per metric
    notes = [curve_note(missing, finished)] if missing else []
    figure_notes = list(notes)  # the notes when the figures are drawn
    figures: list[str] = []
    for metric in metrics:
        planned = learning_curve_plan(with_curves, is_gradient_based, FIGURE_CLOCK, metric,
                                      display)
        if not planned:
            figure_notes.append(no_curves_warning(metric))
        for name, draw in planned:
            files.append(OutputFile(name, lambda path, draw=draw: save_png(draw(), path)))
            figures.append(name)
    if figures:
        figure_notes.append("Figures: " + ", ".join(figures) + f" ({metric_axis()}).")
    tta = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    put("time_to_accuracy.csv", time_to_accuracy_csv(tta))
    heading = ("## Time to accuracy (targets: the gradient-based meta-learning methods)\n\n"
               + "\n".join(sections))
    tta_md = heading + "".join(f"\n{note}\n" for note in figure_notes)
    put("time_to_accuracy.md", tta_md)
    plan_md, plan_files = _plan_vs_measured(results, plan or {})
    files += plan_files
    unwritten = heading + "".join(f"\n{note}\n" for note in notes)
    return PairedTables(comparison, baseline, display, Section(
        comparison_md + "\n" + tta_md + plan_md, tuple(files),
        comparison_md + "\n" + unwritten + plan_md))


def _plan_vs_measured(results: Sequence[Mapping[str, Any]],
                      plan: Mapping[str, Mapping[str, Any]]) -> tuple[str, list[OutputFile]]:
    """The Markdown and files of ``plan_vs_measured.{csv,md}`` where ``plan`` (a saved plan,
    :mod:`bench.store.plan_file`) has finished runs; ("", []) without."""
    frame = plan_vs_measured(results, plan) if plan else None
    if frame is None or frame.empty:
        return "", []
    markdown = "## Projected (bench plan) vs measured device-hours\n\n" \
        + plan_vs_measured_markdown(frame)
    csv = frame.to_csv(index=False, float_format="%.6g")
    return "\n" + markdown, [
        OutputFile("plan_vs_measured.csv", lambda path: write_text_atomic(path, csv)),
        OutputFile("plan_vs_measured.md", lambda path: write_text_atomic(path, markdown))]


def metric_axis() -> str:
    """What the learning-curve figures' x axis counts."""
    return f"x: {_CLOCK_TITLES[FIGURE_CLOCK]}, log scale"
