"""``bench table --brief``: both halves of the paper's claim in a few lines each.

For every (dataset, ways, budget) of a results folder: the test accuracy of every method under
both protocols, the paired difference of every method against the comparison baseline (the
method that declares ``comparison_baseline``: MTL) on the same test episodes
(:mod:`bench.compare`), and the training cost (device-hours and its ratio to the baseline's).
The full tables are written as ``bench table`` writes them (:func:`bench.table.make_tables`),
with ``comparison.{csv,md}`` beside them; the summary ends with the paths of every file
written. A pure function of the result files, like the tables.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bench.compare import (DEFAULT_MARGIN, EQUIVALENT, NOT_PAIRED, comparison_csv,
                           comparison_markdown, paired_comparisons)
from bench.table import accuracy_rows, display_name, efficiency_rows, load_results, make_tables
from core.atomic import write_text_atomic
from methods import comparison_baseline

TABLE_FILES = ("accuracy.csv", "accuracy.md", "efficiency.csv", "efficiency.md",
               "figure2.png", "device_hours.png", "l2_penalty.csv", "l2_penalty.md",
               "l2_penalty.png")
COMPARISON_FILES = ("comparison.csv", "comparison.md")
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
             f"{baseline}, points;", f"[95% CI] and verdict at a ±{margin:g}-point margin; "
             "comparison.md says how):"] + _table(header, rows))


def _cost_lines(cost: pd.DataFrame, shots: list[int], baseline: str) -> list[str]:
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
    return [f"Training cost ({unit} of training steps; x = ratio to {baseline}):"] \
        + _table(header, rows)


def brief_summary(folder: Path, margin: float = DEFAULT_MARGIN) -> str:
    """Write the tables (and ``comparison.{csv,md}``) of ``folder`` and return the summary."""
    folder = Path(folder)
    make_tables(folder)  # accuracy, efficiency, plots: the files `bench table` writes
    results = load_results(folder)
    base_cls = comparison_baseline()
    baseline = base_cls.display_name
    pairs = paired_comparisons(results, base_cls.name, margin,
                               display=lambda n: display_name({"method": n}))
    write_text_atomic(folder / "comparison.csv", comparison_csv(pairs))
    write_text_atomic(folder / "comparison.md", comparison_markdown(pairs, margin))
    acc, cost = _labelled(accuracy_rows(results)), _labelled(efficiency_rows(results))
    pairs = _labelled(pairs)
    lines: list[str] = []
    for key, block in acc.groupby(_BLOCK, sort=True):
        dataset, ways, budget = key
        shots = sorted(block["shots"].unique())
        seeds = sorted(block["seeds"].unique())
        episodes = sorted(block["episodes"].unique())
        lines += ["", f"== {dataset}, {ways}-way, {budget} budget: "
                      f"{'/'.join(map(str, seeds))} seed(s), "
                      f"{'/'.join(map(str, episodes))} test episodes per run =="]
        lines += _accuracy_lines(block, shots)
        mine = pairs[(pairs["dataset"] == dataset) & (pairs["ways"] == ways)
                     & (pairs["budget"] == budget)] if not pairs.empty else pairs
        if not mine.empty:
            lines += [""] + _paired_lines(mine, baseline, margin)
        spend = cost[(cost["dataset"] == dataset) & (cost["ways"] == ways)
                     & (cost["budget"] == budget)]
        if not spend.empty:
            lines += [""] + _cost_lines(spend, shots, baseline)
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        lines += ["", f"{len(failed)} failed run(s): "
                      + "; ".join(f"{r['key']} ({r['error'][:80]})" for r in failed)]
    if not lines:
        lines = ["No finished results."]
    written = [folder / name for name in (*TABLE_FILES, *COMPARISON_FILES)
               if (folder / name).exists()]
    lines += ["", "Written: " + ", ".join(str(p) for p in written)]
    return "\n".join(lines).lstrip("\n")
