"""``bench table --brief``: both halves of the paper's claim in a few lines each.

For every (dataset, ways, budget) of a results folder: the test accuracy of every method under
both protocols, the paired difference of every method from the comparison baseline (by default
the method that declares ``comparison_baseline``: MTL; ``--baseline``) on the same test
episodes (:mod:`bench.report.compare`), and the training cost (device-hours and its ratio to the
baseline's). ``bench table --brief`` writes the full tables first, as ``bench table`` does;
the summary ends with the paths of the files written. A pure function of the result files,
like the tables; it writes nothing itself.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from bench.report.compare import EQUIVALENT, NOT_PAIRED, paired_comparisons
from bench.common.data_split import dataset_label
from bench.report.all_tables import Tables, build_tables
from bench.report.cost_notes import efficiency_reference
from bench.report.method_names import display_name
from bench.report.paired_tables import PairedOptions
from bench.report.table import unavailable_note
from bench.store.result_set import load_result_set

TABLE_FILES = ("accuracy.csv", "accuracy.md", "efficiency.csv", "efficiency.md",
               "comparison.csv", "comparison.md", "time_to_accuracy.csv", "time_to_accuracy.md",
               "figure2.png", "device_hours.png", "l2_penalty.csv", "l2_penalty.md",
               "l2_penalty.png")
_BLOCK = ["dataset", "ways", "budget"]


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its ``method`` column naming the variant too (the tables' ``variant``
    column: settings other than the budget's) where one method ran with several settings, so
    their rows stay apart; the full tables name every variant."""
    if frame.empty or "variant" not in frame:
        return frame
    several = {m for m, group in frame.groupby("method") if group["variant"].nunique() > 1}
    frame = frame.copy()
    frame["method"] = [f"{m} ({v or 'budget defaults'})" if m in several else m
                       for m, v in zip(frame["method"], frame["variant"])]
    return frame


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned plain-text columns (the first one for names)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
            for row in [header, *rows]]


def _accuracy_lines(acc: pd.DataFrame, shots: list[int]) -> list[str]:
    one_seed = bool((acc["seeds"] == 1).all())
    ci = ("95% CI over the episodes of one seed" if one_seed
          else "95% t-interval over seeds where there are two or more")
    header = ["accuracy %"] + [f"{s}-shot {p}" for s in shots for p in ("unified", "native")]
    rows = []
    for method in sorted(acc["method"].unique(), key=str.lower):
        row = [method]
        for s in shots:
            cells = acc[(acc["method"] == method) & (acc["shots"] == s)]
            by = {p.split(" ")[0]: r for p, r in zip(cells["protocol"], cells.itertuples())}
            same = any(p.startswith("unified (") for p in cells["protocol"])
            for protocol in ("unified", "native"):
                r = by.get(protocol)
                if r is None and protocol == "native" and same:
                    row.append("= unified")
                else:
                    row.append("–" if r is None else f"{r.mean:.2f} ± {r.ci95:.2f}")
        rows.append(row)
    return [f"Test accuracy (%, ± {ci}):"] + _table(header, rows)


def _diff(row: object) -> str:
    if row.verdict == NOT_PAIRED or math.isnan(row.mean_diff):
        return f"not paired ({row.note})" if row.note else "not paired"
    verdict = "equivalent" if row.verdict == EQUIVALENT else str(row.verdict)
    holm = getattr(row, "verdict_holm", row.verdict)  # the verdict after Holm's correction
    if holm != row.verdict:
        verdict += f" (Holm: {'equivalent' if holm == EQUIVALENT else holm})"
    return f"{row.mean_diff:+.2f} [{row.ci95_low:+.2f}, {row.ci95_high:+.2f}] {verdict}"


def _paired_lines(pairs: pd.DataFrame, baseline: str, margin: float) -> list[str]:
    header = [f"vs {baseline}", "unified", "native"]
    rows = []
    for (method, shots), group in pairs.groupby(["method", "shots"], sort=False):
        by = {p.split(" ")[0]: r for p, r in zip(group["protocol"], group.itertuples())}
        unified = by.get("unified")
        both_unified = any(p.startswith("unified (") for p in group["protocol"])
        native = by.get("native")
        rows.append([f"{method} {shots}-shot", _diff(unified) if unified is not None else "–",
                     "= unified" if both_unified else
                     (_diff(native) if native is not None else "–")])
    rows.sort(key=lambda r: r[0].lower())
    return ([f"Paired difference from {baseline} on the same test episodes (method - "
             f"{baseline}, points;", f"[95% CI] and verdict at a ±{margin:g}-point margin, "
             "Holm's where it differs; comparison.md says how):"] + _table(header, rows))


