"""The L2-penalty table, the paper's Table 5 (Wang, Zhao & Li, ICML 2021, App. C.2): test
accuracy of the unified protocol against the L2 penalty lambda = 1/C of its logistic-regression
head, for trained models re-evaluated by ``bench eval --logreg-c ...``.

``bench table`` writes it when the results folder holds eval results (``<out>/evals``):

- ``l2_penalty.csv``: one row per (model, evaluation data, ways, shots, episodes, seed, C):
  C, lambda, mean, 95% CI over episodes; the paper's Table 5 (``bench/reference/paper.csv``,
  table 5, ``l2_penalty_<lambda>``) as ``reported`` rows;
- ``l2_penalty.md``: one row per such curve, one column per lambda (2 significant digits, so
  C = 3 and the paper's 0.33 share a column; more where one curve needs them); then, for each
  measured curve whose penalties were evaluated on the same episodes, the paired difference of
  every lambda from the curve's best (mean per-episode difference, 95% CI over episodes): the
  shape of a curve is a paired question, and its CI is far narrower than those of the means;
- ``l2_penalty.png``: accuracy against lambda (log axis), one line per model, 95% CIs shaded,
  one panel per evaluation data, ways and shots; the reported curve dashed in its own panel.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bench.store.eval_files import load_evals
from bench.report.figure_kit import finish, grid, log_axis, save_png, short_names, style_map
from bench.common.stats import episode_ci95
from bench.report.method_names import display_name
from bench.report.output import OutputFile, Section, write_files
from bench.reference import REFERENCE_CSV
from core.atomic import write_text_atomic
from datasets import by_benchmark

REFERENCE_TABLE = "5"
REFERENCE_METRIC = "l2_penalty_"
OUTPUTS = ("l2_penalty.csv", "l2_penalty.md", "l2_penalty.png")
COLUMNS = ["model", "method", "backbone", "budget", "trained_on", "dataset", "split", "ways",
           "shots", "queries", "episodes", "seed", "C", "l2_penalty", "mean", "ci95", "source"]
CURVE = ["model", "method", "backbone", "budget", "trained_on", "dataset", "split", "ways",
         "shots", "queries", "episodes", "seed", "source"]


def measured_rows(evals: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per unified-protocol eval result."""
    rows = []
    for r in evals:
        s = r["settings"]
        if s["protocol"] != "unified":
            continue
        config = r["model"]["config"]
        C = float(s["logreg_c"])
        rows.append({
            "model": f"{r['source_model']['key']} ({r['source_model']['sha256'][:8]})",
            "method": display_name(config), "backbone": config["budget"]["backbone"],
            "budget": config["budget"]["name"], "trained_on": r["model"]["dataset"]["name"],
            "dataset": s["dataset"], "split": s["split"], "ways": int(s["ways"]),
            "shots": int(s["shots"]), "queries": int(s["queries"]),
            "episodes": int(s["episodes"]), "seed": int(s["seed"]), "C": C,
            "l2_penalty": 1.0 / C, "mean": float(r["result"]["mean"]),
            "ci95": float(r["result"]["ci95"]), "source": "measured",
            "_episode_hash": r["episode_hash"], "_accuracies": r["result"].get("accuracies")})
    return pd.DataFrame(rows, columns=[*COLUMNS, "_episode_hash", "_accuracies"])


