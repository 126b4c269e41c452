"""The options of ``bench theory``, apart from :mod:`bench.theory.cli` so that building the
command line (``python -m bench --help``) imports no torch."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

HE_W_STD = math.sqrt(2.0)
"""He et al. (2015) weight standard deviation for ReLU networks."""
#: Input normalisations to unit variance (:class:`bench.theory.tasks.ProblemConfig`).
NORMALIZATIONS: tuple[str, ...] = ("sphere", "standardize")
DEFAULT_LAM_TAUS = [round(0.05 * i, 2) for i in range(11)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``theory`` command's options on ``parser``."""
    parser.add_argument("--out", type=Path, default=Path("results/theory"),
                        help="output folder (default: results/theory)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                        help="task seeds of the kernel sweeps (default: 0 1 2 3 4)")
    parser.add_argument("--depths", type=int, nargs="+", default=list(range(2, 21)),
                        help="depths L of the depth sweep (default: 2..20)")
    parser.add_argument("--lam-taus", type=float, nargs="+", default=DEFAULT_LAM_TAUS,
                        help="lambda*tau values of both lambda*tau sweeps (default: 0..0.5)")
    parser.add_argument("--sweep-depth", type=int, default=10,
                        help="depth of the lambda*tau sweeps (default: 10)")
    parser.add_argument("--fixed-lam-tau", type=float, default=0.0,
                        help="training lambda*tau held fixed in the other sweeps (default: 0)")
    parser.add_argument("--fixed-lam-tau-hat", type=float, default=0.0,
                        help="test-time lambda*tau_hat held fixed in the other sweeps (default: 0)")
    parser.add_argument("--test-tasks", type=int, default=20,
                        help="test tasks per seed (default: 20)")
    parser.add_argument("--normalization", choices=NORMALIZATIONS, default="sphere",
                        help="input normalisation to unit variance (default: sphere, ||x||^2=d)")
    parser.add_argument("--w-std", type=float, default=HE_W_STD,
                        help="weight scale, NTK parameterisation (default: sqrt(2), He)")
    parser.add_argument("--b-std", type=float, default=0.0,
                        help="hidden-layer bias scale (default: 0; the head has no bias)")
    parser.add_argument("--steps", type=int, default=1000,
                        help="gradient steps of the trained networks, also the finite-time "
                             "kernel curve's t (default: 1000)")
    parser.add_argument("--lr-scale", type=float, default=1.0,
                        help="outer learning rate times sigma_max(Theta) (default: 1)")
    parser.add_argument("--no-validate", action="store_true",
                        help="skip the analytic-vs-empirical kernel check")
    parser.add_argument("--validate-widths", type=int, nargs="+", default=[256, 1024, 4096],
                        help="widths of the kernel check (default: 256 1024 4096)")
    parser.add_argument("--validate-depths", type=int, nargs="+", default=[2, 3, 5],
                        help="depths of the kernel check (default: 2 3 5)")
    parser.add_argument("--validate-draws", type=int, default=4,
                        help="network draws averaged per (depth, width) (default: 4)")
    parser.add_argument("--validate-points", type=int, default=16,
                        help="inputs in the kernel check (default: 16)")
    parser.add_argument("--trained", action="store_true",
                        help="also train finite-width MTL and ANIL networks")
    parser.add_argument("--widths", type=int, nargs="+", default=[256],
                        help="widths of the trained networks (default: 256)")
    parser.add_argument("--trained-depths", type=int, nargs="+", default=[2, 5, 10, 20],
                        help="depths of the trained depth sweep (default: 2 5 10 20)")
    parser.add_argument("--trained-lam-taus", type=float, nargs="+", default=[0.0, 0.1, 0.3, 0.5],
                        help="lambda*tau values of the trained sweeps (default: 0 0.1 0.3 0.5)")
    parser.add_argument("--trained-seeds", type=int, nargs="+", default=[0, 1],
                        help="task and initialisation seeds of the trained networks "
                             "(default: 0 1)")
    parser.add_argument("--inner-steps", type=int, default=10,
                        help="gradient steps tau of each inner loop and test fine-tuning; "
                             "the rate is lambda*tau / steps (default: 10)")
    parser.add_argument("--device", default="auto",
                        help="device of the trained networks: auto, cpu, cuda[:i] (default: auto)")
    parser.add_argument("--threads", type=int, default=1, choices=(0, 1),
                        help="1 (default): one torch CPU thread, far faster for these small "
                             "matrices on a shared machine; 0: leave torch's setting alone "
                             "(set OMP_NUM_THREADS before starting Python for more)")
