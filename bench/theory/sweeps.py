"""Figure 1 sweeps of Wang, Zhao & Li (ICML 2021), Sec. 5.1: ||F_ANIL - F_MTL||_2 on test tasks.

Three sweeps, as in the paper's Figure 1 (the issue splits its lambda * tau panels into the
training and the test-time value):

- ``depth``: depth L over ``depths`` at fixed training lambda * tau and test lambda * tau_hat
  (both 0 by default, the paper's "fixed lambda tau = 0");
- ``train_lam_tau``: the training inner loop's lambda * tau at L = ``sweep_depth``;
- ``test_lam_tau_hat``: the test-time fine-tuning's lambda * tau_hat at L = ``sweep_depth``.

Kernel curves (``source="kernel"``), one per ``variant``, the lead curve first:
- ``eq61``: eqs. (15)-(17) with Phi'_ANIL in the form the appendix derives (eqs. (61), (66))
  and Theorem 1's proof uses (Theta - K where Lemma 1 prints Theta);
- ``printed``: the verbatim variant, Lemma 1 exactly as printed;
- ``eq61-finite-t``: ``eq61`` with Lemma 2's finite training time ``eta t`` (eqs. (42), (44)),
  where ``eta t = flow_steps * lr_scale / sigma_max(Theta)``: the same step count and learning
  rate as the trained networks, so that their curves can be compared.

Trained curves (``source="trained"``, ``variant="trained"``) come from ``trained.py``.
Every row is one test task; ``summarize`` aggregates per seed, then across seeds.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor

from bench.theory.kernels import ReluNetConfig, relu_kernels_all_depths
from bench.theory.predictors import TaskKernels, f_anil, f_mtl
from bench.theory.tasks import (
    ProblemConfig, TaskSet, label_std, make_tasks, standardize_labels,
)
from bench.theory.trained import TrainConfig, TrainedNet, query_predictions, train_anil, train_mtl

SWEEPS: tuple[str, ...] = ("depth", "train_lam_tau", "test_lam_tau_hat")
KERNEL_VARIANTS: tuple[str, ...] = ("eq61", "printed", "eq61-finite-t")
ROW_COLUMNS: tuple[str, ...] = (
    "source", "sweep", "variant", "width", "depth", "lam_tau", "lam_tau_hat", "seed", "task",
    "diff", "rel_diff", "norm_mtl", "norm_anil", "err_mtl", "err_anil",
    "label_std", "diff_normalized", "diff_zscored",
)
"""Per-task columns: ``diff = ||F_ANIL - F_MTL||_2`` over the task's query points, in the raw
label units; ``rel_diff = diff / ||F_MTL||_2``; ``norm_*`` the predictions' norms;
``err_* = ||F - Y||_2`` against the true query labels; ``width`` is 0 for the
(infinite-width) kernel curves. ``label_std``: the seed's training-label standard deviation
(``tasks.label_std``); ``diff_normalized = diff / label_std``, the difference in units of one
label standard deviation, equal to the difference computed from labels divided by
``label_std`` (the predictors are linear in the labels); ``diff_zscored``: the difference
computed from labels also centred on the training labels' mean (kernel curves only; empty for
trained networks), which differs because the two predictors extrapolate a constant label
differently."""

Progress = Callable[[int], None]


@dataclass(frozen=True)
class SweepGrid:
    """Values swept and values held fixed (paper Figure 1)."""

    depths: tuple[int, ...] = tuple(range(2, 21))
    lam_taus: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(11))
    sweep_depth: int = 10
    fixed_lam_tau: float = 0.0
    fixed_lam_tau_hat: float = 0.0

    def __post_init__(self) -> None:
        if not self.depths or min(self.depths) < 2:
            raise ValueError(f"depths must be non-empty and at least 2, got {self.depths}")
        if self.sweep_depth < 2:
            raise ValueError(f"sweep_depth must be at least 2, got {self.sweep_depth}")
        values = (*self.lam_taus, self.fixed_lam_tau, self.fixed_lam_tau_hat)
        if not self.lam_taus or min(values) < 0:
            raise ValueError(f"lambda * tau values must be non-empty and >= 0, got {values}")

    @property
    def max_depth(self) -> int:
        return max(*self.depths, self.sweep_depth)

    def points(self) -> Iterator[tuple[str, int, float, float]]:
        """``(sweep, depth, lam_tau, lam_tau_hat)`` for every point of the three sweeps."""
        for depth in self.depths:
            yield "depth", depth, self.fixed_lam_tau, self.fixed_lam_tau_hat
        for lam_tau in self.lam_taus:
            yield "train_lam_tau", self.sweep_depth, lam_tau, self.fixed_lam_tau_hat
        for lam_tau_hat in self.lam_taus:
            yield "test_lam_tau_hat", self.sweep_depth, self.fixed_lam_tau, lam_tau_hat


def task_rows(
    f_mtl_pred: Tensor, f_anil_pred: Tensor, y_query: Tensor, label_scale: float,
    zscored: tuple[Tensor, Tensor] | None = None, **labels: object,
) -> list[dict]:
    """One row per test task comparing two ``[B, m]`` prediction sets (see ``ROW_COLUMNS``).

    ``label_scale`` is the seed's ``label_std``; ``zscored`` the ``(F_MTL, F_ANIL)`` pair
    computed from z-scored labels, when there is one.
    """
    diff = (f_anil_pred - f_mtl_pred).norm(dim=-1)
    diff_z = None if zscored is None else (zscored[1] - zscored[0]).norm(dim=-1)
    norm_mtl, norm_anil = f_mtl_pred.norm(dim=-1), f_anil_pred.norm(dim=-1)
    err_mtl = (f_mtl_pred - y_query).norm(dim=-1)
    err_anil = (f_anil_pred - y_query).norm(dim=-1)
    rows = []
    for task in range(diff.shape[0]):
        rows.append({
            **labels,
            "task": task,
            "diff": float(diff[task]),
            "rel_diff": float(diff[task] / norm_mtl[task]),
            "norm_mtl": float(norm_mtl[task]),
            "norm_anil": float(norm_anil[task]),
            "err_mtl": float(err_mtl[task]),
            "err_anil": float(err_anil[task]),
            "label_std": label_scale,
            "diff_normalized": float(diff[task]) / label_scale,
            "diff_zscored": math.nan if diff_z is None else float(diff_z[task]),
        })
    return rows


def all_points(tasks: TaskSet) -> Tensor:
    """Training, support and query inputs stacked in the order ``TaskKernels.from_full`` expects."""
    dim = tasks.x_train.shape[-1]
    return torch.cat([
        tasks.x_train.reshape(-1, dim), tasks.x_support.reshape(-1, dim),
        tasks.x_query.reshape(-1, dim),
    ])


def flow_time(kern: TaskKernels, steps: int, lr_scale: float) -> float:
    """``eta t`` of ``steps`` gradient steps at ``eta = lr_scale / sigma_max(Theta)``."""
    return steps * lr_scale / float(torch.linalg.eigvalsh(kern.theta_tt)[-1])


@dataclass
class KernelSeedResult:
    """Rows of one seed and the largest relative change of F_ANIL (t = infinity, either form of
    Phi'_ANIL) across the training lambda * tau sweep: the cancellation identity, measured."""

    rows: list[dict]
    anil_train_lam_tau_change: float


def kernel_seed(
    seed: int, grid: SweepGrid, problem: ProblemConfig = ProblemConfig(),
    net: ReluNetConfig = ReluNetConfig(), flow_steps: int = 1000, lr_scale: float = 1.0,
) -> KernelSeedResult:
    """All kernel sweeps for one seed's tasks (float64), from raw and from z-scored labels."""
    tasks = make_tasks(seed, problem)
    scale, zscored = label_std(tasks), standardize_labels(tasks)
    every = relu_kernels_all_depths(all_points(tasks), None, grid.max_depth, net)
    sizes = dict(
        n_tasks=problem.n_train_tasks, n_train=problem.n_train_tasks * problem.n_train_points,
        n_test_tasks=problem.n_test_tasks, n_support=problem.n_support, n_query=problem.n_query,
    )
    rows: list[dict] = []
    anil_at: dict[str, dict[float, Tensor]] = {}
    for sweep, depth, lam_tau, lam_tau_hat in grid.points():
        kern = TaskKernels.from_full(every.ntk[depth - 1], every.nngp[depth - 1], **sizes)
        eta_t = flow_time(kern, flow_steps, lr_scale)
        predictions = kernel_predictions(kern, tasks, lam_tau, lam_tau_hat, eta_t)
        predictions_z = kernel_predictions(kern, zscored, lam_tau, lam_tau_hat, eta_t)
        if sweep == "train_lam_tau":
            for variant in ("eq61", "printed"):
                anil_at.setdefault(variant, {})[lam_tau] = predictions[variant][1]
        for variant, (pred_mtl, pred_anil) in predictions.items():
            rows += task_rows(
                pred_mtl, pred_anil, tasks.y_query, scale, predictions_z[variant],
                source="kernel", sweep=sweep, variant=variant, width=0, depth=depth,
                lam_tau=lam_tau, lam_tau_hat=lam_tau_hat, seed=seed,
            )
    change = max((_largest_relative_change(at) for at in anil_at.values()), default=math.nan)
    return KernelSeedResult(rows, change)


def kernel_predictions(
    kern: TaskKernels, tasks: TaskSet, lam_tau: float, lam_tau_hat: float, eta_t: float,
) -> dict[str, tuple[Tensor, Tensor]]:
    """``(F_MTL, F_ANIL)`` on every query set for each kernel curve, in ``KERNEL_VARIANTS``
    order; ``eta_t`` is the finite training time of ``eq61-finite-t``."""
    y_train, y_support = tasks.y_train, tasks.y_support
    mtl = f_mtl(kern, y_train, y_support, lam_tau_hat)
    mtl_t = f_mtl(kern, y_train, y_support, lam_tau_hat, flow_time=eta_t)
    return {
        "eq61": (mtl, f_anil(kern, y_train, y_support, lam_tau, lam_tau_hat, "eq61")),
        "printed": (mtl, f_anil(kern, y_train, y_support, lam_tau, lam_tau_hat, "printed")),
        "eq61-finite-t": (mtl_t, f_anil(kern, y_train, y_support, lam_tau, lam_tau_hat, "eq61",
                                        flow_time=eta_t)),
    }


def _largest_relative_change(predictions: dict[float, Tensor]) -> float:
    if len(predictions) < 2:
        return math.nan
    reference = predictions[min(predictions)]
    return max(
        float((p - reference).norm() / reference.norm()) for p in predictions.values()
    )


def kernel_sweeps(
    seeds: tuple[int, ...], grid: SweepGrid, problem: ProblemConfig = ProblemConfig(),
    net: ReluNetConfig = ReluNetConfig(), flow_steps: int = 1000, lr_scale: float = 1.0,
    progress: Progress | None = None,
) -> tuple[list[dict], float]:
    """Kernel rows for every seed, and the largest F_ANIL change over training lambda * tau."""
    rows, change = [], 0.0
    for seed in seeds:
        result = kernel_seed(seed, grid, problem, net, flow_steps, lr_scale)
        rows += result.rows
        change = max(change, result.anil_train_lam_tau_change)
        if progress is not None:
            progress(1)
    return rows, change


@dataclass(frozen=True)
class TrainedRun:
    """Log of one trained network (losses are in label-scaled units; see ``trained.py``)."""

    method: str
    width: int
    depth: int
    lam_tau: float
    seed: int
    initial_loss: float
    final_loss: float
    seconds: float


class _NetCache:
    """Trains each (method, depth, lam_tau) once per (seed, width) and logs it."""

    def __init__(
        self, tasks: TaskSet, seed: int, train: TrainConfig, net: ReluNetConfig,
        progress: Progress | None,
    ) -> None:
        self.tasks, self.seed, self.train, self.net = tasks, seed, train, net
        self.progress = progress
        self.nets: dict[tuple[str, int, float], TrainedNet] = {}
        self.log: list[TrainedRun] = []

    def get(self, method: str, depth: int, lam_tau: float) -> TrainedNet:
        key = (method, depth, 0.0 if method == "mtl" else lam_tau)
        if key not in self.nets:
            start = time.perf_counter()
            if method == "mtl":
                trained = train_mtl(self.tasks, depth, self.seed, self.train, self.net)
            else:
                trained = train_anil(self.tasks, depth, self.seed, lam_tau, self.train, self.net)
            _synchronize(self.train.device)
            seconds = time.perf_counter() - start
            self.nets[key] = trained
            self.log.append(TrainedRun(
                method, self.train.width, depth, key[2], self.seed, trained.initial_loss,
                trained.final_loss, seconds,
            ))
            if self.progress is not None:
                self.progress(1)
        return self.nets[key]


def _synchronize(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def trained_networks_needed(grid: SweepGrid) -> int:
    """How many networks one (seed, width) of :func:`trained_seed` trains."""
    keys = set()
    for _, depth, lam_tau, _ in grid.points():
        keys.add(("mtl", depth, 0.0))
        keys.add(("anil", depth, lam_tau))
    return len(keys)


def trained_seed(
    seed: int, grid: SweepGrid, train: TrainConfig, problem: ProblemConfig = ProblemConfig(),
    net: ReluNetConfig = ReluNetConfig(), progress: Progress | None = None,
) -> tuple[list[dict], list[TrainedRun]]:
    """All three sweeps on trained networks of width ``train.width`` for one seed's tasks."""
    tasks = make_tasks(seed, problem)
    cache = _NetCache(tasks, seed, train, net, progress)
    rows: list[dict] = []
    for sweep, depth, lam_tau, lam_tau_hat in grid.points():
        mtl = query_predictions(cache.get("mtl", depth, lam_tau), tasks, lam_tau_hat, train, net)
        anil = query_predictions(cache.get("anil", depth, lam_tau), tasks, lam_tau_hat, train, net)
        rows += task_rows(
            mtl, anil, tasks.y_query, label_std(tasks), source="trained", sweep=sweep,
            variant="trained", width=train.width, depth=depth, lam_tau=lam_tau,
            lam_tau_hat=lam_tau_hat, seed=seed,
        )
    return rows, cache.log
