"""The saved plan of a results folder (``<out>/plans/plan.json``, schema :data:`PLAN_SCHEMA`):
``bench plan`` writes each run's projected cost there (:mod:`bench.cost.plan`), and ``bench
table`` reads it back to set the projection against what the runs measured
(:mod:`bench.report.plan_vs_measured`). An unreadable plan reads as no plan."""
from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from core.atomic import write_text_atomic

PLAN_FILE = "plans/plan.json"  # a folder bench table does not read results from
PLAN_SCHEMA = "bridgebench.plan/1"


def save_plan(out_dir: Path, frame: pd.DataFrame, assume_epochs: int) -> Path:
    """Merge ``frame``'s runs into ``<out_dir>/plans/plan.json`` (a later plan of a run
    replaces its earlier one); atomic."""
    path = Path(out_dir) / PLAN_FILE
    runs: dict[str, Any] = {}
    if path.exists():
        try:
            runs = dict(json.loads(path.read_text(encoding="utf-8")).get("runs", {}))
        except (OSError, ValueError, AttributeError):
            runs = {}
    planned_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    for row in frame.to_dict(orient="records"):
        if not math.isnan(row["train_device_hours"]):
            runs[row["key"]] = {**{k: (None if isinstance(v, float) and math.isnan(v) else v)
                                   for k, v in row.items() if k not in ("missing", "finished")},
                                "assume_epochs": assume_epochs, "planned_at": planned_at}
    write_text_atomic(path, json.dumps({"schema": PLAN_SCHEMA, "runs": runs}, indent=1,
                                       sort_keys=True) + "\n")
    return path


def read_plan(folder: Path) -> dict[str, dict[str, Any]]:
    """The saved plan's runs by key (empty without a readable plan); a run whose entry lacks
    its planned epochs or holds device-hours that are not numbers is left out (a plan is read
    as data, like every file of a results folder)."""
    path = Path(folder) / PLAN_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    runs = data.get("runs", {}) if isinstance(data, dict) else {}
    if not isinstance(runs, dict):
        return {}
    return {str(key): run for key, run in runs.items() if _usable(run)}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _usable(run: Any) -> bool:
    """A plan entry that :mod:`bench.report.plan_vs_measured` can set against a result."""
    return (isinstance(run, dict) and "epochs" in run and _is_number(run.get(
        "train_device_hours")) and (run.get("run_device_hours") is None
                                    or _is_number(run["run_device_hours"])))