def _cost_lines(cost: pd.DataFrame, shots: list[int], baseline: str) -> list[str]:
    """Training device-hours per run, each with its cost relative to ``baseline``'s (the
    method's hours / the baseline's: above 1 costs more). The full tables' speed-ups run the
    other way (the reference method's hours / the row's), and the header says so."""
    unit = "/".join(sorted(cost["unit"].unique()))
    header = ["training cost"] + [f"{s}-shot" for s in shots]
    rows = []
    for method in sorted(cost["method"].unique(), key=str.lower):
        row = [method]
        for s in shots:
            mine = cost[(cost["method"] == method) & (cost["shots"] == s)]
            base = cost[(cost["method"] == baseline) & (cost["shots"] == s)]
            if mine.empty:
                row.append("–")
                continue
            hours = float(mine["device_hours"].iloc[0])
            ratio = (f" ({hours / float(base['device_hours'].iloc[0]):.1f}x)"
                     if not base.empty and float(base["device_hours"].iloc[0]) > 0 else "")
            row.append(f"{hours:#.3g}{ratio}")
        rows.append(row)
    reference = efficiency_reference()
    return [f"Training cost ({unit} of training steps per run; (2.0x) = the method's hours / "
            f"{baseline}'s, so 2.0x costs twice as much;",
            f"efficiency.md's speed-ups run the other way: {reference.display}'s hours / the "
            "row's, on training and on run device-hours):"] + _table(header, rows)


def brief_summary(folder: Path, written_to: Path | None = None,
                  options: PairedOptions | None = None, strict: bool = True,
                  written: Sequence[Path] | None = None) -> str:
    """The summary of the results under ``folder`` (writes nothing): :func:`summarize` of
    their tables (:func:`bench.report.all_tables.build_tables`). ``options``: the paired
    tables' baseline and margin; ``strict`` False: invalid files are left out, as the tables
    leave them out; ``written_to`` and ``written`` as :func:`summarize`'s."""
    tables = build_tables(load_result_set(folder), strict=strict, paired=options)
    return summarize(tables, written_to, written)


def summarize(tables: Tables, written_to: Path | None = None,
              written: Sequence[Path] | None = None) -> str:
    """The summary of the tables already built (``bench table --brief`` writes the full
    tables first); ``written``: the files the tables wrote, which the last line lists (None
    with ``written_to``: the table files found in that folder; both None: none were
    written)."""
    results = tables.result_set.results
    baseline, margin = tables.paired.baseline, tables.options.margin
    display = (lambda n: display_name({"method": n}))
    base_name = display(baseline)
    # The comparison already built names every method as the summary does, unless its
    # baseline has no run at all (the tables then show it by its registry name).
    same = tables.paired.display(baseline) == base_name
    pairs = _labelled(tables.paired.comparison if same else
                      paired_comparisons(results, baseline, margin, display=display))
    acc, cost = _labelled(tables.main.measured), _labelled(tables.main.efficiency)
    lines: list[str] = []
    for key, block in acc.groupby(_BLOCK, sort=True):
        dataset, ways, budget = key
        shots = sorted(block["shots"].unique())
        seeds = sorted(block["seeds"].unique())
        episodes = sorted(block["episodes"].unique())
        splits = sorted({p for p in block["split"] if isinstance(p, str) and p})
        lines += ["", f"== {dataset_label(dataset, ', '.join(splits))}, {ways}-way, "
                      f"{budget} budget: "
                      f"{'/'.join(map(str, seeds))} seed(s), "
                      f"{'/'.join(map(str, episodes))} test episodes per run =="]
        lines += _accuracy_lines(block, shots)
        mine = pairs[(pairs["dataset"] == dataset) & (pairs["ways"] == ways)
                     & (pairs["budget"] == budget)] if not pairs.empty else pairs
        if not mine.empty:
            lines += [""] + _paired_lines(mine, base_name, margin)
        spend = cost[(cost["dataset"] == dataset) & (cost["ways"] == ways)
                     & (cost["budget"] == budget)]
        if not spend.empty:
            lines += [""] + _cost_lines(spend, shots, base_name)
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        lines += ["", f"{len(failed)} failed run(s): "
                      + "; ".join(f"{r['key']} ({r['error'][:80]})" for r in failed)]
    if not lines:
        lines = ["No finished results."]
    note = unavailable_note(results)
    if note:
        lines += ["", note]
    if written is not None:
        lines += ["", "Written: " + (", ".join(str(p) for p in written) or "nothing")]
    elif written_to is not None:
        written_to = Path(written_to)
        names = [written_to / n for n in TABLE_FILES]
        names += sorted(written_to.glob("learning_curves_*.png"))
        lines += ["", "Written: " + ", ".join(str(p) for p in names if p.exists())]
    return "\n".join(lines).lstrip("\n")
