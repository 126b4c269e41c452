"""The report of ``bench speed``: device-hours of whole budgets extrapolated from measured step
times, every method against the efficiency reference (the paper's Table 4 compares MTL with
MetaOptNet-SVM), and the printed table and JSON file name.
"""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.reference import REFERENCE_CSV

if TYPE_CHECKING:
    import torch


#: MTL's paper budget stops early (docs/references.md#mtl) and the paper does not say after how
#: many epochs; the extrapolation assumes this many unless ``--assume-epochs`` says otherwise.
#: It is MetaOptNet's own epoch count (60): a neutral choice, not a measured one. The break-even
#: number of epochs that reproduces the paper's ratio is reported next to it.
DEFAULT_ASSUMED_EPOCHS = 60


# --------------------------------------------------------------------------------------------
# Extrapolation to the paper budgets
# --------------------------------------------------------------------------------------------


def paper_ratio(method: str, reference: str, reference_csv: Path = REFERENCE_CSV
                ) -> dict[str, Any] | None:
    """``reference``'s over ``method``'s GPU-hours as the paper's Table 4 reports them (display
    names, as in the reference CSV; MetaOptNet over MTL: 85.6 / 3.7), or None when the CSV
    has no such pair."""

    if not Path(reference_csv).exists():
        return None
    rows: dict[str, dict[str, str]] = {}
    with open(reference_csv, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["table"] == "4" and row["metric"] == "gpu_hours":
                rows[row["method"].lower()] = row
    mine, ref = rows.get(method.lower()), rows.get(reference.lower())
    if mine is None or ref is None:
        return None
    return {"method_gpu_hours": float(mine["value"]), "reference_gpu_hours": float(ref["value"]),
            "ratio": float(ref["value"]) / float(mine["value"]),
            "source": f"{ref['source']}, {ref['dataset']} {ref['ways']}-way {ref['shots']}-shot "
                      "(bench/reference/paper.csv)"}


def budget_projection(entry: dict[str, Any], assume_epochs: int) -> dict[str, Any]:
    """Device-hours of the whole budget, both figures of a run's result:

    - training (``train_device_hours``, also ``device_hours``) = median step time x the
      budget's optimiser steps;
    - run (``run_device_hours``) = that plus an epoch's validation (measured seconds per
      validation episode x the budget's validation episodes) x epochs; None when validation
      was not timed.
    """
    budget = entry["budget"]
    early = budget["early_stop_patience"] is not None
    epochs = min(assume_epochs, budget["epochs"]) if early else budget["epochs"]
    total = epochs * budget["steps_per_epoch"]
    step_s = entry["step"]["median_s"]
    train_hours = step_s * total / 3600.0
    epoch_seconds = step_s * budget["steps_per_epoch"]
    validation = entry.get("validation")
    val_seconds = (validation["seconds_per_episode"] * budget["val_episodes"]
                   if validation else None)
    return {"epochs": epochs, "epochs_assumed": early, "max_epochs": budget["epochs"],
            "steps_per_epoch": budget["steps_per_epoch"], "total_steps": total,
            "epoch_seconds": epoch_seconds, "device_hours": train_hours,
            "train_device_hours": train_hours,
            "val_episodes_per_epoch": budget["val_episodes"],
            "validation_epoch_seconds": val_seconds,
            "run_epoch_seconds": epoch_seconds + val_seconds if validation else None,
            "run_device_hours": ((epoch_seconds + val_seconds) * epochs / 3600.0
                                 if validation else None)}


def extrapolate(entries: list[dict[str, Any]], assume_epochs: int,
                reference_csv: Path | None = REFERENCE_CSV,
                overrides: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Every measured method's device-hours relative to the efficiency reference method (the
    class that declares ``efficiency_reference``: MetaOptNet-SVM, as in the paper's Table 4),
    under both methods' budgets.

    Per method: the reference's over the method's time per step, per epoch and for the whole
    budget (budgets that stop early run ``assume_epochs`` epochs, see
    :data:`DEFAULT_ASSUMED_EPOCHS`), its images/s over the reference's, and, where the paper
    reports both (``reference_csv``), the paper's ratio and the number of the method's epochs
    at which the measured times would reproduce it. Both cost figures of a run are
    extrapolated: training steps only (``per_epoch``, ``full_budget``; the timing rule) and
    the whole training loop with its validation (``per_epoch_run``, ``full_budget_run``; what
    the paper's GPU-hours count, so ``epochs_for_paper_ratio_run`` is the comparable break-even
    point). ``overrides`` (budget fields changed on the command line) are recorded: with any,
    the ratios are the overridden budgets'. None without a reference measurement and at least
    one other.
    """
    from methods import efficiency_reference  # here: methods load torch (speed --help reads us)

    reference = efficiency_reference()
    by_name = {e["method"]: e for e in entries if "step" in e}
    if reference.name not in by_name or len(by_name) < 2:
        return None
    ref = by_name[reference.name]
    ref_p = ref["paper_budget"]
    methods: dict[str, Any] = {}
    for name, entry in by_name.items():
        if name == reference.name:
            continue
        mine = entry["paper_budget"]
        display = entry.get("display_name", name)
        paper = (paper_ratio(display, reference.display_name, reference_csv)
                 if reference_csv is not None else None)
        row: dict[str, Any] = {
            "per_step": ref["step"]["median_s"] / entry["step"]["median_s"],
            "per_image": entry["step"]["images_per_s"] / ref["step"]["images_per_s"],
            "per_epoch": ref_p["epoch_seconds"] / mine["epoch_seconds"],
            "full_budget": ref_p["device_hours"] / mine["device_hours"],
            "epochs": mine["epochs"], "epochs_assumed": mine["epochs_assumed"],
            "budget": entry["budget"]["name"], "paper": paper,
        }
        if paper is not None:
            row["epochs_for_paper_ratio"] = (ref_p["device_hours"] * 3600.0
                                             / (paper["ratio"] * mine["epoch_seconds"]))
        run_known = (mine.get("run_device_hours") is not None
                     and ref_p.get("run_device_hours") is not None)
        row["per_epoch_run"] = (ref_p["run_epoch_seconds"] / mine["run_epoch_seconds"]
                                if run_known else None)
        row["full_budget_run"] = (ref_p["run_device_hours"] / mine["run_device_hours"]
                                  if run_known else None)
        if paper is not None and run_known:
            row["epochs_for_paper_ratio_run"] = (ref_p["run_device_hours"] * 3600.0
                                                 / (paper["ratio"] * mine["run_epoch_seconds"]))
        methods[name] = row
    return {
        "reference": reference.name, "reference_display_name": reference.display_name,
        "reference_epochs": ref_p["epochs"], "reference_epochs_assumed": ref_p["epochs_assumed"],
        "reference_budget": ref["budget"]["name"], "overrides": overrides,
        "assumption": (
            f"budgets that stop early (after a number of epochs their papers do not report) "
            f"are assumed to run {assume_epochs} epochs (--assume-epochs). 'train' counts "
            f"training steps only (the timing rule); 'run' adds each epoch's validation "
            f"({reference.display_name} validates {ref['budget']['val_episodes']} episodes per "
            f"epoch), as the paper's GPU-hours do: compare the paper's ratio with 'run'."),
        "methods": methods,
    }


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def device_slug(name: str) -> str:
    """File-name-safe form of a device name: letters, digits, '.', '_' and '-' only."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name.replace("(R)", "").replace("(TM)", ""))
    return re.sub(r"-{2,}", "-", slug).strip("-.").lower()[:60] or "device"


def report_path(out_dir: Path, device: str, precision: str, image_size: int,
                compiled: bool, dataset: str, ways: int, shots: int) -> Path:
    """One file per device, precision, image size, compile setting, dataset, ways and shots:
    the settings a report's step shapes depend on, so measuring another shot count (as
    ``bench plan`` asks, one command per dataset and shots) never overwrites a report."""
    suffix = "-compile" if compiled else ""
    return Path(out_dir) / (f"{device_slug(device)}-{precision}-{image_size}-{dataset}-"
                            f"{ways}w{shots}s{suffix}.json")


def backend_settings(device: torch.device) -> dict[str, Any]:
    """Switches that change kernel choice and hence speed."""
    import torch  # here: bench.cost.speed_args reads this module's constants without torch

    settings: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        settings.update({
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        })
    return settings


def _fmt(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value * scale:,.{digits}f}"


def format_report(report: dict[str, Any]) -> str:
    """The printed table and the extrapolation."""
    head = (f"bench speed on {report['device']} (torch {report['torch']}), {report['precision']}, "
            f"{report['image_size']} px, dataset {report['dataset']} {report['ways']}-way "
            f"{report['shots']}-shot shapes, budget {report['budget']}"
            f"{', compiled' if report['compile'] else ''}; median of {report['steps']} steps "
            f"after {report['warmup']} warm-up")
    columns = ["method", "backbone", "img/step", "step ms (med/mean)", "img/s", "TFLOP/s",
               "peak MiB", "backbone img/s", "backbone TFLOP/s", "method/backbone",
               "val ms/episode", "budget h (train)", "budget h (run)"]
    rows = []
    for e in report["methods"]:
        if "error" in e:
            rows.append([e["method"], e.get("backbone", "?"), "", f"FAILED: {e['error']}"]
                        + [""] * (len(columns) - 4))
            continue
        s, b = e["step"], e["backbone_step"]
        peak, projection = s["peak_memory_bytes"], e["paper_budget"]
        star = "*" if projection["epochs_assumed"] else ""
        validation = e.get("validation")
        rows.append([
            e["method"], f"{e['backbone']}/{e['feature_mode']}", str(s["images_per_step"]),
            f"{_fmt(s['median_s'], 1e3)} / {_fmt(s['mean_s'], 1e3)}",
            _fmt(s["images_per_s"]), _fmt(s["tflops_per_s"], digits=3),
            _fmt(peak / 2**20 if peak is not None else None, digits=0),
            _fmt(b["images_per_s"]), _fmt(b["tflops_per_s"], digits=3),
            f"{e['throughput_ratio']:.3f}",
            _fmt(validation["seconds_per_episode"] if validation else None, 1e3),
            _fmt(projection["device_hours"], digits=2) + star,
            _fmt(projection.get("run_device_hours"), digits=2)
            + (star if projection.get("run_device_hours") is not None else ""),
        ])
    widths = [max(len(columns[i]), *(len(r[i]) for r in rows)) if rows else len(columns[i])
              for i in range(len(columns))]
    lines = [head, "", "  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    for e in report["methods"]:
        for part in ("step", "backbone_step"):
            info = e.get(part, {}).get("compile")
            if info and (info["graphs_compiled_while_timed"] or info["recompile_limit_hit"]):
                lines.append(
                    f"WARNING: {e['method']} {part.replace('_', ' ')}: torch.compile compiled "
                    f"{info['graphs_compiled_while_timed']} graph(s) during the timed steps"
                    + (" and hit its recompile limit (the frame then runs eagerly)"
                       if info["recompile_limit_hit"] else "")
                    + "; this is no steady state (TORCH_LOGS=recompiles says why)")
    lines.append(f"\nbudget h (train): median step x optimiser steps of the {report['budget']} "
                 f"budget; budget h (run): plus each epoch's validation (val ms/episode x the "
                 f"budget's validation episodes; {report.get('val_episodes', 0)} episodes "
                 f"timed, {report.get('select_on', 'unified')} protocol) "
                 f"(* early stopping: {report['assume_epochs']} epochs assumed). "
                 f"peak: {report['memory_note']}.")
    ext = report.get("extrapolation")
    if ext is None:
        lines.append("device-hours relative to the reference method: not extrapolated "
                     "(measure it and at least one other method).")
    else:
        ref = ext["reference_display_name"]
        names = {e["method"]: e.get("display_name", e["method"]) for e in report["methods"]}
        for name, row in ext["methods"].items():
            paper, shown = row.get("paper"), names.get(name, name)
            run = row.get("full_budget_run") is not None
            lines.append(
                f"{ref} / {shown} device-hours: {row['per_step']:.2f}x per step, "
                f"{row['per_image']:.2f}x per image; train: {row['per_epoch']:.2f}x per epoch, "
                f"{row['full_budget']:.2f}x for the whole budgets"
                + (f"; run (with validation): {row['per_epoch_run']:.2f}x per epoch, "
                   f"{row['full_budget_run']:.2f}x for the whole budgets" if run else "")
                + f" ({ext['reference_epochs']} vs "
                f"{row['epochs']}{' assumed' if row['epochs_assumed'] else ''} epochs)"
                + (f"; paper: {paper['ratio']:.1f}x ({paper['reference_gpu_hours']} vs "
                   f"{paper['method_gpu_hours']} GPU-hours, {paper['source']}), reached with "
                   f"{row['epochs_for_paper_ratio']:.1f} {shown} epochs at these step times"
                   + (f" (train), {row['epochs_for_paper_ratio_run']:.1f} with validation "
                      "(run, the paper's clock)" if "epochs_for_paper_ratio_run" in row else "")
                   if paper else "") + ".")
        lines.append(f"  Assumption: {ext['assumption']}")
        if ext.get("overrides"):
            lines.append(f"  WARNING: the budgets' shapes were overridden ({ext['overrides']}); "
                         "this is not the paper budgets' ratio.")
    return "\n".join(lines)