def paired_markdown(measured: pd.DataFrame) -> str:
    """Per measured curve evaluated on one episode set (one episode hash, per-episode
    accuracies of equal length under every penalty): the paired difference of each lambda from
    the curve's best, ``d ± CI`` in points (mean over episodes of the per-episode difference,
    95% CI over episodes); ``best`` in the best lambda's column. Empty when no curve has two
    penalties on one episode set."""
    labels = penalty_labels([group["l2_penalty"].tolist() for _, group in
                             measured.groupby(CURVE, sort=False, dropna=False)])
    order = sorted(set(labels.values()), key=float)
    rows = []
    for _, group in measured.groupby(CURVE, sort=False, dropna=False):
        accuracies = [a for a in group["_accuracies"] if a is not None]
        if len(group) < 2 or group["_episode_hash"].nunique() != 1 \
                or len(accuracies) != len(group) or len({len(a) for a in accuracies}) != 1:
            continue
        best = group.loc[group["mean"].idxmax()]
        reference = np.asarray(best["_accuracies"], dtype=np.float64)
        cells = {}
        for _, row in group.iterrows():
            label = labels[row["l2_penalty"]]
            if row["l2_penalty"] == best["l2_penalty"]:
                cells[label] = "best"
                continue
            diff = np.asarray(row["_accuracies"], dtype=np.float64) - reference
            cells[label] = f"{diff.mean():+.2f} ± {episode_ci95(diff):.2f}"
        first = group.iloc[0]
        rows.append(f"| {first['method']} {first['budget']}: {first['model']} | "
                    f"{first['dataset']} {first['split']} | {int(first['ways'])} | "
                    f"{int(first['shots'])} | {int(first['episodes'])} | "
                    + " | ".join(cells.get(v, "–") for v in order) + " |")
    if not rows:
        return ""
    return ("\n### Paired difference from each curve's best λ (points)\n\n"
            "| model | data | ways | shots | episodes | "
            + " | ".join(f"λ={v}" for v in order) + " |\n"
            + "|" + "---|" * (5 + len(order)) + "\n" + "\n".join(rows) + "\n"
            "\nEvery λ of a curve was evaluated on the same episodes (one episode hash): "
            "accuracy under λ minus accuracy under the curve's best λ, episode by episode; "
            "mean ± 95% CI over episodes (1.96 · std / √episodes).\n")


def reported_rows(reference_csv: Path = REFERENCE_CSV) -> pd.DataFrame:
    """The paper's Table 5 (lambda as the paper writes it; C = 1/lambda)."""
    if not Path(reference_csv).exists():
        return pd.DataFrame(columns=COLUMNS)
    ref = pd.read_csv(reference_csv, dtype={"table": str})
    ref = ref[(ref["table"] == REFERENCE_TABLE)
              & ref["metric"].astype(str).str.startswith(REFERENCE_METRIC)]
    to_ours = by_benchmark()
    rows = []
    for _, r in ref.iterrows():
        penalty = float(str(r["metric"])[len(REFERENCE_METRIC):])
        dataset = to_ours.get(r["dataset"], r["dataset"])
        rows.append({
            "model": f"{r['method']} ({r['backbone']}, reported)", "method": r["method"],
            "backbone": r["backbone"], "budget": "paper", "trained_on": dataset,
            "dataset": dataset, "split": "test", "ways": int(r["ways"]),
            "shots": int(r["shots"]), "queries": np.nan, "episodes": np.nan, "seed": np.nan,
            "C": 1.0 / penalty, "l2_penalty": penalty, "mean": float(r["value"]),
            "ci95": float(r["ci95"]) if pd.notna(r["ci95"]) else np.nan,
            "source": str(r["source"])})
    return pd.DataFrame(rows, columns=COLUMNS)


def _sort(frame: pd.DataFrame) -> pd.DataFrame:
    reported = frame["source"] != "measured"
    return (frame.assign(_reported=reported)
            .sort_values(["dataset", "ways", "shots", "_reported", "model", "split", "episodes",
                          "seed", "l2_penalty"], key=lambda s: s.map(
                              lambda v: str(v).lower() if isinstance(v, str) else v))
            .drop(columns="_reported").reset_index(drop=True))


