"""``python -m bench speed``: its options are :mod:`bench.cost.speed_args`'s (shared with
``python -m bench.cost.speed``), the measurement :mod:`bench.cost.speed`'s."""
from __future__ import annotations

import argparse

from bench.cost.speed_args import add_arguments

__all__ = ["HELP", "add_arguments", "run"]
HELP = ("steady-state training throughput of every method vs its bare backbone, and "
        "paper-budget device-hours")


def run(args: argparse.Namespace) -> int:
    """``bench speed``: measure, print the table, write the JSON report."""
    # here, not at the top: it imports torch
    from bench.cost import speed

    return speed.run(args)
