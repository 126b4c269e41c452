"""``python -m bench theory``: its options are :mod:`bench.theory.options`'s (shared with
``python -m bench.theory``), the sweeps :mod:`bench.theory.cli`'s."""
from __future__ import annotations

import argparse

from bench.theory.options import add_arguments

__all__ = ["HELP", "add_arguments", "run"]
HELP = "the paper's Figure 1: MTL vs ANIL predictors from NTK/NNGP kernels and trained networks"


def run(args: argparse.Namespace) -> int:
    """``bench theory``: the kernel (and trained-network) sweeps, their figures and tables."""
    # here, not at the top: it imports torch
    from bench.theory import cli

    return cli.run(args)
