"""``plan_vs_measured.md``: the device-hours ``bench plan`` projected for each finished run
(:mod:`bench.store.plan_file`) against those the run measured."""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import pandas as pd

from bench.common.timing import hours_text


PLAN_VS_MEASURED_COLUMNS = ["key", "epochs_planned", "epochs_assumed", "epochs_run",
                            "train_projected", "train_measured", "train_ratio",
                            "run_projected", "run_measured", "run_ratio", "unit", "device"]


def plan_vs_measured(results: Iterable[Mapping[str, Any]], plan: Mapping[str, Mapping[str, Any]]
                     ) -> pd.DataFrame:
    """Finished runs that were planned: projected vs measured device-hours; ratio = measured /
    projected."""
    rows = []
    for run in results:
        planned = plan.get(str(run.get("key")))
        if run.get("status") != "ok" or planned is None:
            continue
        t = run["timings"]

        def ratio(measured: float, projected: Any) -> float:
            return measured / projected if projected else math.nan

        run_projected = planned.get("run_device_hours")
        rows.append({
            "key": run["key"], "epochs_planned": planned["epochs"],
            "epochs_assumed": bool(planned.get("epochs_assumed")),
            "epochs_run": t.get("epochs"), "train_projected": planned["train_device_hours"],
            "train_measured": t["train_device_hours"],
            "train_ratio": ratio(t["train_device_hours"], planned["train_device_hours"]),
            "run_projected": math.nan if run_projected is None else run_projected,
            "run_measured": t["run_device_hours"],
            "run_ratio": ratio(t["run_device_hours"], run_projected),
            "unit": t.get("device_hours_unit", "device-hours"),
            "device": run.get("provenance", {}).get("device", "?")})
    return pd.DataFrame(rows, columns=PLAN_VS_MEASURED_COLUMNS)


def plan_vs_measured_markdown(frame: pd.DataFrame) -> str:
    header = ["run", "epochs (planned / run)", "train: projected", "train: measured",
              "measured / projected", "run: projected", "run: measured", "measured / projected",
              "device"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in frame.itertuples(index=False):
        lines.append("| " + " | ".join([
            r.key, f"{r.epochs_planned}{'*' if r.epochs_assumed else ''} / {r.epochs_run}",
            f"{hours_text(r.train_projected)} {r.unit}", f"{hours_text(r.train_measured)} {r.unit}",
            "–" if math.isnan(r.train_ratio) else f"{r.train_ratio:.2f}",
            f"{hours_text(r.run_projected)} {r.unit}", f"{hours_text(r.run_measured)} {r.unit}",
            "–" if math.isnan(r.run_ratio) else f"{r.run_ratio:.2f}", str(r.device)]) + " |")
    return ("\n".join(lines) + "\n\nProjected by `bench plan` from a `bench speed` report "
            "(median step time x steps; * early stopping: epochs assumed); measured: the "
            "result's device-hours. A ratio far from 1 where the epochs agree means the speed "
            "report does not describe this run's device (another load, another device).\n")
