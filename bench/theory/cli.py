"""``python -m bench theory``: reproduce Figure 1 of Wang, Zhao & Li (ICML 2021) without JAX.

The default run (kernels only, plus a check of the analytic kernels against finite networks)
takes well under two minutes on two CPU cores; ``--trained`` adds real MTL and ANIL networks.
Outputs (under ``--out``, default ``results/theory/``):

- ``per_task.csv``: one row per (curve, sweep point, seed, test task); see ``sweeps.ROW_COLUMNS``;
- ``summary.csv``: mean and spread across seeds; see ``report.SUMMARY_COLUMNS``;
- ``figure1.png``: the three panels of Figure 1 with kernel and trained curves (raw labels);
- ``figure1_normalized.png``: the same in units of the training-label standard deviation;
- ``kernel_validation.csv``: analytic vs empirical kernels by depth and width;
- ``trained_runs.csv``: losses and seconds of every trained network (with ``--trained``);
- ``diagnostics.json``: the settings, wall times, the measured lambda * tau cancellation, each
  seed's training-label mean and std, and the per-seed ratio of the difference at the
  shallowest to the deepest depth (min, median, max; see ``report.depth_ratios``).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from bench.theory.kernels import ReluNetConfig
from bench.theory.options import DEFAULT_LAM_TAUS, add_arguments  # noqa: F401  (its API)
from bench.theory.report import (
    depth_ratios, format_ratios, format_table, plot_figure, rows_frame, summarize, write_csv,
    write_json,
)
from bench.theory.sweeps import (
    SweepGrid, kernel_sweeps, trained_networks_needed, trained_seed, all_points,
)
from bench.theory.tasks import ProblemConfig, label_std, make_tasks
from bench.theory.trained import TrainConfig
from bench.theory.validation import validate_kernels

@dataclasses.dataclass(frozen=True)
class _Settings:
    problem: ProblemConfig
    net: ReluNetConfig
    grid: SweepGrid
    trained_grid: SweepGrid | None
    train: TrainConfig | None


def _settings(args: argparse.Namespace) -> _Settings:
    """Validated configuration objects; raises ValueError with a message for bad options."""
    problem = ProblemConfig(n_test_tasks=args.test_tasks, normalization=args.normalization)
    net = ReluNetConfig(w_std=args.w_std, b_std=args.b_std)
    grid = SweepGrid(
        depths=tuple(args.depths), lam_taus=tuple(args.lam_taus), sweep_depth=args.sweep_depth,
        fixed_lam_tau=args.fixed_lam_tau, fixed_lam_tau_hat=args.fixed_lam_tau_hat,
    )
    if args.steps < 1 or not 0 < args.lr_scale < 2:
        raise ValueError(f"need --steps >= 1 and 0 < --lr-scale < 2; got {args.steps}, "
                         f"{args.lr_scale}")
    if not args.seeds:
        raise ValueError("--seeds needs at least one seed")
    if not args.trained:
        return _Settings(problem, net, grid, None, None)
    trained_grid = dataclasses.replace(
        grid, depths=tuple(args.trained_depths), lam_taus=tuple(args.trained_lam_taus),
    )
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device} asked for CUDA, which is not available here; "
                         "use --device cpu")
    for width in args.widths:
        TrainConfig(width=width)  # validates the width
    train = TrainConfig(
        width=args.widths[0], steps=args.steps, inner_steps=args.inner_steps,
        lr_scale=args.lr_scale, device=device,
    )
    return _Settings(problem, net, grid, trained_grid, train)


def _run_kernels(args, settings: _Settings) -> tuple[list[dict], float]:
    with tqdm(total=len(args.seeds), desc="kernel sweeps (seeds)", unit="seed") as bar:
        return kernel_sweeps(
            tuple(args.seeds), settings.grid, settings.problem, settings.net, args.steps,
            args.lr_scale, progress=bar.update,
        )


def _run_validation(args, settings: _Settings) -> pd.DataFrame:
    tasks = make_tasks(args.seeds[0], settings.problem)
    points = all_points(tasks)[: args.validate_points]
    cells = len(args.validate_depths) * len(args.validate_widths)
    with tqdm(total=cells, desc="kernel check (depth x width)", unit="cell") as bar:
        rows = validate_kernels(
            points, args.validate_depths, args.validate_widths, args.validate_draws,
            seed=args.seeds[0], net=settings.net, progress=lambda _: bar.update(1),
        )
    return pd.DataFrame([dataclasses.asdict(row) for row in rows])


def _run_trained(args, settings: _Settings) -> tuple[list[dict], pd.DataFrame]:
    assert settings.trained_grid is not None and settings.train is not None
    per_seed = trained_networks_needed(settings.trained_grid)
    total = per_seed * len(args.trained_seeds) * len(args.widths)
    rows, runs = [], []
    with tqdm(total=total, desc=f"trained networks ({settings.train.device})", unit="net") as bar:
        for width in args.widths:
            train = dataclasses.replace(settings.train, width=width)
            for seed in args.trained_seeds:
                seed_rows, log = trained_seed(
                    seed, settings.trained_grid, train, settings.problem, settings.net,
                    progress=bar.update,
                )
                rows += seed_rows
                runs += [dataclasses.asdict(run) for run in log]
    return rows, pd.DataFrame(runs)


SCALES = (
    ("diff", "raw labels (y = nu ||x - mu||^2)"),
    ("diff_normalized", "label-normalised: divided by the seed's training-label std"),
    ("diff_zscored", "labels z-scored (centred, then divided by the same std)"),
)


def _print_summary(summary: pd.DataFrame, ratios: pd.DataFrame, labels: dict[str, dict],
                   validation: pd.DataFrame | None, invariance: float,
                   timings: dict[str, float], out: Path) -> None:
    print("\n||F_ANIL - F_MTL||_2 on the query points: mean +- std over seeds. "
          "Lead curve: eq. (61), Theta - K in Phi'_ANIL; verbatim: Lemma 1 as printed.")
    stds, means = labels["label_std_by_seed"], labels["label_mean_by_seed"]
    print(f"Training labels per seed ({', '.join(stds)}): mean "
          f"{', '.join(f'{v:.2f}' for v in means.values())}; std "
          f"{', '.join(f'{v:.2f}' for v in stds.values())} "
          f"(std averaged over seeds: {sum(stds.values()) / len(stds):.2f})")
    for value, scale in SCALES:
        for sweep, x_key in (("depth", "depth"), ("train_lam_tau", "lam_tau"),
                             ("test_lam_tau_hat", "lam_tau_hat")):
            if value == "diff_zscored" and sweep != "depth":
                continue  # all three sweeps are in summary.csv
            table = format_table(summary, sweep, x_key, value=value)
            if table:
                print(f"\n[{sweep}, {scale}]\n{table}")
    if not ratios.empty:
        print("\nPer-seed ratio of the difference at the shallowest to the deepest depth "
              f"(min / median / max over seeds):\n{format_ratios(ratios)}")
    print(f"\nLargest relative change of F_ANIL (t = infinity, eq. (61) and verbatim forms) "
          f"across the training lambda*tau sweep: {invariance:.3e} (the cancellation predicts 0)")
    if validation is not None and not validation.empty:
        print("\nAnalytic vs empirical kernels, relative Frobenius error "
              "(mean of draws | median single draw):")
        for row in validation.itertuples():
            print(f"  L={row.depth:<3d} width={row.width:<6d} "
                  f"NTK {row.ntk_error_mean_kernel:.3f} | "
                  f"{row.ntk_error_single_median:.3f}   NNGP {row.nngp_error_mean_kernel:.3f} | "
                  f"{row.nngp_error_single_median:.3f}")
    print("\nWall times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print(f"Outputs in {out}/")


def _label_statistics(args: argparse.Namespace, problem: ProblemConfig) -> dict[str, dict]:
    """Mean and standard deviation (``tasks.label_std``) of every run seed's training labels."""
    seeds = sorted({*args.seeds, *(args.trained_seeds if args.trained else ())})
    tasks = {seed: make_tasks(seed, problem) for seed in seeds}
    return {
        "label_std_by_seed": {str(seed): label_std(t) for seed, t in tasks.items()},
        "label_mean_by_seed": {str(seed): float(t.y_train.mean()) for seed, t in tasks.items()},
    }


