"""``bench table``: a pure function from result files to the paper's tables.

Rows are experiments: the runs of one identity minus the seed
(:meth:`bench.common.config.RunConfig.identity`: every setting that can change a number, and the
dataset's fingerprint). Two results that differ in any setting are two rows, never averaged;
their ``variant`` column says how each differs from its budget's defaults
(:meth:`bench.common.config.RunConfig.variant`: ``normalize_features=false``, ``backbone=conv4-32``;
empty for the defaults). Results made from data with different fingerprints are told apart
the same way (``data 1a2b3c4d``). Two finished results of one identity and seed are an error.

- accuracy (Wang et al. 2021, Table 3 layout): a row per method, backbone, protocol, budget
  and variant; a column per dataset and shot count; cells "mean ± CI". Over two or more seeds
  the ± is a t-based 95% CI over seed means; a single-seed cell (marked †) shows the 95% CI
  over episodes. The paper's reported numbers (``bench/reference/paper.csv``) appear as extra
  rows where a measured method claims them (:attr:`methods.base.FewShotMethod.reported_as`),
  labelled with their head where the source has several (MetaOptNet-SVM, MetaOptNet-RR).
- efficiency (Table 4 layout): accuracy, both cost figures (training device-hours, and run
  device-hours: training plus validation, which is what the paper's GPU-hours count), each
  with its speed-up relative to the efficiency reference method (MetaOptNet) in the same cell
  (dataset, shots, budget, sweep settings) on the same device and device count. Runs on
  different devices are different rows: device-hours are never averaged across devices or
  units.

Outputs: ``accuracy.csv``, ``accuracy.md``, ``efficiency.csv``, ``efficiency.md``, and the plots
``figure2.png`` (accuracy vs speed-up relative to MetaOptNet, the paper's Figure 2) and
``device_hours.png`` (accuracy vs device-hours); with eval results (``bench eval``), also the
L2-penalty table ``l2_penalty.{csv,md,png}`` (Table 5, :mod:`bench.report.l2_table`); and the paired
tables of :mod:`bench.report.paired_tables`: ``comparison.{csv,md}`` (every method against a baseline
on identical episodes), ``time_to_accuracy.{csv,md}`` and the learning-curve figures.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common.cells import cell_settings
from bench.common.config import RunConfig, canonical_json
from bench.common.data_split import dataset_label, split_label
from bench.store.results import ResultFileError, RunResult, data_fingerprint
from core.atomic import write_text_atomic
from datasets import by_benchmark
from methods import METHODS
from methods.base import FewShotMethod
from bench.common.stats import EPISODE_CI_RULE, SEED_CI_RULE, seed_ci95
from bench.common.timing import TIMING_RULE
from bench.reference import REFERENCE_CSV  # package data: the paper's reported numbers
from bench.report.cost_notes import CLOCK_NOTES, CLOCKS, PAPER_CLOCK_NOTE, efficiency_reference
from bench.report.efficiency_plots import accuracy_vs_device_hours, figure2
from bench.report.method_names import display_name
from bench.report.output import OutputFile


def _column(dataset: str, ways: int, shots: int) -> str:
    return f"{dataset} {ways}-way {shots}-shot"


@dataclass
class Experiment:
    """The runs of one identity minus the seed (a table row before protocols and devices)."""

    config: dict[str, Any]  # the first run's (all share every setting but the seed)
    fingerprint: str | None
    runs: list[RunResult]
    variant: str = ""


def _settings_and_variant(config: dict[str, Any], key: str | None = None) -> tuple[str, str]:
    """(canonical settings, variant label) of a result's config (``key``: the result's
    recorded run key; None for results migrated from schema /1, whose keys did not tell
    settings apart).

    Where the budget's defaults cannot be known here (the method's class is not available, for
    any reason), the recorded key says whether the run was its budget's defaults when it ran
    (a key without a settings hash: :attr:`bench.common.config.RunConfig.key`): those runs get no
    variant, so a method's rows stay together under its name across datasets and shots instead
    of splitting by a hash of every setting; the others are "settings <hash>"."""
    try:
        run = RunConfig.from_dict(config)
    except (TypeError, ValueError, KeyError):
        flat = {k: v for k, v in config.items() if k not in ("seed", "method_source")}
        return canonical_json(flat), "settings as recorded"
    if run.defaults() is None:
        variant = "" if key == run.readable_key else f"settings {run.settings_hash()}"
        return canonical_json(run.settings()), variant
    return canonical_json(run.settings()), run.variant()


def unavailable_note(results: list[RunResult]) -> str:
    """One sentence naming the recorded methods whose class is not available here (not
    registered, its recorded import path not imported), or "" when every one is."""
    missing: dict[str, str] = {}
    for r in results:
        method = (r.get("config") or {}).get("method")
        if r.get("status") == "ok" and method is not None and method not in METHODS:
            missing.setdefault(method, str(r["config"].get("method_source") or ""))
    if not missing:
        return ""
    named = ", ".join(f"{m} ({source})" if source else m for m, source in sorted(missing.items()))
    return (f"Not available here: {named}; their rows are shown under the recorded method "
            "name, and their settings cannot be compared with their budget's defaults (a row "
            "is the defaults where its runs' keys say so, else \"settings <hash>\"). Install "
            "or put the method's package on PYTHONPATH to name their variants.")


def experiments(results: list[RunResult]) -> list[Experiment]:
    """Finished results grouped by identity minus the seed; a variant label per group (with
    ``data <fingerprint>`` where one configuration was run on several datasets' contents).
    Two finished results of one identity and seed raise :class:`ResultFileError` naming both."""
    groups: dict[tuple[str, str | None], Experiment] = {}
    seen: dict[tuple[str, str | None, int], RunResult] = {}
    for r in results:
        if r["status"] != "ok":
            continue
        settings, variant = _settings_and_variant(
            r["config"], None if r.get("migrated_from") else r.get("key"))
        fingerprint = data_fingerprint(r)
        key = (settings, fingerprint)
        seed_key = (settings, fingerprint, int(r["config"]["seed"]))
        if seed_key in seen:
            raise ResultFileError(
                f"two finished results of the same run (identity and seed "
                f"{r['config']['seed']}): {seen[seed_key]['key']} and {r['key']}; they would "
                "be averaged as if they were two seeds. Remove one of them (a copied folder?)")
        seen[seed_key] = r
        if key not in groups:
            groups[key] = Experiment(r["config"], fingerprint, [], variant)
        groups[key].runs.append(r)
    by_settings: dict[str, list[Experiment]] = defaultdict(list)
    for (settings, _), experiment in groups.items():
        by_settings[settings].append(experiment)
    for group in by_settings.values():
        if len(group) > 1:  # one configuration on several datasets' contents
            for experiment in group:
                data = (f"data {experiment.fingerprint[:8]}" if experiment.fingerprint
                        else "data unknown")
                experiment.variant = ", ".join(v for v in (experiment.variant, data) if v)
    return list(groups.values())


ACCURACY_COLUMNS = ["method", "backbone", "protocol", "budget", "dataset", "ways", "shots",
                    "seeds", "episodes", "mean", "ci95", "ci_kind", "source", "variant", "split"]
"""``split``: the class split where it is not the dataset's standard one ("242-class subset",
:func:`bench.common.data_split.split_label`; empty for the standard split)."""


def accuracy_rows(results: list[RunResult]) -> pd.DataFrame:
    """Long form: one row per experiment (identity minus seed) and protocol."""
    rows = []
    for experiment in experiments(results):
        runs, c = experiment.runs, experiment.config
        protocols = (["unified (= native)"] if runs[0].get("native_is_unified")
                     else [p for p in ("unified", "native") if p in runs[0]["test"]])
        for protocol in protocols:
            key = protocol.split(" ")[0]
            means = [run["test"][key]["mean"] for run in runs]
            if len(runs) >= 2:
                ci, kind = seed_ci95(means), "seeds-t95"
            else:
                ci, kind = runs[0]["test"][key]["ci95"], "episodes-95"
            rows.append({
                "method": display_name(c), "backbone": c["budget"]["backbone"],
                "protocol": protocol, "budget": c["budget"]["name"], "dataset": c["dataset"],
                "ways": c["ways"], "shots": c["shots"], "seeds": len(runs),
                "episodes": int(np.mean([len(r["test"][key]["accuracies"]) for r in runs])),
                "mean": float(np.mean(means)), "ci95": float(ci), "ci_kind": kind,
                "source": "measured", "variant": experiment.variant,
                "split": split_label(runs[0]),
            })
    return pd.DataFrame(rows, columns=ACCURACY_COLUMNS)


def reported_names(display: str) -> dict[str, str]:
    """The reference rows (``bench/reference/paper.csv``: method, or method-head) that the
    registered method shown as ``display`` claims, each with why (its class's
    ``reported_as``; default: its own name)."""
    for name in METHODS.names():
        cls = METHODS.get(name)
        if cls.display_name == display:
            return dict(cls.reported_as) or {cls.display_name: ""}
    return {display: ""}


def reference_name(row: Any) -> str:
    """A reference row's name: its method, with its head where the source names one
    (``MetaOptNet-RR``)."""
    head = row.get("head") if hasattr(row, "get") else None
    head = str(head).strip() if head is not None and pd.notna(head) else ""
    return f"{row['method']}-{head}" if head else str(row["method"])


def reference_rows(measured: pd.DataFrame, reference_csv: Path = REFERENCE_CSV,
                   table: str = "3", metric: str = "test_accuracy_pct") -> pd.DataFrame:
    """The paper's reported numbers that a measured method claims on a measured dataset
    (:attr:`methods.base.FewShotMethod.reported_as`: MetaOptNet the SVM rows, R2D2 its own
    and MetaOptNet-RR's); each row's variant says which head it reports and, where that is
    not the measured method's own name, which measured method it is shown for."""
    if measured.empty or not Path(reference_csv).exists():
        return measured.iloc[0:0]
    ref = pd.read_csv(reference_csv, dtype={"table": str})
    ref = ref[(ref["table"] == table) & (ref["metric"] == metric)]
    to_ours = by_benchmark()  # the paper's dataset names -> ours
    claims: dict[tuple[str, str], str] = {}  # (reference name lower, dataset) -> claimed by
    for display, dataset in zip(measured["method"], measured["dataset"]):
        for name in reported_names(display):
            claims.setdefault((name.lower(), dataset), display)
    notes = {}
    rows = []
    for _, r in ref.iterrows():
        dataset = to_ours.get(r["dataset"])
        name = reference_name(r)
        claimed = claims.get((name.lower(), dataset)) if dataset is not None else None
        if claimed is None:
            continue
        head = HEADS.get(str(r.get("head", "")).strip(), "")
        note = ", ".join(x for x in (head, f"shown for {claimed}" if claimed.lower()
                                     != str(r["method"]).lower() else "") if x)
        rows.append({"method": name, "backbone": r["backbone"], "protocol": "reported",
                     "budget": "paper", "dataset": dataset, "ways": int(r["ways"]),
                     "shots": int(r["shots"]), "seeds": 0, "episodes": 0,
                     "mean": float(r["value"]),
                     "ci95": float(r["ci95"]) if pd.notna(r["ci95"]) else float("nan"),
                     "ci_kind": "as reported", "source": str(r["source"]), "variant": note,
                     "split": ""})
        why = reported_names(claimed).get(name, "")
        if why:
            notes[name] = f"{name} is shown for {claimed}: {why}."
    frame = pd.DataFrame(rows, columns=measured.columns)
    frame.attrs["notes"] = list(notes.values())
    return frame


def reference_notes(reference: pd.DataFrame) -> list[str]:
    """Why some reference rows are shown for a method of another name
    (:func:`reference_rows`)."""
    return list(reference.attrs.get("notes", []))


#: What the ``head`` column of ``bench/reference/paper.csv`` abbreviates.
HEADS = {"SVM": "SVM head", "RR": "ridge-regression head"}


def _cell(mean: float, ci: float, kind: str) -> str:
    if np.isnan(ci):
        return f"{mean:.2f}"
    mark = "†" if kind == "episodes-95" else ("‡" if kind == "as reported" else "")
    return f"{mean:.2f} ± {ci:.2f}{mark}"


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def accuracy_markdown(long: pd.DataFrame) -> str:
    if long.empty:
        return "_No finished results._\n"
    long = long.assign(column=[_column(dataset_label(d, p), w, s) for d, w, s, p in
                               zip(long["dataset"], long["ways"], long["shots"],
                                   long["split"])],
                       cell=[_cell(m, c, k) for m, c, k in
                             zip(long["mean"], long["ci95"], long["ci_kind"])])
    keys = ["method", "backbone", "protocol", "budget", "variant"]
    columns = sorted(long["column"].unique())
    wide = long.pivot_table(index=keys, columns="column", values="cell", aggfunc="first")
    wide = wide.reindex(columns=columns).fillna("–").reset_index()
    wide = wide.sort_values(keys, key=lambda s: s.map(str.lower)).reset_index(drop=True)
    wide = wide[["method", "backbone", "protocol", "budget", *columns, "variant"]]
    return _markdown(wide) + "\n"


EFFICIENCY_COLUMNS = ["method", "backbone", "budget", "dataset", "ways", "shots", "seeds",
                      "accuracy_unified", "accuracy_native", "train_device_hours",
                      "run_device_hours", "device_hours", "unit", "device", "device_count",
                      "images_seen", "steps", "variant", "accuracy_unified_ci95",
                      "train_device_hours_sd", "run_device_hours_sd", "split"]
"""``accuracy_unified_ci95``: the accuracy table's 95% CI of the unified mean (over seeds
where there are two or more, else over the episodes of one seed); ``*_device_hours_sd``: the
standard deviation of the device-hours over the row's seeds (NaN for one seed); ``split``: as
in :data:`ACCURACY_COLUMNS`."""


def _device(run: RunResult) -> tuple[str, int, str]:
    prov, timings = run.get("provenance", {}), run["timings"]
    return (str(prov.get("device", "?")), int(prov.get("device_count", 1) or 1),
            str(timings.get("device_hours_unit", "device-hours")))


def _is_reference_default(config: dict[str, Any]) -> bool:
    """The run's budget is its budget's default (the speed-up's reference arm)."""
    try:
        run = RunConfig.from_dict(config)
        default = run.defaults()
    except (TypeError, ValueError, KeyError):
        return False
    return default is not None and default.settings()["budget"] == run.settings()["budget"]


def _unified_ci(runs: list[RunResult]) -> float:
    """The accuracy table's 95% CI of the unified mean of ``runs`` (:func:`accuracy_rows`)."""
    if len(runs) >= 2:
        return float(seed_ci95([r["test"]["unified"]["mean"] for r in runs]))
    return float(runs[0]["test"]["unified"]["ci95"])


def _sd(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) >= 2 else float("nan")


def efficiency_rows(results: list[RunResult]) -> pd.DataFrame:
    """One row per experiment (identity minus seed) and device (name, count, unit): seeds
    are averaged on one device only. Speed-ups (one per clock, :data:`CLOCKS`) are the
    reference method's device-hours over the row's, in the same cell
    (:func:`bench.common.cells.cell_settings`: dataset, ways, shots, budget name and sweep settings)
    on the same device; where the reference method has several rows there (other budget
    settings), the one with its budget's defaults (none: no speed-up)."""
    rows, cells = [], []
    for experiment in experiments(results):
        by_device: dict[tuple[str, int, str], list[RunResult]] = defaultdict(list)
        for run in experiment.runs:
            by_device[_device(run)].append(run)
        c = experiment.config
        for (device, count, unit), runs in sorted(by_device.items()):
            timings = [run["timings"] for run in runs]
            rows.append({
                "method": display_name(c), "backbone": c["budget"]["backbone"],
                "budget": c["budget"]["name"], "dataset": c["dataset"], "ways": c["ways"],
                "shots": c["shots"], "seeds": len(runs),
                "accuracy_unified": float(np.mean([r["test"]["unified"]["mean"] for r in runs])),
                "accuracy_native": float(np.mean([r["test"]["native"]["mean"] for r in runs])),
                "train_device_hours": float(np.mean([t["train_device_hours"] for t in timings])),
                "run_device_hours": float(np.mean([t["run_device_hours"] for t in timings])),
                "device_hours": float(np.mean([t["train_device_hours"] for t in timings])),
                "unit": unit, "device": device, "device_count": count,
                "images_seen": int(np.mean([t["images_seen"] for t in timings])),
                "steps": int(np.mean([t["steps"] for t in timings])),
                "variant": experiment.variant,
                "accuracy_unified_ci95": _unified_ci(runs),
                "train_device_hours_sd": _sd([t["train_device_hours"] for t in timings]),
                "run_device_hours_sd": _sd([t["run_device_hours"] for t in timings]),
                "split": split_label(runs[0]),
            })
            cells.append((canonical_json(cell_settings(c)), device, count, unit,
                          c["method"] == efficiency_reference().name, c))
    frame = pd.DataFrame(rows, columns=EFFICIENCY_COLUMNS)
    reference = efficiency_reference()
    references = []
    for cell in cells:
        refs = [j for j, other in enumerate(cells) if other[4] and other[:4] == cell[:4]]
        if len(refs) > 1:
            refs = [j for j in refs if _is_reference_default(cells[j][5])]
        references.append(refs)
    for clock in CLOCKS:
        column, speedup = f"{clock}_device_hours", []
        for i, row in enumerate(frame.itertuples(index=False)):
            refs = references[i]
            hours = getattr(row, column)
            ok = len(refs) == 1 and hours > 0
            speedup.append(float(frame[column].iloc[refs[0]] / hours) if ok else float("nan"))
        frame[reference.speedup(clock)] = speedup
    return frame


def efficiency_markdown(frame: pd.DataFrame, reference_csv: Path = REFERENCE_CSV) -> str:
    if frame.empty:
        return "_No finished results._\n"
    reference = efficiency_reference()

    def speedups(clock: str) -> pd.Series:
        return frame[reference.speedup(clock)].map(
            lambda v: "–" if np.isnan(v) else f"{v:.1f}x")

    shown = pd.DataFrame({
        "method": frame["method"], "backbone": frame["backbone"], "budget": frame["budget"],
        "dataset": [_column(dataset_label(d, p), w, s) for d, w, s, p in
                    zip(frame["dataset"], frame["ways"], frame["shots"], frame["split"])],
        "accuracy (unified)": frame["accuracy_unified"].map("{:.2f}".format),
        "accuracy (native)": frame["accuracy_native"].map("{:.2f}".format),
        "train device-hours": [f"{h:.4f} {u}" for h, u in
                               zip(frame["train_device_hours"], frame["unit"])],
        f"speed-up vs {reference.display} (train)": speedups("train"),
        "run device-hours": [f"{h:.4f} {u}" for h, u in
                             zip(frame["run_device_hours"], frame["unit"])],
        f"speed-up vs {reference.display} (run)": speedups("run"),
        "images seen": frame["images_seen"].map("{:,}".format),
        "device": [f"{d}" + (f" x{n}" if n > 1 else "") for d, n in
                   zip(frame["device"], frame["device_count"])],
        "variant": frame["variant"],
    }).sort_values(["dataset", "method", "variant"], key=lambda s: s.map(str.lower))
    lines = [_markdown(shown.reset_index(drop=True))]
    if Path(reference_csv).exists():
        ref = pd.read_csv(reference_csv, dtype={"table": str})
        ref = ref[ref["table"] == "4"]
        to_ours = by_benchmark()
        present = {(m.lower(), d) for m, d in zip(frame["method"], frame["dataset"])}
        reported = [r for _, r in ref.iterrows()
                    if (str(r["method"]).lower(), to_ours.get(r["dataset"])) in present]
        if reported:
            lines.append("\nReported in the paper (Table 4):\n")
            for r in reported:
                lines.append(f"- {reference_name(r)} {r['dataset']} {r['ways']}-way "
                             f"{r['shots']}-shot {r['metric']}: {r['value']} ({r['source']})")
    return "\n".join(lines) + "\n"


def efficiency_footer() -> str:
    reference = efficiency_reference()
    return (f"Two cost figures per row, each with its speed-up = {reference.display}'s "
            f"device-hours / the row's ({reference.display} with its budget's defaults, same "
            "dataset, shots, budget and sweep settings, same device and device count): "
            f"{CLOCK_NOTES['train']}; {CLOCK_NOTES['run']}. {PAPER_CLOCK_NOTE} Runs on "
            "different devices are separate rows (device-hours are never averaged across "
            "devices).")


def _without_native_adaptation() -> str:
    """Display names of the registered methods that have no native adaptation."""
    return ", ".join(METHODS.get(n).display_name for n in METHODS.names()
                     if METHODS.get(n).adapt is FewShotMethod.adapt)


def failures(results: list[RunResult]) -> list[str]:
    return [f"- {r['key']}: {r['error']}" for r in results if r["status"] == "failed"]


@dataclass(frozen=True)
class MainTables:
    """The accuracy and training-cost tables (Tables 3 and 4) of a set of results, built:
    their rows, their Markdown and the files that hold them."""

    accuracy: pd.DataFrame  # measured and reported rows, sorted as accuracy.csv holds them
    measured: pd.DataFrame  # the measured rows only (:func:`accuracy_rows`)
    efficiency: pd.DataFrame  # :func:`efficiency_rows`
    accuracy_md: str
    efficiency_md: str
    files: tuple[OutputFile, ...]  # accuracy.{csv,md}, efficiency.{csv,md} and their figures


def main_tables(results: list[RunResult], reference_csv: Path = REFERENCE_CSV) -> MainTables:
    """:class:`MainTables` of ``results`` (two finished results of one run raise
    :class:`ResultFileError` naming both, before anything else is built)."""
    measured = accuracy_rows(results)
    reference = reference_rows(measured, reference_csv)
    accuracy = pd.concat([measured, reference], ignore_index=True) if not reference.empty \
        else measured
    accuracy = accuracy.sort_values(
        ["dataset", "shots", "method", "protocol", "budget"],
        key=lambda s: s.map(lambda v: str(v).lower())).reset_index(drop=True)
    efficiency = efficiency_rows(results)

    failed = failures(results)
    acc_md = ("## Test accuracy (%), 95% confidence intervals\n\n"
              + accuracy_markdown(accuracy)
              + f"\n± over two or more seeds: {SEED_CI_RULE}. † one seed: {EPISODE_CI_RULE}. "
              "‡ as reported in the paper (`bench/reference/paper.csv`).\n"
              "Variant: the settings that differ from the budget's defaults (empty: the "
              "defaults); rows of different settings are never averaged. "
              + "".join(f"{note} " for note in reference_notes(reference))
              + (f"{unavailable_note(results)} " if unavailable_note(results) else "")
              + "Protocols: unified = fresh logistic-regression head on frozen L2-normalised "
              "features (Wang et al. 2021, Sec. 3.4); native = the method's own adaptation "
              "(a single \"unified (= native)\" row for methods without one, such as "
              f"{_without_native_adaptation()}); "
              "reported = the paper's number.\n")
    eff_md = ("## Training cost\n\n" + efficiency_markdown(efficiency, reference_csv)
              + f"\n{efficiency_footer()}\nTiming rule: {TIMING_RULE}.\n")
    if failed:
        tail = "\n### Failed runs\n\n" + "\n".join(failed) + "\n"
        acc_md += tail
        eff_md += tail
    return MainTables(accuracy, measured, efficiency, acc_md, eff_md,
                      table_files(accuracy, efficiency, acc_md, eff_md, reference_csv))


def table_files(accuracy: pd.DataFrame, efficiency: pd.DataFrame, acc_md: str, eff_md: str,
                reference_csv: Path = REFERENCE_CSV) -> tuple[OutputFile, ...]:
    """The accuracy and efficiency files and plots, in the order they are written; a file that
    cannot be written raises ``OSError`` naming it (:attr:`OutputFile.named_errors`)."""

    def text(name: str, content: str) -> OutputFile:
        return OutputFile(name, lambda path: write_text_atomic(path, content), True)

    return (
        text("accuracy.csv", accuracy.to_csv(index=False, float_format="%.4f")),
        text("efficiency.csv", efficiency.to_csv(index=False, float_format="%.6g")),
        text("accuracy.md", acc_md),
        text("efficiency.md", eff_md),
        OutputFile("figure2.png", lambda path: figure2(efficiency, path, reference_csv), True),
        OutputFile("device_hours.png", lambda path: accuracy_vs_device_hours(efficiency, path),
                   True))
