"""The options of ``bench speed`` (``python -m bench speed``, ``python -m bench.cost.speed``).

Apart from :mod:`bench.cost.speed` so that building the command line (``python -m bench --help``)
imports no torch: everything here is argparse and constants of the neutral layer.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import options
from bench.common.arg_types import name_list as _name_list
from bench.cost.speed_report import DEFAULT_ASSUMED_EPOCHS

#: Folder of the JSON reports (``--out``), which ``bench plan`` reads by default.
DEFAULT_OUT = Path("results/speed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``speed`` command's options on ``parser``."""
    parser.add_argument("--methods", type=_name_list, default=None,
                        help="comma-separated methods, by name or import path "
                             "(package.module:Class) (default: all registered methods)")
    parser.add_argument("--dataset", default=None,
                        help="dataset whose budget and image shape are used (default: the one "
                             "the paper's Table 4 was timed on, see `bench list`; images are "
                             "synthetic, no files needed)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="image side in pixels (default: the dataset's)")
    options.add_ways(parser)
    parser.add_argument("--shots", type=int, default=5,
                        help="test shots that select the budget row (default 5, as Table 4)")
    options.add_budget(parser, "paper", "budget whose episode shape is measured (default: paper)")
    parser.add_argument("--meta-batch", type=int, default=None,
                        help="override the budget's tasks per optimiser step")
    parser.add_argument("--train-shots", type=int, default=None,
                        help="override the budget's support images per class")
    parser.add_argument("--train-queries", type=int, default=None,
                        help="override the budget's query images per class")
    options.add_backbone_overrides(parser)
    options.add_precision(parser)
    options.add_device(parser)
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--val-episodes", type=int, default=10,
                        help="validation episodes timed per method for the run device-hours "
                             "(default 10; 0: training steps only)")
    options.add_select_on(parser, help="validation protocol timed, as `bench run --select-on` "
                                       "(default unified)")
    options.add_solver(parser, "sklearn", "unified-protocol solver of the timed validation "
                                          "(default sklearn, as `bench run`)")
    options.add_queries(parser, 15, "validation queries per class (default 15, as `bench run`)")
    parser.add_argument("--warmup", type=int, default=5,
                        help="warm-up steps before timing, excluded (default 5)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the backbones (compile time lands in first_step_s)")
    parser.add_argument("--assume-epochs", type=int, default=DEFAULT_ASSUMED_EPOCHS,
                        help="epochs assumed for budgets that stop early (early stopping) "
                             f"in the device-hours extrapolation (default "
                             f"{DEFAULT_ASSUMED_EPOCHS})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="folder of the JSON report (default results/speed)")
    parser.add_argument("--seed", type=int, default=0)
