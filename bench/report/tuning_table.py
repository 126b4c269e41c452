"""``tuning.{csv,md}``: what each method's tuning cost, next to what its tuned runs cost.

A method that needs tuning to win pays for it: for every ``bench tune`` study in
``<folder>/tuned/*.json`` (:mod:`bench.store.tuned_files` reads them as data), the table gives the study's
trials and CPU-hours and the runs of the folder trained with its best settings (same method,
dataset, ways and shots, and every tuned budget field and hyperparameter equal): their number
of seeds, mean run CPU-hours per seed, and tuning plus all those runs. Tuning CPU-hours are
process CPU time (:mod:`bench.tune.study`); run CPU-hours the timing rule's run device-hours.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import pandas as pd

from bench.report.output import OutputFile, Section
from bench.store.tuned_files import SCHEMA, TunedStudy
from core.atomic import write_text_atomic

COLUMNS = ["method", "dataset", "ways", "shots", "budget", "trials", "tuning_cpu_hours",
           "tuned_runs", "run_cpu_hours_per_seed", "total_cpu_hours"]


def _uses(result: dict[str, Any], settings: dict[str, Any], hparams: dict[str, Any]) -> bool:
    budget = result.get("config", {}).get("budget", {})
    fields = {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()}
    return all(budget.get(k) == v for k, v in fields.items()) and all(
        budget.get("hparams", {}).get(k) == v for k, v in hparams.items())


def tuning_rows(studies: Iterable[TunedStudy], results: Iterable[dict[str, Any]]
                ) -> pd.DataFrame:
    """One row per study (:func:`bench.store.tuned_files.read_tuned_study`), with the finished
    ``results`` trained with its best settings."""
    rows = []
    results = [r for r in results if r.get("status") == "ok"]
    for study in studies:
        tuned, budget, trials, hours = study.best, study.budget, study.trials, study.cpu_hours
        runs = [r for r in results
                if (r["config"]["method"], r["config"]["dataset"], r["config"]["ways"],
                    r["config"]["shots"], r["config"]["budget"].get("name")) ==
                (tuned.method, tuned.dataset, tuned.ways, tuned.shots, budget)
                and _uses(r, tuned.settings, tuned.hparams)]
        per_seed = (sum(r["timings"]["run_device_hours"] for r in runs) / len(runs)
                    if runs else float("nan"))
        total = hours + sum(r["timings"]["run_device_hours"] for r in runs)
        rows.append({"method": tuned.method, "dataset": tuned.dataset, "ways": tuned.ways,
                     "shots": tuned.shots, "budget": budget, "trials": trials,
                     "tuning_cpu_hours": hours, "tuned_runs": len(runs),
                     "run_cpu_hours_per_seed": per_seed, "total_cpu_hours": total})
    return pd.DataFrame(rows, columns=COLUMNS)


def tuning_markdown(frame: pd.DataFrame) -> str:
    lines = ["## Tuning cost (`bench tune`)", "",
             "| method | dataset | budget | trials | tuning CPU-hours | tuned runs (seeds) | "
             "run CPU-hours per seed | tuning + runs |", "|---|---|---|---|---|---|---|---|"]
    for row in frame.itertuples():
        per_seed = "–" if math.isnan(row.run_cpu_hours_per_seed) \
            else f"{row.run_cpu_hours_per_seed:.4f}"
        lines.append(f"| {row.method} | {row.dataset} {row.ways}-way {row.shots}-shot | "
                     f"{row.budget} | {row.trials} | {row.tuning_cpu_hours:.4f} | "
                     f"{row.tuned_runs} | {per_seed} | {row.total_cpu_hours:.4f} |")
    lines += ["", "Tuning CPU-hours: the process CPU time of the study's trials (finished and "
              "pruned; a trial killed with its process is not counted). Tuned runs: this "
              "folder's results trained with the study's best settings (`bench run "
              "--tuned`); their CPU-hours are run device-hours (training and validation)."]
    return "\n".join(lines) + "\n"


def build_tuning_table(studies: Iterable[TunedStudy], results: Iterable[dict[str, Any]]
                       ) -> Section | None:
    """``tuning.{csv,md}`` and their Markdown, or None without a study."""
    frame = tuning_rows(studies, results)
    if frame.empty:
        return None
    text = tuning_markdown(frame)
    csv = frame.to_csv(index=False, float_format="%.6g")
    return Section(text, (OutputFile("tuning.csv", lambda path: write_text_atomic(path, csv)),
                          OutputFile("tuning.md", lambda path: write_text_atomic(path, text))))


__all__ = ["SCHEMA", "build_tuning_table", "tuning_markdown", "tuning_rows"]
