"""Summaries, CSV files and the Figure 1 plot for ``python -m bench theory``.

Files are written atomically (:mod:`core.atomic`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bench.report.figure_kit import finish, unique_handles
from bench.theory.sweeps import KERNEL_VARIANTS, ROW_COLUMNS
from core.atomic import atomic_file, write_json_atomic, write_text_atomic

GROUP_KEYS: tuple[str, ...] = (
    "source", "sweep", "variant", "width", "depth", "lam_tau", "lam_tau_hat",
)
SUMMARY_COLUMNS: tuple[str, ...] = (
    *GROUP_KEYS, "n_seeds", "n_tasks", "diff_mean", "diff_std_seeds", "diff_std_tasks",
    "rel_diff_mean", "err_mtl_mean", "err_anil_mean", "label_std_mean",
    "diff_normalized_mean", "diff_normalized_std_seeds", "diff_zscored_mean",
    "diff_zscored_std_seeds",
)
"""``diff_mean``: mean over seeds of each seed's mean ``||F_ANIL - F_MTL||_2`` over its test
tasks; ``diff_std_seeds``: standard deviation of those seed means (the spread drawn in the
figure); ``diff_std_tasks``: standard deviation over all test tasks pooled.
``label_std_mean``: mean over seeds of the training-label standard deviation;
``diff_normalized_*`` and ``diff_zscored_*``: the same aggregation of the per-task columns
``diff_normalized`` (``diff / label_std``, per seed) and ``diff_zscored`` (see
``sweeps.ROW_COLUMNS``; empty for trained networks)."""

VARIANT_LABELS = {
    "eq61": "kernel: eq. (61), $\\Theta - K$ in $\\Phi'_{ANIL}$ ($t=\\infty$)",
    "printed": "kernel: Lemma 1 verbatim, $\\Theta$ in $\\Phi'_{ANIL}$ ($t=\\infty$)",
    "eq61-finite-t": "kernel: eq. (61) at the trained nets' $\\eta t$ (Lemma 2)",
}
"""Legend labels in ``KERNEL_VARIANTS`` order: the eq. (61) form leads, the printed Lemma 1 is
the verbatim variant. The CSV files keep the variant names ``eq61``, ``printed``,
``eq61-finite-t`` and ``trained``."""
VARIANT_STYLES = {
    "eq61": dict(color="C0", linestyle="-"),
    "printed": dict(color="C1", linestyle="--"),
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


def seed_means(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (curve, sweep point, seed): the mean of each per-task column over the test tasks."""
    return rows.groupby([*GROUP_KEYS, "seed"], sort=False).agg(
        diff=("diff", "mean"), rel_diff=("rel_diff", "mean"), err_mtl=("err_mtl", "mean"),
        err_anil=("err_anil", "mean"), label_std=("label_std", "mean"),
        diff_normalized=("diff_normalized", "mean"), diff_zscored=("diff_zscored", "mean"),
        n_tasks=("task", "size"),
    ).reset_index()


