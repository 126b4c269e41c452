"""``python -m bench plan`` (= ``bench run --dry-run``): the cost of a sweep before it runs.

For every run of the sweep (the configurations ``bench run`` would build from the same
arguments), its projected device-hours from a ``bench speed`` report of the same device and
precision (:mod:`bench.cost.speed_report`), and the disk its model file will take:

- a report *matches* a run when it was measured on the run's device (name; with ``--device
  cuda`` on a machine without one, any CUDA device's report, named in the table), precision,
  compile setting, dataset, ways and shots, and holds an entry for the run's method whose
  training step has the run's shape (backbone, feature mode, meta-batch, training shots and
  queries); the newest matching report wins;
- training device-hours = the entry's median step time x the run's optimiser steps (epochs x
  steps per epoch; a budget that stops early is assumed to run ``--assume-epochs`` epochs, at
  most its maximum, marked ``*``), the timing rule's clock;
- run device-hours = that plus each epoch's validation: the entry's seconds per validation
  episode x the budget's validation episodes (none when the report did not time validation);
- model file bytes = the bytes of the untrained method's state dict (the saved file holds the
  same tensors, plus a little metadata), ``--no-save-model``: none.

Test evaluation, checkpoint writing and ``--test-every`` are outside device-hours (as in the
results), so they are not projected. A run without a matching report says which ``bench
speed`` command would measure it. ``bench plan`` saves the plan as
``<out>/plans/plan.json``, so that after the sweep ``bench table`` can set each run's measured
hours against its projection (:func:`plan_vs_measured`); it says so when it saves nothing (no
run to do has a matching report) and fails with one ``error:`` line when it cannot write. A run
whose finished result is already in ``--out`` is marked "(finished)" and left out of the totals
and the saved plan, since ``bench run`` skips it (``--force``: it reruns, so it counts). Nothing
here names a method or a dataset.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping, Sequence

import pandas as pd
import torch

from bench.common import provenance
from bench.common.exit_codes import EXIT_OK, EXIT_USAGE
from bench.common.timing import hours_text
from bench.cost.speed_report import DEFAULT_ASSUMED_EPOCHS
from bench.run.training import build_method_for, resolve_device
from bench.store.plan_file import PLAN_FILE, save_plan
from bench.store.results import existing_result, result_path
from datasets import DATASETS

DEFAULT_SPEED_DIR = Path("results/speed")
#: The training step's shape: a speed entry measured with another shape times another step.
STEP_SHAPE = ("backbone", "feature_mode", "meta_batch", "train_shots", "train_queries")

PLAN_COLUMNS = ["key", "method", "dataset", "ways", "shots", "seed", "budget", "epochs",
                "epochs_assumed", "steps", "step_seconds", "train_device_hours",
                "run_device_hours", "model_bytes", "device", "speed_report", "missing", "finished"]
"""``finished``: a finished result of the run (same settings) is already in ``--out``, so
``bench run`` would skip it (:func:`finished_runs`)."""


def load_speed_reports(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``bench speed`` JSON report under ``folder`` (none when it does not exist);
    unreadable files are skipped (a report is an optimisation, not a result)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    reports = []
    for path in sorted(folder.rglob("*.json")):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(report, dict) and isinstance(report.get("methods"), list):
            reports.append((path, report))
    return reports


def _shape(budget: Mapping[str, Any]) -> tuple:
    return tuple(budget.get(k) for k in STEP_SHAPE)


def matching_entry(config: Any, reports: Sequence[tuple[Path, dict[str, Any]]],
                   device_type: str, device_name: str | None
                   ) -> tuple[Path, dict[str, Any], dict[str, Any]] | None:
    """(report path, report, method entry) for ``config`` (module docstring), newest first."""
    budget = config.budget.to_dict()
    found = []
    for path, report in reports:
        if report.get("device_type") != device_type or (
                device_name is not None and report.get("device") != device_name):
            continue
        if (report.get("precision"), bool(report.get("compile")), report.get("dataset"),
                report.get("ways"), report.get("shots")) != (
                config.precision, bool(config.compile), config.dataset, config.ways,
                config.shots):
            continue
        for entry in report["methods"]:
            if entry.get("method") == config.method and "step" in entry \
                    and _shape(entry.get("budget", {})) == _shape(budget):
                found.append((str(report.get("provenance", {}).get("started_at", "")), path,
                              report, entry))
    if not found:
        return None
    _, path, report, entry = max(found, key=lambda f: (f[0], str(f[1])))
    return path, report, entry


def speed_command(config: Any, device: str, methods: str | None = None) -> str:
    """The ``bench speed`` command that measures ``config``'s step (or that of ``methods``,
    comma-separated, under the same settings) on ``device``."""
    budget = config.budget
    parts = ["python -m bench speed", f"--methods {methods or config.method}",
             f"--dataset {config.dataset}", f"--ways {config.ways}", f"--shots {config.shots}",
             f"--budget {budget.name}", f"--precision {config.precision}",
             f"--device {device}", "--val-episodes 20"]
    if config.compile:
        parts.append("--compile")
    return " ".join(parts)


def missing_commands(configs: Sequence[Any], device: str) -> list[str]:
    """One ``bench speed`` command per group of unmatched runs that one command measures."""
    groups: dict[str, tuple[Any, list[str]]] = {}
    for config in configs:
        key = speed_command(config, device, methods="{}")
        groups.setdefault(key, (config, []))
        if config.method not in groups[key][1]:
            groups[key][1].append(config.method)
    return [speed_command(config, device, ",".join(methods))
            for config, methods in groups.values()]


def model_bytes(config: Any) -> int:
    """Bytes of the untrained method's state dict (a model file's tensors)."""

    info = DATASETS.get(config.dataset)
    torch.manual_seed(0)
    method = build_method_for(config, info.channels, info.image_size, info.train_classes)
    return int(sum(t.numel() * t.element_size() for t in method.state_dict().values()
                   if torch.is_tensor(t)))


def project(config: Any, entry: Mapping[str, Any], assume_epochs: int) -> dict[str, Any]:
    """Epochs, steps and both device-hours figures of ``config`` from a speed ``entry``."""
    budget = config.budget
    early = budget.early_stop_patience is not None
    epochs = min(assume_epochs, budget.epochs) if early else budget.epochs
    steps = epochs * budget.steps_per_epoch
    step_s = float(entry["step"]["median_s"])
    train_hours = step_s * steps / 3600.0
    validation = entry.get("validation")
    run_hours = (train_hours + validation["seconds_per_episode"] * budget.val_episodes
                 * epochs / 3600.0) if validation else math.nan
    return {"epochs": epochs, "epochs_assumed": early, "steps": steps,
            "step_seconds": step_s, "train_device_hours": train_hours,
            "run_device_hours": run_hours}


def finished_runs(configs: Iterable[Any], out_dir: Path) -> set[str]:
    """Keys of the runs whose finished result of the same settings is already in ``out_dir``
    (:func:`bench.store.results.existing_result`; the data is not read, so its fingerprint is not
    checked: ``bench run`` checks it before it skips)."""

    return {c.key for c in configs
            if existing_result(result_path(out_dir, c.key), c, None).finished}


def plan_sweep(configs: Iterable[Any], reports: Sequence[tuple[Path, dict[str, Any]]],
               device_type: str, device_name: str | None, device_arg: str,
               assume_epochs: int = DEFAULT_ASSUMED_EPOCHS,
               save_models: bool = True, finished: Collection[str] = ()) -> pd.DataFrame:
    """One row per run (:data:`PLAN_COLUMNS`); NaN hours and a ``missing`` command where no
    report matches; ``finished``: keys of the runs already finished."""
    rows, sizes, unmatched = [], {}, []
    for config in configs:
        budget = config.budget
        early = budget.early_stop_patience is not None
        epochs = min(assume_epochs, budget.epochs) if early else budget.epochs
        shape_key = (config.method, config.dataset, json.dumps(budget.to_dict(), sort_keys=True,
                                                               default=str))
        if save_models and shape_key not in sizes:
            sizes[shape_key] = model_bytes(config)
        row = {"key": config.key, "method": config.method, "dataset": config.dataset,
               "ways": config.ways, "shots": config.shots, "seed": config.seed,
               "budget": budget.name, "epochs": epochs,
               "epochs_assumed": early,  # early stopping: the epoch count is assumed
               "steps": epochs * budget.steps_per_epoch, "step_seconds": math.nan,
               "train_device_hours": math.nan, "run_device_hours": math.nan,
               "model_bytes": sizes.get(shape_key, 0), "device": device_name or device_type,
               "speed_report": "", "missing": "", "finished": config.key in finished}
        match = matching_entry(config, reports, device_type, device_name)
        if match is None:
            row["missing"] = "no matching speed report"
            unmatched.append(config)
        else:
            path, report, entry = match
            row.update(project(config, entry, assume_epochs))
            row["device"], row["speed_report"] = str(report.get("device")), path.name
        rows.append(row)
    frame = pd.DataFrame(rows, columns=PLAN_COLUMNS)
    frame.attrs["commands"] = missing_commands(unmatched, device_arg)
    return frame


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def plan_markdown(frame: pd.DataFrame, assume_epochs: int, rerun_finished: bool = False) -> str:
    """The table ``bench plan`` prints, its totals, and the commands for missing reports.
    Finished runs are marked, and left out of the totals unless ``rerun_finished``
    (``--force``)."""
    if frame.empty:
        return "_No runs in this sweep._\n"
    if "finished" not in frame:
        frame = frame.assign(finished=False)
    header = ["run", "epochs", "steps", "step ms", "train device-hours", "run device-hours",
              "model file", "device", "speed report"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in frame.itertuples(index=False):
        lines.append("| " + " | ".join([
            f"{r.key} (finished)" if r.finished else r.key,
            f"{r.epochs}{'*' if r.epochs_assumed else ''}", f"{r.steps:,}",
            "–" if math.isnan(r.step_seconds) else f"{r.step_seconds * 1e3:.1f}",
            hours_text(r.train_device_hours), hours_text(r.run_device_hours),
            _bytes(int(r.model_bytes)) if r.model_bytes else "–", str(r.device),
            r.speed_report or "none"]) + " |")
    done = int(frame["finished"].sum())
    todo = frame if rerun_finished else frame[~frame["finished"]]
    known = todo[~todo["train_device_hours"].isna()]
    total_train = float(known["train_device_hours"].sum())
    run_known = known[~known["run_device_hours"].isna()]
    lines.append("")
    if done:
        lines.append(f"{done} of {len(frame)} runs are finished already (marked): `bench run` "
                     + ("reruns them (--force), so they are in the totals." if rerun_finished
                        else "skips them, so they are not in the totals (--force reruns "
                             "them)."))
    lines.append(f"Total over {len(known)} of {len(todo)} runs"
                 f"{' to run' if done and not rerun_finished else ''} with a speed report: "
                 f"{total_train:.3g} training device-hours"
                 + (f", {float(run_known['run_device_hours'].sum()):.3g} run device-hours "
                    f"(over {len(run_known)} runs with timed validation)" if len(run_known)
                    else "")
                 + f"; model files {_bytes(int(todo['model_bytes'].sum()))}.")
    lines.append(f"Training device-hours: median step time x optimiser steps; run device-hours "
                 "add each epoch's validation (seconds per validation episode x the budget's "
                 f"validation episodes). * early stopping: {assume_epochs} epochs assumed "
                 "(--assume-epochs), at most the budget's maximum. Test evaluation and "
                 "checkpoints are not in device-hours and not projected.")
    missing = frame.attrs.get("commands", [])
    if missing:
        lines.append("\nNo speed report for this device and precision matches "
                     f"{int((frame['missing'] != '').sum())} run(s); measure them with:\n")
        lines += [f"    {command}" for command in missing]
    return "\n".join(lines) + "\n"


def device_target(device_arg: str) -> tuple[str, str | None]:
    """(device type, device name or None: any of that type) that a plan's reports must match:
    the device ``--device`` resolves to here, or any CUDA device when it asks for one that
    this machine lacks (planning a GPU sweep from a login node)."""

    try:
        device = resolve_device(device_arg)
    except (RuntimeError, ValueError):
        return ("cuda" if "cuda" in device_arg else "cpu"), None
    return device.type, provenance.device_name(device)


def cmd_plan(args: Any, configs: list) -> int:
    """``bench plan`` / ``bench run --dry-run``: print the plan, finished runs marked;
    ``bench plan`` saves it (the runs still to do, or every run with ``--force``), says when
    there is nothing to save, and exits 2 with one ``error:`` line when it cannot be saved."""

    device_type, device_name = device_target(args.device)
    reports = load_speed_reports(args.speed_reports)
    force = bool(getattr(args, "force", False))
    frame = plan_sweep(configs, reports, device_type, device_name, args.device,
                       args.assume_epochs, getattr(args, "save_model", True),
                       finished_runs(configs, args.out))
    where = device_name or f"any {device_type} device"
    print(f"## Plan: {len(frame)} run(s) on {where}, {configs[0].precision if configs else ''}"
          f" (speed reports from {args.speed_reports})\n")
    print(plan_markdown(frame, args.assume_epochs, rerun_finished=force))
    if not reports:
        print(f"(no bench speed report in {args.speed_reports}; `python -m bench speed --help`"
              " measures one for this device)")
    if not getattr(args, "save_plan", False):
        return EXIT_OK
    todo = frame if force else frame[~frame["finished"]]
    if not todo["train_device_hours"].notna().any():
        why = ("every run is finished already" if todo.empty else
               "no run still to do has a matching speed report")
        print(f"(no plan saved in {Path(args.out) / PLAN_FILE}: {why}, so there is nothing to "
              "set measured hours against)")
        return EXIT_OK
    try:
        path = save_plan(args.out, todo, args.assume_epochs)
    except OSError as error:
        print(f"error: the plan could not be saved to {Path(args.out) / PLAN_FILE} "
              f"({error.strerror or error}); pass a writable --out, or use `bench run "
              "--dry-run` to print the plan only", file=sys.stderr)
        return EXIT_USAGE
    print(f"(saved to {path}; after the sweep, `python -m bench table {args.out}` sets "
          "measured hours against it)")
    return EXIT_OK