def penalty_labels(curves: list[list[float]]) -> dict[float, str]:
    """Column label of each lambda of ``curves`` (the penalties of each curve): 2 significant
    digits, so C = 3 (lambda 0.333...) shares the paper's 0.33 column; more digits only where
    two distinct penalties of one curve would share a label."""
    distinct = sorted({p for curve in curves for p in curve})
    for digits in (2, 3, 4, 6, 12):
        labels = {p: f"{float(f'{p:.{digits}g}'):g}" for p in distinct}
        if all(len({labels[p] for p in set(curve)}) == len(set(curve)) for curve in curves):
            return labels
    return {p: repr(p) for p in distinct}


def _cell(mean: float, ci: float, reported: bool) -> str:
    if reported:
        return f"{mean:.2f}‡" if math.isnan(ci) else f"{mean:.2f} ± {ci:.2f}‡"
    return f"{mean:.2f} ± {ci:.2f}"


def l2_markdown(frame: pd.DataFrame) -> str:
    """One row per curve, one column per lambda."""
    labels = penalty_labels([group["l2_penalty"].tolist() for _, group in
                             frame.groupby(CURVE, sort=False, dropna=False)])
    order = sorted(set(labels.values()), key=float)
    lines = ["| model | data | ways | shots | episodes | seed | "
             + " | ".join(f"λ={v}" for v in order) + " |",
             "|" + "---|" * (6 + len(order))]
    curves = frame.assign(_label=frame["l2_penalty"].map(labels))
    for _, group in curves.groupby(CURVE, sort=False, dropna=False):
        first = group.iloc[0]
        reported = first["source"] != "measured"
        cells = {row["_label"]: _cell(row["mean"], row["ci95"], reported)
                 for _, row in group.iterrows()}
        name = first["model"] if reported else (
            f"{first['method']} {first['backbone']} {first['budget']}, trained on "
            f"{first['trained_on']}: {first['model']}")
        data = f"{first['dataset']} {first['split']}"
        number = "–" if reported else f"{int(first['episodes'])}"
        seed = "–" if reported else f"{int(first['seed'])}"
        lines.append(f"| {name} | {data} | {int(first['ways'])} | {int(first['shots'])} | "
                     f"{number} | {seed} | "
                     + " | ".join(cells.get(v, "–") for v in order) + " |")
    return "\n".join(lines) + "\n"


def _panel_title(key: tuple) -> str:
    dataset, ways, shots = key
    return f"{dataset} {int(ways)}-way {int(shots)}-shot"


def l2_plot(frame: pd.DataFrame, path: Path) -> Path:
    """Write :func:`l2_figure` to ``path`` atomically."""
    return save_png(l2_figure(frame), path)


def l2_figure(frame: pd.DataFrame) -> Figure:
    """Accuracy against lambda (log axis), one line per curve with its 95% CI shaded (a curve
    of one penalty: a point with its CI as a bar), one panel per (evaluation data, ways,
    shots). Legend names are the methods (lettered where one method has several curves); the
    footnote says which model, episodes and seed each stands for."""
    panels = list(frame.groupby(["dataset", "ways", "shots"], sort=True))
    curves = [(key, curve.sort_values("l2_penalty")) for key, panel in panels
              for _, curve in panel.groupby(CURVE, sort=True, dropna=False)]
    entries = []
    for _, curve in curves:
        first = curve.iloc[0]
        reported = first["source"] != "measured"
        entries.append((f"{first['method']}" + (" (paper)" if reported else ""), [
            ("model", "" if reported else str(first["model"])),
            ("backbone", str(first["backbone"])),
            ("budget", "" if reported else str(first["budget"])),
            ("trained on", "" if reported else str(first["trained_on"])),
            ("test episodes", "" if reported else f"{int(first['episodes'])}"),
            ("episode seed", "" if reported else f"{int(first['seed'])}"),
            ("source", str(first["source"]) if reported else "")]))
    names, notes = short_names(entries)
    styles = style_map(names)
    figure, axes = grid(len(panels), width=5.6, height=4.4)
    by_panel = {key: axis for (key, _), axis in zip(panels, axes)}
    for (key, curve), name in zip(curves, names):
        axis, style = by_panel[key], styles[name]
        reported = curve.iloc[0]["source"] != "measured"
        x, y, ci = curve["l2_penalty"], curve["mean"], curve["ci95"]
        if reported or len(curve) > 1:
            axis.plot(x, y, "--" if reported else "-", marker=style["marker"],
                      color=style["color"], label=name)
        if not reported and len(curve) > 1:
            axis.fill_between(x, y - ci, y + ci, color=style["color"], alpha=0.2, linewidth=0)
        elif not reported:
            axis.errorbar(x, y, yerr=ci, marker=style["marker"], color=style["color"],
                          capsize=3, linestyle="none", label=name)
    for (key, panel), axis in zip(panels, axes):
        low, high = float(panel["l2_penalty"].min()), float(panel["l2_penalty"].max())
        log_axis(axis, low / 2.0, high * 2.0)
        axis.set_xlabel("L2 penalty λ = 1/C of the logistic-regression head (log scale)")
        axis.set_ylabel("test accuracy, unified protocol (%)")
        axis.set_title(_panel_title(key), fontsize=10)
        axis.grid(True, which="major", alpha=0.3)
    notes = notes + ["Shaded and bars: 95% CI over the test episodes of one model and one "
                     "episode set; dashed: as reported in the paper (Table 5, no CI)."]
    return finish(figure, axes, "Unified-protocol test accuracy against the L2 penalty of its "
                  "head (Wang et al. 2021, Table 5)", notes)


