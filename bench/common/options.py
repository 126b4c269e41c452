"""The command-line options that several subcommands declare alike (``bench run``, ``tune``,
``eval``, ``speed``), each declared once here: the same flag, type, choices and metavar
everywhere, with the default and help text of the subcommand that adds it.

Only argparse and constants of this layer: building the command line (``--help``) imports no
torch. ``bench.cost.speed`` builds its own parser too, which is why these live in
``bench/common`` and not in ``bench/commands``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.common.arg_types import int_list, key_value
from bench.common.precision import PRECISIONS
from core.budget import BUDGETS

#: A parser or an argument group of one (argparse's common base class).
Parser = argparse._ActionsContainer
#: The unified protocol's solvers: scikit-learn per episode, or the batched exact solver.
SOLVERS = ("sklearn", "batched")
#: The protocols that can select a run's model (``--select-on``).
SELECTION_PROTOCOLS = ("unified", "native")
#: The help of ``--device`` where the default is ``auto``.
DEVICE_HELP = "auto, cpu or cuda[:N]"


def add_ways(parser: Parser, default: int | None = 5, help: str | None = None) -> None:
    """``--ways N``: classes per episode."""
    parser.add_argument("--ways", type=int, default=default, help=help)


def add_shots(parser: Parser, default: list[int] | None, help: str) -> None:
    """``--shots 1,5``: support images per class, one or more."""
    parser.add_argument("--shots", type=int_list, default=default, help=help)


def add_seeds(parser: Parser) -> None:
    """``--seeds 0,1,2``: one run per seed."""
    parser.add_argument("--seeds", type=int_list, default=[0], help="e.g. 0,1,2")


def add_queries(parser: Parser, default: int | None, help: str) -> None:
    """``--queries N``: query images per class."""
    parser.add_argument("--queries", type=int, default=default, help=help)


def add_device(parser: Parser, default: str = "auto", help: str = DEVICE_HELP) -> None:
    """``--device``: where to train or evaluate."""
    parser.add_argument("--device", default=default, help=help)


def add_precision(parser: Parser, default: str | None = "fp32",
                  help: str | None = None) -> None:
    """``--precision``: one of :data:`bench.common.precision.PRECISIONS`."""
    parser.add_argument("--precision", choices=PRECISIONS, default=default, help=help)


def add_solver(parser: Parser, default: str | None, help: str) -> None:
    """``--solver``: the unified protocol's solver (:data:`SOLVERS`)."""
    parser.add_argument("--solver", choices=SOLVERS, default=default, help=help)


def add_select_on(parser: Parser, help: str) -> None:
    """``--select-on``: the validation protocol that selects the model (default unified)."""
    parser.add_argument("--select-on", choices=SELECTION_PROTOCOLS, default="unified",
                        help=help)


def add_budget(parser: Parser, default: str, help: str | None = None) -> None:
    """``--budget``: one of :data:`core.budget.BUDGETS`."""
    parser.add_argument("--budget", choices=BUDGETS, default=default, help=help)


def add_backbone_overrides(parser: Parser) -> None:
    """``--backbone`` and ``--feature-mode``: override the budget's."""
    parser.add_argument("--backbone", default=None, help="override the budget's backbone")
    parser.add_argument("--feature-mode", choices=("avg", "flatten"), default=None,
                        help="override the budget's feature mode")


def add_data_root(parser: Parser, help: str) -> None:
    """``--data-root DIR``: the folder with the dataset's files."""
    parser.add_argument("--data-root", type=Path, default=None, help=help)


def add_set(parser: Parser, help: str) -> None:
    """``--set FIELD=VALUE`` (repeatable): a budget field."""
    _add_pairs(parser, "--set", "FIELD=VALUE", help)


def add_hparam(parser: Parser, help: str) -> None:
    """``--hparam KEY=VALUE`` (repeatable): a method hyperparameter."""
    _add_pairs(parser, "--hparam", "KEY=VALUE", help)


def _add_pairs(parser: Parser, flag: str, metavar: str, help: str) -> None:
    parser.add_argument(flag, type=key_value, action="append", default=[], metavar=metavar,
                        help=help)


def add_no_progress(parser: Parser) -> None:
    """``--no-progress``: no progress bars."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")

