"""Time the unified protocol's two solvers on the same episodes: the batched exact solver on the
device against scikit-learn's per-episode loop (``python -m bench.cost.solver_bench``).

The unified protocol of Wang, Zhao & Li (ICML 2021, Sec. 3.4) fits a fresh L2-regularised
multinomial logistic regression per test episode on frozen, L2-normalised features; a test
split has 2000 episodes. :func:`bench.run.solver.predict_sklearn` is the reference loop and
:func:`bench.run.solver.predict_batched` solves all episodes at once (damped Newton in the span of
each episode's support features). This module measures both on synthetic, realistic episodes
(5-way 5-shot, 15 queries per class, 640-d non-negative features like a ResNet-12's pooled
output) and reports their wall times, the speed-up and their agreement: the fraction of
episodes with equal accuracy, the mean-accuracy difference and the fraction of equal query
predictions. Timing follows :mod:`bench.common.timing`: the device is synchronised before every clock
read; a short warm-up call of the batched solver (kernel loading, solver handles) is timed
apart. scikit-learn runs on the host, on ``--jobs`` processes (default: all cores).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch

from bench.common import provenance
from bench.common.exit_codes import EXIT_OK, EXIT_USAGE
from bench.common.timing import SectionTimer
from bench.run.solver import l2_normalize, predict_batched, predict_sklearn
from bench.run.training import resolve_device
from core.atomic import write_json_atomic

SOLVER_SCHEMA = "bridgebench.solver-bench/1"
WARMUP_EPISODES = 32


def synthetic_episodes(n_episodes: int, ways: int, shots: int, queries: int, dim: int,
                       noise: float, seed: int = 0
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """L2-normalised support ``[T, W*K, D]`` and query ``[T, W*Q, D]`` float32 features with
    class-major labels ``0..W-1``.

    Each episode's class centres are sparse non-negative vectors (a third of the coordinates
    half-normal, the rest zero); a sample is ``relu(centre + noise * N(0, I))``, like the
    pooled ReLU features of a ResNet-12. ``noise`` sets the difficulty.
    """
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_episodes, ways, dim, generator=g).abs()
    centres = centres * (torch.rand(n_episodes, ways, dim, generator=g) < 1 / 3)

    def draw(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(ways).repeat_interleave(per_class).expand(n_episodes, -1)
        rows = torch.arange(n_episodes)[:, None]
        x = centres[rows, labels] + noise * torch.randn(n_episodes, labels.shape[1], dim,
                                                        generator=g)
        return l2_normalize(x.clamp_min(0.0)), labels.contiguous()

    support, support_labels = draw(shots)
    query, query_labels = draw(queries)
    return support, support_labels, query, query_labels


def agreement(pred_a: torch.Tensor, pred_b: torch.Tensor, labels: torch.Tensor
              ) -> dict[str, float]:
    """How closely two solvers' predictions ``[T, Q]`` agree, and their accuracies."""
    acc_a = (pred_a.cpu() == labels).double().mean(1) * 100.0
    acc_b = (pred_b.cpu() == labels).double().mean(1) * 100.0
    return {
        "episodes_equal_accuracy": float((acc_a == acc_b).double().mean()),
        "mean_accuracy_batched": float(acc_a.mean()),
        "mean_accuracy_sklearn": float(acc_b.mean()),
        "mean_accuracy_difference_points": float((acc_a.mean() - acc_b.mean()).abs()),
        "queries_equal_prediction": float((pred_a.cpu() == pred_b.cpu()).double().mean()),
    }


def run_bench(episodes: int, ways: int, shots: int, queries: int, dim: int, noise: float,
              device: torch.device, jobs: int, dtype: torch.dtype, seed: int = 0,
              timer: SectionTimer | None = None) -> dict[str, Any]:
    """Time both solvers on the same ``episodes`` episodes and compare their predictions."""
    timer = timer or SectionTimer(device)
    support, support_labels, query, query_labels = synthetic_episodes(
        episodes, ways, shots, queries, dim, noise, seed)
    on_device = [t.to(device) for t in (support, support_labels, query)]
    warm = min(WARMUP_EPISODES, episodes)
    with timer.section("batched_warmup"):
        predict_batched(*(t[:warm] for t in on_device), dtype=dtype)
    with timer.section("batched"):
        pred_batched = predict_batched(*on_device, dtype=dtype)
    with timer.section("sklearn"):
        pred_sklearn = predict_sklearn(support.numpy(), support_labels.numpy(), query.numpy(),
                                       n_jobs=jobs)
    batched_s, sklearn_s = timer.total("batched"), timer.total("sklearn")
    return {
        "episodes": episodes, "ways": ways, "shots": shots, "queries": queries, "dim": dim,
        "noise": noise, "seed": seed, "batched_dtype": str(dtype).replace("torch.", ""),
        "batched_device": str(device),
        "batched_seconds": batched_s,
        "batched_warmup_seconds": timer.total("batched_warmup"),
        "batched_warmup_episodes": warm,
        "sklearn_seconds": sklearn_s, "sklearn_jobs": jobs,
        "speedup": sklearn_s / batched_s if batched_s > 0 else float("nan"),
        **agreement(pred_batched, pred_sklearn, query_labels),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench.cost.solver_bench``."""
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--queries", type=int, default=15, help="queries per class")
    parser.add_argument("--dim", type=int, default=640, help="feature dimension")
    parser.add_argument("--noise", type=float, default=2.5,
                        help="feature noise (difficulty); the default 2.5 gives about 80%% mean "
                             "accuracy at 5-way 5-shot 640-d (72-87%% for the middle 80%% of "
                             "episodes), like a ResNet-12 on mini-ImageNet")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="batched solver's dtype (default float64, the solver's default)")
    parser.add_argument("--jobs", type=int, default=-1,
                        help="scikit-learn processes (default -1: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/speed/solver.json"),
                        help="JSON report (default results/speed/solver.json)")


def run(args: argparse.Namespace) -> int:

    for name in ("episodes", "ways", "shots", "queries", "dim"):
        if getattr(args, name) < (2 if name == "ways" else 1):
            raise ValueError(f"--{name} is too small: {getattr(args, name)}")
    device = resolve_device(args.device)
    jobs = (os.cpu_count() or 1) if args.jobs == -1 else args.jobs
    report = run_bench(args.episodes, args.ways, args.shots, args.queries, args.dim, args.noise,
                       device, jobs, getattr(torch, args.dtype), args.seed)
    info = provenance.collect(device)
    report = {"schema": SOLVER_SCHEMA, "device": info["device"], "cpu": info["cpu"],
              "cpu_count": os.cpu_count(), "torch": torch.__version__,
              "torch_threads": torch.get_num_threads(), **report, "provenance": info}
    write_json_atomic(args.out, report)
    print(f"solvers on {report['episodes']} {args.ways}-way {args.shots}-shot {args.dim}-d "
          f"episodes: batched ({report['batched_dtype']}, {report['device']}) "
          f"{report['batched_seconds']:.3f} s (+{report['batched_warmup_seconds']:.3f} s "
          f"warm-up), scikit-learn ({jobs} jobs) {report['sklearn_seconds']:.2f} s: "
          f"{report['speedup']:.1f}x; equal accuracy in "
          f"{100 * report['episodes_equal_accuracy']:.1f}% of episodes, mean accuracy "
          f"{report['mean_accuracy_batched']:.2f}% vs {report['mean_accuracy_sklearn']:.2f}% "
          f"(difference {report['mean_accuracy_difference_points']:.3f} points)")
    print(f"(written to {args.out})")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost.solver_bench",
                                     description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
