"""Summaries, CSV files and the Figure 1 plot for ``python -m bench theory``.

Files are written atomically (:mod:`core.atomic`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import pandas as pd  # noqa: E402

from bench.theory.sweeps import KERNEL_VARIANTS, ROW_COLUMNS  # noqa: E402
from core.atomic import atomic_file, write_json_atomic, write_text_atomic  # noqa: E402

GROUP_KEYS: tuple[str, ...] = (
    "source", "sweep", "variant", "width", "depth", "lam_tau", "lam_tau_hat",
)
SUMMARY_COLUMNS: tuple[str, ...] = (
    *GROUP_KEYS, "n_seeds", "n_tasks", "diff_mean", "diff_std_seeds", "diff_std_tasks",
    "rel_diff_mean", "err_mtl_mean", "err_anil_mean",
)
"""``diff_mean``: mean over seeds of each seed's mean ``||F_ANIL - F_MTL||_2`` over its test
tasks; ``diff_std_seeds``: standard deviation of those seed means (the spread drawn in the
figure); ``diff_std_tasks``: standard deviation over all test tasks pooled."""

VARIANT_LABELS = {
    "printed": "kernel: Lemma 1 as printed ($t=\\infty$)",
    "eq61": "kernel: $\\Phi'_{ANIL}$ of eq. (61) ($t=\\infty$)",
    "eq61-finite-t": "kernel: eq. (61) at the trained nets' $\\eta t$ (Lemma 2)",
}
VARIANT_STYLES = {
    "printed": dict(color="C0", linestyle="-"),
    "eq61": dict(color="C1", linestyle="--"),
    "eq61-finite-t": dict(color="C2", linestyle=":"),
}
PANELS = (
    ("depth", "depth", "(a) depth $L$"),
    ("train_lam_tau", "lam_tau", "(b) training inner loop $\\lambda\\tau$"),
    ("test_lam_tau_hat", "lam_tau_hat", "(c) test-time fine-tuning $\\lambda\\hat\\tau$"),
)


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    write_text_atomic(path, frame.to_csv(index=False, float_format="%.10g"))


def write_json(path: Path, payload: dict) -> None:
    write_json_atomic(path, payload, indent=2, sort_keys=True)


def rows_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """Per-task rows as a frame with the documented column order."""
    frame = pd.DataFrame(list(rows))
    missing = [c for c in ROW_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"rows lack the columns {missing}")
    return frame[list(ROW_COLUMNS)]


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Aggregate per seed (mean over test tasks), then across seeds (see SUMMARY_COLUMNS)."""
    keys = list(GROUP_KEYS)
    per_seed = rows.groupby([*keys, "seed"], sort=False).agg(
        diff=("diff", "mean"), rel_diff=("rel_diff", "mean"), err_mtl=("err_mtl", "mean"),
        err_anil=("err_anil", "mean"), n_tasks=("task", "size"),
    ).reset_index()
    summary = per_seed.groupby(keys, sort=False).agg(
        n_seeds=("seed", "nunique"), n_tasks=("n_tasks", "sum"), diff_mean=("diff", "mean"),
        diff_std_seeds=("diff", lambda s: float(s.std(ddof=1)) if len(s) > 1 else 0.0),
        rel_diff_mean=("rel_diff", "mean"), err_mtl_mean=("err_mtl", "mean"),
        err_anil_mean=("err_anil", "mean"),
    ).reset_index()
    task_std = rows.groupby(keys, sort=False)["diff"].std(ddof=0).rename("diff_std_tasks")
    summary = summary.merge(task_std.reset_index(), on=keys)
    return summary[list(SUMMARY_COLUMNS)]


def _curve(summary: pd.DataFrame, sweep: str, source: str, variant: str, width: int,
           x_key: str) -> pd.DataFrame:
    selected = summary[
        (summary["sweep"] == sweep) & (summary["source"] == source)
        & (summary["variant"] == variant) & (summary["width"] == width)
    ]
    return selected.sort_values(x_key)