def run(args: argparse.Namespace) -> int:
    """Run the sweeps, write the outputs and print a summary; returns an exit code."""
    try:
        settings = _settings(args)
    except ValueError as error:
        print(f"bench theory: {error}", file=sys.stderr)
        return 2
    if args.threads == 1:
        torch.set_num_threads(1)  # the only safe explicit setting; see tests/conftest.py
    try:
        return _run(args, settings)
    except FloatingPointError as error:
        print(f"bench theory: {error}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, settings: _Settings) -> int:
    out: Path = args.out
    timings: dict[str, float] = {}
    started = time.perf_counter()
    rows, invariance = _run_kernels(args, settings)
    timings["kernel sweeps"] = time.perf_counter() - started
    validation = None
    if not args.no_validate:
        clock = time.perf_counter()
        validation = _run_validation(args, settings)
        timings["kernel check"] = time.perf_counter() - clock
        write_csv(out / "kernel_validation.csv", validation)
    if args.trained:
        clock = time.perf_counter()
        trained_rows, runs = _run_trained(args, settings)
        rows += trained_rows
        timings["trained networks"] = time.perf_counter() - clock
        write_csv(out / "trained_runs.csv", runs)
    frame = rows_frame(rows)
    summary = summarize(frame)
    ratios = depth_ratios(frame)
    labels = _label_statistics(args, settings.problem)
    write_csv(out / "per_task.csv", frame)
    write_csv(out / "summary.csv", summary)
    plot_figure(summary, out / "figure1.png")
    plot_figure(summary, out / "figure1_normalized.png", value="diff_normalized",
                title_note=", labels divided by the training-label std")
    timings["total"] = time.perf_counter() - started
    write_json(out / "diagnostics.json", {
        "anil_train_lam_tau_max_relative_change": invariance,
        "depth_ratios": ratios.to_dict("records"),
        "depth_ratio_definition": (
            "per seed: mean over test tasks of ||F_ANIL - F_MTL|| at depth_low divided by the "
            "same at depth_high (depth sweep); min, median and max over seeds; labels raw "
            "(diff and diff_normalized give the same ratio) or zscored"
        ),
        **labels,
        "wall_seconds": timings,
        "threads": args.threads,
        "problem": dataclasses.asdict(settings.problem),
        "network": dataclasses.asdict(settings.net),
        "grid": dataclasses.asdict(settings.grid),
        "seeds": list(args.seeds),
        "finite_time_steps": args.steps,
        "lr_scale": args.lr_scale,
        "trained": None if settings.train is None else {
            "widths": list(args.widths), "seeds": list(args.trained_seeds),
            "grid": dataclasses.asdict(settings.trained_grid),
            "steps": settings.train.steps, "inner_steps": settings.train.inner_steps,
            "lr_scale": settings.train.lr_scale, "device": settings.train.device,
            "dtype": str(settings.train.dtype),
        },
    })
    _print_summary(summary, ratios, labels, validation, invariance, timings, out)
    if math.isfinite(invariance) and invariance > 1e-6:
        print("warning: F_ANIL changed with the training lambda*tau more than rounding allows",
              file=sys.stderr)
    return 0
