"""``bench table``: a pure function from result files to the paper's tables.

- accuracy (Wang et al. 2021, Table 3 layout): a row per method, backbone, protocol and budget;
  a column per dataset and shot count; cells "mean ± CI". Over two or more seeds the ± is a
  t-based 95% CI over seed means; a single-seed cell (marked †) shows the 95% CI over episodes.
  The paper's reported numbers (``results/reference/paper.csv``) appear as extra rows where
  method and dataset match.
- efficiency (Table 4 layout): accuracy, device-hours, device, images seen, speed-up relative to
  MetaOptNet under the same dataset, shots and budget.

Outputs: ``accuracy.csv``, ``accuracy.md``, ``efficiency.csv``, ``efficiency.md``, and the plots
``figure2.png`` (accuracy vs speed-up relative to MetaOptNet, the paper's Figure 2) and
``device_hours.png`` (accuracy vs device-hours); with eval results (``bench eval``), also the
L2-penalty table ``l2_penalty.{csv,md,png}`` (Table 5, :mod:`bench.l2_table`).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.results import RunResult, read_result
from core.atomic import write_text_atomic
from datasets import by_benchmark
from methods import METHODS
from methods import efficiency_reference as reference_method
from methods.plugins import MethodImportError, import_method
from methods.base import FewShotMethod
from bench.stats import EPISODE_CI_RULE, SEED_CI_RULE, seed_ci95
from bench.timing import TIMING_RULE

REFERENCE_CSV = Path(__file__).resolve().parents[1] / "results" / "reference" / "paper.csv"
SKIP_DIRS = {"reference", "speed", "theory", "evals", "models"}
"""Folders of a results folder that hold no run results (evals: ``bench eval``'s, models: model
files)."""


def display_name(config: dict[str, Any]) -> str:
    """The declared ``display_name`` of a result's method: registered here, or imported from
    the run's ``method_source``; its name when neither works (a method no longer available)."""
    method = config["method"]
    if method not in METHODS and config.get("method_source"):
        try:
            import_method(config["method_source"])
        except (MethodImportError, ValueError):
            pass
    return METHODS.get(method).display_name if method in METHODS else method


@dataclass(frozen=True)
class Reference:
    """The method that speed-ups are relative to (the class that declares
    ``efficiency_reference``; MetaOptNet in the paper's Table 4 and Figure 2)."""

    name: str
    display: str

    @property
    def speedup_column(self) -> str:
        return f"speedup_vs_{self.name}"


def efficiency_reference() -> Reference:
    cls = reference_method()
    return Reference(cls.name, cls.display_name)