def plot_figure(summary: pd.DataFrame, path: Path, title_note: str = "") -> None:
    """Three panels like the paper's Figure 1: kernel curves (bands: +-1 std over seeds) and
    trained networks (error bars), ``||F_ANIL - F_MTL||_2`` on the query points."""
    path = Path(path)
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    widths = sorted(w for w in summary["width"].unique() if w > 0)
    for axis, (sweep, x_key, x_label) in zip(axes, PANELS):
        for variant in KERNEL_VARIANTS:
            curve = _curve(summary, sweep, "kernel", variant, 0, x_key)
            if curve.empty:
                continue
            style = VARIANT_STYLES[variant]
            axis.plot(curve[x_key], curve["diff_mean"], label=VARIANT_LABELS[variant], **style)
            axis.fill_between(
                curve[x_key], curve["diff_mean"] - curve["diff_std_seeds"],
                curve["diff_mean"] + curve["diff_std_seeds"], color=style["color"], alpha=0.15,
            )
        for index, width in enumerate(widths):
            curve = _curve(summary, sweep, "trained", "trained", width, x_key)
            if curve.empty:
                continue
            axis.errorbar(
                curve[x_key], curve["diff_mean"], yerr=curve["diff_std_seeds"],
                marker="os^D"[index % 4], color=f"C{3 + index}", capsize=3, linestyle="-",
                linewidth=0.8,
                label=f"trained, width {width}",
            )
        axis.set_title(f"{x_label}   [{_fixed_values(summary, sweep)}]", fontsize=10)
        axis.set_xlabel(x_label[4:])
        axis.set_ylabel(r"$\|F_{ANIL} - F_{MTL}\|_2$, mean over test tasks")
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    for axis in axes[1:]:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=9)
    figure.suptitle(
        "MTL vs ANIL test predictions on the synthetic regression of Wang, Zhao & Li (2021), "
        f"Sec. 5.1{title_note}", fontsize=11,
    )
    figure.tight_layout(rect=(0, 0.1, 1, 0.95))
    try:
        with atomic_file(path) as handle:
            figure.savefig(handle, dpi=130, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(figure)


def _fixed_values(summary: pd.DataFrame, sweep: str) -> str:
    selected = summary[summary["sweep"] == sweep]
    if selected.empty:
        return ""
    lam_tau = f"$\\lambda\\tau$={_one(selected['lam_tau'])}"
    lam_tau_hat = f"$\\lambda\\hat\\tau$={_one(selected['lam_tau_hat'])}"
    depth = f"$L$={_one(selected['depth'])}"
    if sweep == "depth":
        return f"{lam_tau}, {lam_tau_hat}"
    if sweep == "train_lam_tau":
        return f"{depth}, {lam_tau_hat}"
    return f"{depth}, {lam_tau}"


def _one(values: pd.Series) -> str:
    unique = sorted(values.unique())
    return ",".join(f"{v:g}" for v in unique)


def format_table(summary: pd.DataFrame, sweep: str, x_key: str, x_values: Sequence[float] | None
                 = None) -> str:
    """Plain-text table for one sweep: one line per x value, one column per curve."""
    selected = summary[summary["sweep"] == sweep]
    if selected.empty:
        return ""
    curves = []
    for (source, variant, width), _ in selected.groupby(["source", "variant", "width"], sort=False):
        curves.append((source, variant, width))
    header = [x_key] + [
        (VARIANT_KEY_SHORT.get(variant, variant) if source == "kernel" else f"trained w={width}")
        for source, variant, width in curves
    ]
    xs = sorted(selected[x_key].unique())
    if x_values is not None:
        xs = [x for x in xs if any(math.isclose(x, v) for v in x_values)]
    lines = ["  ".join(f"{h:>22}" for h in header)]
    for x in xs:
        cells = [f"{x:>22g}"]
        for source, variant, width in curves:
            row = selected[
                (selected["source"] == source) & (selected["variant"] == variant)
                & (selected["width"] == width) & (selected[x_key] == x)
            ]
            if row.empty:
                cells.append(f"{'-':>22}")
            else:
                mean, std = row["diff_mean"].iloc[0], row["diff_std_seeds"].iloc[0]
                cells.append(f"{f'{mean:.3f} +- {std:.3f}':>22}")
        lines.append("  ".join(cells))
    return "\n".join(lines)


VARIANT_KEY_SHORT = {
    "printed": "kernel printed",
    "eq61": "kernel eq61",
    "eq61-finite-t": "kernel eq61 finite-t",
}