def build_l2_table(evals: list[dict[str, Any]], reference_csv: Path = REFERENCE_CSV
                   ) -> Section | None:
    """The Markdown section and :data:`OUTPUTS` of the eval results ``evals``, or None when
    none of them is of the unified protocol (nothing to write then)."""
    measured = measured_rows(evals)
    if measured.empty:
        return None
    paired = paired_markdown(measured)
    measured = measured.drop(columns=["_episode_hash", "_accuracies"])
    frame = _sort(pd.concat([measured, reported_rows(reference_csv)], ignore_index=True))
    markdown = ("## Test accuracy (%) against the L2 penalty of the unified head (Table 5)\n\n"
                + l2_markdown(frame)
                + "\nλ = 1/C, the L2 penalty of the logistic-regression head fitted on each "
                "episode's L2-normalised support features (scikit-learn's C; `bench eval "
                "--logreg-c`), shown to 2 significant digits (the CSV has C and λ exactly). "
                "± 95% CI over test episodes of one model and one episode set. ‡ as reported "
                "in the paper (Table 5, no CI), a model of its own, for the shape.\n"
                + paired)
    csv = frame.to_csv(index=False, float_format="%.6g")

    def plot(path: Path) -> None:
        try:
            l2_plot(frame, path)
        except (ValueError, RuntimeError) as error:  # a plot problem never costs the table
            print(f"no {OUTPUTS[2]}: {error}", file=sys.stderr)

    return Section(markdown, (
        OutputFile(OUTPUTS[0], lambda path: write_text_atomic(path, csv)),
        OutputFile(OUTPUTS[1], lambda path: write_text_atomic(path, markdown)),
        OutputFile(OUTPUTS[2], plot)))


def make_l2_table(folder: Path, out_dir: Path | None = None,
                  reference_csv: Path = REFERENCE_CSV,
                  skipped: list[str] | None = None, write: bool = True) -> str | None:
    """Write :data:`OUTPUTS` into ``out_dir`` (default ``folder``) from the eval results under
    ``folder``; returns the Markdown section, or None when there is no unified-protocol eval
    result (nothing is written then). ``skipped``: as :func:`bench.store.eval_files.load_evals`'s
    (invalid eval files are listed there instead of raised); ``write`` False: nothing is
    written."""
    folder = Path(folder)
    section = build_l2_table(load_evals(folder, skipped), reference_csv)
    if section is None:
        return None
    if write:
        write_files(section.files, Path(out_dir) if out_dir is not None else folder)
    return section.markdown