def load_results(folder: Path) -> list[RunResult]:
    """Every result file under ``folder`` (recursively, skipping :data:`SKIP_DIRS`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"results folder {folder} does not exist; run `python -m bench "
                                "run ... --out DIR` first")
    files = sorted(p for p in folder.rglob("*.json")
                   if not SKIP_DIRS.intersection(p.relative_to(folder).parts[:-1]))
    return [read_result(p) for p in files]


def _column(dataset: str, ways: int, shots: int) -> str:
    return f"{dataset} {ways}-way {shots}-shot"


def accuracy_rows(results: list[RunResult]) -> pd.DataFrame:
    """Long form: one row per (method, backbone, protocol, budget, dataset, ways, shots)."""
    groups: dict[tuple, list[RunResult]] = defaultdict(list)
    for r in results:
        if r["status"] != "ok":
            continue
        c = r["config"]
        base = (c["method"], c["budget"]["backbone"], c["budget"]["name"], c["dataset"],
                c["ways"], c["shots"])
        if r.get("native_is_unified"):  # one row: native is the unified protocol
            groups[base + ("unified (= native)",)].append(r)
            continue
        for protocol in ("unified", "native"):
            if protocol in r["test"]:
                groups[base + (protocol,)].append(r)
    rows = []
    for (method, backbone, budget, dataset, ways, shots, protocol), runs in groups.items():
        key = protocol.split(" ")[0]
        means = [run["test"][key]["mean"] for run in runs]
        if len(runs) >= 2:
            ci, kind = seed_ci95(means), "seeds-t95"
        else:
            ci, kind = runs[0]["test"][key]["ci95"], "episodes-95"
        rows.append({
            "method": display_name(runs[0]["config"]), "backbone": backbone,
            "protocol": protocol,
            "budget": budget, "dataset": dataset, "ways": ways, "shots": shots,
            "seeds": len(runs), "episodes": int(np.mean([len(r["test"][key]["accuracies"])
                                                          for r in runs])),
            "mean": float(np.mean(means)), "ci95": float(ci), "ci_kind": kind,
            "source": "measured",
        })
    return pd.DataFrame(rows, columns=["method", "backbone", "protocol", "budget", "dataset",
                                       "ways", "shots", "seeds", "episodes", "mean", "ci95",
                                       "ci_kind", "source"])


def reference_rows(measured: pd.DataFrame, reference_csv: Path = REFERENCE_CSV,
                   table: str = "3", metric: str = "test_accuracy_pct") -> pd.DataFrame:
    """The paper's reported numbers for the (method, dataset) pairs present in ``measured``."""
    if measured.empty or not Path(reference_csv).exists():
        return measured.iloc[0:0]
    ref = pd.read_csv(reference_csv, dtype={"table": str})
    ref = ref[(ref["table"] == table) & (ref["metric"] == metric)]
    to_ours = by_benchmark()  # the paper's dataset names -> ours
    present = {(m.lower(), d) for m, d in zip(measured["method"], measured["dataset"])}
    rows = []
    for _, r in ref.iterrows():
        dataset = to_ours.get(r["dataset"])
        if dataset is None or (str(r["method"]).lower(), dataset) not in present:
            continue
        rows.append({"method": r["method"], "backbone": r["backbone"], "protocol": "reported",
                     "budget": "paper", "dataset": dataset, "ways": int(r["ways"]),
                     "shots": int(r["shots"]), "seeds": 0, "episodes": 0,
                     "mean": float(r["value"]),
                     "ci95": float(r["ci95"]) if pd.notna(r["ci95"]) else float("nan"),
                     "ci_kind": "as reported", "source": str(r["source"])})
    return pd.DataFrame(rows, columns=measured.columns)


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
    long = long.assign(column=[_column(d, w, s) for d, w, s in
                               zip(long["dataset"], long["ways"], long["shots"])],
                       cell=[_cell(m, c, k) for m, c, k in
                             zip(long["mean"], long["ci95"], long["ci_kind"])])
    keys = ["method", "backbone", "protocol", "budget"]
    columns = sorted(long["column"].unique())
    wide = long.pivot_table(index=keys, columns="column", values="cell", aggfunc="first")
    wide = wide.reindex(columns=columns).fillna("–").reset_index()
    wide = wide.sort_values(keys, key=lambda s: s.map(str.lower)).reset_index(drop=True)
    return _markdown(wide) + "\n"


def efficiency_rows(results: list[RunResult]) -> pd.DataFrame:
    groups: dict[tuple, list[RunResult]] = defaultdict(list)
    for r in results:
        if r["status"] != "ok":
            continue
        c = r["config"]
        groups[(c["method"], c["budget"]["backbone"], c["budget"]["name"], c["dataset"],
                c["ways"], c["shots"])].append(r)
    rows = []
    for (method, backbone, budget, dataset, ways, shots), runs in groups.items():
        unified = [run["test"]["unified"]["mean"] for run in runs]
        rows.append({
            "method": display_name(runs[0]["config"]), "backbone": backbone, "budget": budget,
            "dataset": dataset, "ways": ways, "shots": shots, "seeds": len(runs),
            "accuracy_unified": float(np.mean(unified)),
            "accuracy_native": float(np.mean([run["test"]["native"]["mean"] for run in runs])),
            "device_hours": float(np.mean([run["timings"]["device_hours"] for run in runs])),
            "unit": runs[0]["timings"]["device_hours_unit"],
            "device": runs[0]["provenance"]["device"],
            "images_seen": int(np.mean([run["timings"]["images_seen"] for run in runs])),
            "steps": int(np.mean([run["timings"]["steps"] for run in runs])),
        })
    frame = pd.DataFrame(rows, columns=["method", "backbone", "budget", "dataset", "ways",
                                        "shots", "seeds", "accuracy_unified", "accuracy_native",
                                        "device_hours", "unit", "device", "images_seen",
                                        "steps"])
    reference = efficiency_reference()
    speedup = []
    for row in frame.itertuples(index=False):
        ref = frame[(frame["method"] == reference.display) & (frame["dataset"] == row.dataset)
                    & (frame["ways"] == row.ways) & (frame["shots"] == row.shots)
                    & (frame["budget"] == row.budget) & (frame["unit"] == row.unit)]
        ok = not ref.empty and row.device_hours > 0
        speedup.append(float(ref["device_hours"].iloc[0] / row.device_hours) if ok
                       else float("nan"))
    return frame.assign(**{reference.speedup_column: speedup})