def _std_seeds(values: pd.Series) -> float:
    """Sample standard deviation over seeds (0 for a single seed; NaN for an empty column)."""
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0 * float(values.iloc[0])


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Aggregate per seed (mean over test tasks), then across seeds (see SUMMARY_COLUMNS)."""
    keys = list(GROUP_KEYS)
    per_seed = seed_means(rows)
    summary = per_seed.groupby(keys, sort=False).agg(
        n_seeds=("seed", "nunique"), n_tasks=("n_tasks", "sum"), diff_mean=("diff", "mean"),
        diff_std_seeds=("diff", _std_seeds),
        rel_diff_mean=("rel_diff", "mean"), err_mtl_mean=("err_mtl", "mean"),
        err_anil_mean=("err_anil", "mean"), label_std_mean=("label_std", "mean"),
        diff_normalized_mean=("diff_normalized", "mean"),
        diff_normalized_std_seeds=("diff_normalized", _std_seeds),
        diff_zscored_mean=("diff_zscored", "mean"),
        diff_zscored_std_seeds=("diff_zscored", _std_seeds),
    ).reset_index()
    task_std = rows.groupby(keys, sort=False)["diff"].std(ddof=0).rename("diff_std_tasks")
    summary = summary.merge(task_std.reset_index(), on=keys)
    return summary[list(SUMMARY_COLUMNS)]


RATIO_COLUMNS: tuple[str, ...] = (
    "source", "variant", "width", "labels", "depth_low", "depth_high", "n_seeds", "ratio_min",
    "ratio_median", "ratio_max", "seeds", "ratios",
)
"""One row per curve and label scale of :func:`depth_ratios`; ``labels`` is ``raw`` (the
``diff`` column; ``diff_normalized`` has the same ratios, since one seed's two depths share
its label scale) or ``zscored`` (``diff_zscored``, kernel curves only)."""


def depth_ratios(rows: pd.DataFrame) -> pd.DataFrame:
    """Per-seed ratio of the difference at the shallowest to the deepest depth of the depth sweep.

    For each curve and seed: the mean over test tasks of ``||F_ANIL - F_MTL||`` at the curve's
    shallowest depth ``depth_low`` divided by the same mean at its deepest ``depth_high``; then
    the minimum, median and maximum over seeds. A spread, not a slope: how much the difference
    falls between the two depths, seed by seed. Curves with a single depth are left out.
    """
    depth_rows = rows[rows["sweep"] == "depth"]
    records: list[dict] = []
    per_seed = seed_means(depth_rows)
    for source, variant, width in curve_order(per_seed):
        curve = per_seed[
            (per_seed["source"] == source) & (per_seed["variant"] == variant)
            & (per_seed["width"] == width)
        ]
        low, high = int(curve["depth"].min()), int(curve["depth"].max())
        if low == high:
            continue
        for labels, column in (("raw", "diff"), ("zscored", "diff_zscored")):
            by_depth = curve.pivot_table(index="seed", columns="depth", values=column,
                                         dropna=False)
            if low not in by_depth or high not in by_depth:
                continue
            ratio = (by_depth[low] / by_depth[high]).dropna()
            if ratio.empty:
                continue
            records.append({
                "source": source, "variant": variant, "width": int(width), "labels": labels,
                "depth_low": low, "depth_high": high, "n_seeds": len(ratio),
                "ratio_min": float(ratio.min()), "ratio_median": float(ratio.median()),
                "ratio_max": float(ratio.max()), "seeds": [int(seed) for seed in ratio.index],
                "ratios": [float(value) for value in ratio],
            })
    return pd.DataFrame(records, columns=list(RATIO_COLUMNS))


def format_ratios(ratios: pd.DataFrame) -> str:
    """Plain-text lines: one per curve and label scale, min / median / max over seeds."""
    lines = []
    for row in ratios.itertuples(index=False):
        name = (VARIANT_KEY_SHORT.get(row.variant, row.variant) if row.source == "kernel"
                else f"trained w={row.width}")
        lines.append(
            f"  {name:<22} L={row.depth_low}/L={row.depth_high}  {row.labels:<8} "
            f"{row.ratio_min:7.2f} / {row.ratio_median:7.2f} / {row.ratio_max:7.2f}   "
            f"({row.n_seeds} seeds)"
        )
    return "\n".join(lines)


def _curve(summary: pd.DataFrame, sweep: str, source: str, variant: str, width: int,
           x_key: str) -> pd.DataFrame:
    selected = summary[
        (summary["sweep"] == sweep) & (summary["source"] == source)
        & (summary["variant"] == variant) & (summary["width"] == width)
    ]
    return selected.sort_values(x_key)


VALUE_AXIS_LABELS = {
    "diff": r"$\|F_{ANIL} - F_{MTL}\|_2$, raw labels",
    "diff_normalized": r"$\|F_{ANIL} - F_{MTL}\|_2$ / training-label std",
}


def plot_figure(summary: pd.DataFrame, path: Path, title_note: str = "",
                value: str = "diff") -> None:
    """Write :func:`figure1_figure` to ``path`` atomically (its suffix names the format)."""
    path = Path(path)
    figure = figure1_figure(summary, title_note, value)
    with atomic_file(path) as handle:
        figure.savefig(handle, dpi=130, format=path.suffix.lstrip(".") or "png")


def figure1_figure(summary: pd.DataFrame, title_note: str = "", value: str = "diff") -> Figure:
    """Three panels like the paper's Figure 1: kernel curves (the mean over seeds, a band of
    +-1 standard deviation over seeds) and trained networks (error bars, the same spread),
    ``||F_ANIL - F_MTL||_2`` on the query points, mean over test tasks; ``value`` is ``diff``
    (raw labels) or ``diff_normalized``. Depth ticks are whole numbers."""
    if value not in VALUE_AXIS_LABELS:
        raise ValueError(f"unknown value {value!r}; choose one of {tuple(VALUE_AXIS_LABELS)}")
    mean_key, std_key = f"{value}_mean", f"{value}_std_seeds"
    figure = Figure(figsize=(15, 4.4))
    FigureCanvasAgg(figure)
    axes = [figure.add_subplot(1, 3, i + 1) for i in range(3)]
    widths = sorted(w for w in summary["width"].unique() if w > 0)
    for axis, (sweep, x_key, x_label) in zip(axes, PANELS):
        for variant in KERNEL_VARIANTS:
            curve = _curve(summary, sweep, "kernel", variant, 0, x_key)
            if curve.empty:
                continue
            style = VARIANT_STYLES[variant]
            axis.plot(curve[x_key], curve[mean_key], label=VARIANT_LABELS[variant], **style)
            axis.fill_between(
                curve[x_key], curve[mean_key] - curve[std_key],
                curve[mean_key] + curve[std_key], color=style["color"], alpha=0.15,
            )
        for index, width in enumerate(widths):
            curve = _curve(summary, sweep, "trained", "trained", width, x_key)
            if curve.empty:
                continue
            axis.errorbar(
                curve[x_key], curve[mean_key], yerr=curve[std_key],
                marker="os^D"[index % 4], color=f"C{3 + index}", capsize=3, linestyle="-",
                linewidth=0.8,
                label=f"trained, width {width}",
            )
        axis.set_title(f"{x_label}   [{_fixed_values(summary, sweep)}]", fontsize=10)
        axis.set_xlabel(x_label[4:])
        if x_key == "depth":
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(VALUE_AXIS_LABELS[value])
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
    handles, labels = unique_handles(axes)
    seeds = sorted({int(n) for n in summary["n_seeds"].unique()})
    band = (f"Lines: mean over {'/'.join(map(str, seeds))} task seed(s) of each seed's mean "
            "over its test tasks; shaded band and error bars: +-1 standard deviation of those "
            "seed means (0 with one seed).")
    return finish(
        figure, axes,
        "MTL vs ANIL test predictions on the synthetic regression of Wang, Zhao & Li (2021), "
        f"Sec. 5.1{title_note}", [band], (handles, labels), columns=4)


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
                 = None, value: str = "diff") -> str:
    """Plain-text table for one sweep: one line per x value, one column per curve (the lead
    curve first), cells ``{value}_mean +- {value}_std_seeds``; ``value`` is ``diff``,
    ``diff_normalized`` or ``diff_zscored``. Curves without that value are left out."""
    selected = summary[(summary["sweep"] == sweep) & summary[f"{value}_mean"].notna()]
    if selected.empty:
        return ""
    curves = curve_order(selected)
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
                mean, std = row[f"{value}_mean"].iloc[0], row[f"{value}_std_seeds"].iloc[0]
                cells.append(f"{f'{mean:.3f} +- {std:.3f}':>22}")
        lines.append("  ".join(cells))
    return "\n".join(lines)


VARIANT_KEY_SHORT = {
    "eq61": "kernel eq61",
    "printed": "verbatim (printed)",
    "eq61-finite-t": "kernel eq61 finite-t",
}


def curve_order(frame: pd.DataFrame) -> list[tuple[str, str, int]]:
    """The ``(source, variant, width)`` curves present in ``frame``, the lead curve first:
    kernel curves in ``KERNEL_VARIANTS`` order, then trained networks by width."""
    curves = frame[["source", "variant", "width"]].drop_duplicates().itertuples(index=False)
    rank = {variant: index for index, variant in enumerate(KERNEL_VARIANTS)}

    def key(curve: tuple[str, str, int]) -> tuple[int, int, str, int]:
        source, variant, width = curve
        return (source != "kernel", rank.get(variant, len(rank)), variant, int(width))

    return sorted((tuple(curve) for curve in curves), key=key)