def efficiency_markdown(frame: pd.DataFrame, reference_csv: Path = REFERENCE_CSV) -> str:
    if frame.empty:
        return "_No finished results._\n"
    reference = efficiency_reference()
    shown = pd.DataFrame({
        "method": frame["method"], "backbone": frame["backbone"], "budget": frame["budget"],
        "dataset": [_column(d, w, s) for d, w, s in
                    zip(frame["dataset"], frame["ways"], frame["shots"])],
        "accuracy (unified)": frame["accuracy_unified"].map("{:.2f}".format),
        "accuracy (native)": frame["accuracy_native"].map("{:.2f}".format),
        "device-hours": [f"{h:.4f} {u}" for h, u in zip(frame["device_hours"], frame["unit"])],
        "images seen": frame["images_seen"].map("{:,}".format),
        f"speed-up vs {reference.display}": frame[reference.speedup_column].map(
            lambda v: "–" if np.isnan(v) else f"{v:.1f}x"),
        "device": frame["device"],
    }).sort_values(["dataset", "method"], key=lambda s: s.map(str.lower))
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
                lines.append(f"- {r['method']} {r['dataset']} {r['ways']}-way {r['shots']}-shot "
                             f"{r['metric']}: {r['value']} ({r['source']})")
    return "\n".join(lines) + "\n"


def _without_native_adaptation() -> str:
    """Display names of the registered methods that have no native adaptation."""
    return ", ".join(METHODS.get(n).display_name for n in METHODS.names()
                     if METHODS.get(n).adapt is FewShotMethod.adapt)


def failures(results: list[RunResult]) -> list[str]:
    return [f"- {r['key']}: {r['error']}" for r in results if r["status"] == "failed"]


def make_tables(folder: Path, out_dir: Path | None = None,
                reference_csv: Path = REFERENCE_CSV) -> str:
    """Read every result under ``folder``, write the four table files into ``out_dir``
    (default: ``folder``) and return the Markdown that ``bench table`` prints."""
    folder = Path(folder)
    out_dir = Path(out_dir) if out_dir is not None else folder
    results = load_results(folder)
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
              "‡ as reported in the paper (`results/reference/paper.csv`).\n"
              "Protocols: unified = fresh logistic-regression head on frozen L2-normalised "
              "features (Wang et al. 2021, Sec. 3.4); native = the method's own adaptation "
              "(a single \"unified (= native)\" row for methods without one, such as "
              f"{_without_native_adaptation()}); "
              "reported = the paper's number.\n")
    eff_md = ("## Training cost\n\n" + efficiency_markdown(efficiency, reference_csv)
              + f"\nTiming rule: {TIMING_RULE}.\n")
    if failed:
        tail = "\n### Failed runs\n\n" + "\n".join(failed) + "\n"
        acc_md += tail
        eff_md += tail
    write_text_atomic(out_dir / "accuracy.csv", accuracy.to_csv(index=False, float_format="%.4f"))
    write_text_atomic(out_dir / "efficiency.csv",
                      efficiency.to_csv(index=False, float_format="%.6g"))
    write_text_atomic(out_dir / "accuracy.md", acc_md)
    write_text_atomic(out_dir / "efficiency.md", eff_md)
    from bench.plots import accuracy_vs_device_hours, figure2

    figure2(efficiency, out_dir / "figure2.png", reference_csv)
    accuracy_vs_device_hours(efficiency, out_dir / "device_hours.png")
    from bench.l2_table import make_l2_table  # Table 5, from the eval results (if any)

    l2_md = make_l2_table(folder, out_dir, reference_csv)
    return acc_md + "\n" + eff_md + (f"\n{l2_md}" if l2_md else "")


