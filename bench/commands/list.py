"""``python -m bench list``: the registered methods (with where each came from), datasets,
budgets and ``bench tune``'s search spaces."""
from __future__ import annotations

import argparse
from typing import Sequence

from bench.common.arg_types import name_list
from bench.common.exit_codes import EXIT_OK
from core.search import describe

HELP = "list methods (and where each came from), datasets and budgets"


def add_arguments(listing: argparse.ArgumentParser) -> None:
    """``bench list``'s options."""
    listing.add_argument("--methods", type=name_list, default=[],
                         help="also load and list these methods given by import path "
                              "(package.module:Class)")


def run(args: argparse.Namespace) -> int:
    """``bench list``."""
    return cmd_list(args.methods)


def cmd_list(extra_methods: Sequence[str] = ()) -> int:
    """Methods (with where each came from), datasets and budgets; ``extra_methods``: import
    paths to load and list too."""
    # here, not at the top: the registries import torch
    from bench.common.config import describe_budgets
    from bench.tune.study import shared_space
    from datasets import DATASETS
    from methods import METHODS
    from methods.plugins import resolve_method
    from methods.taxonomy import format_table1

    for spec in extra_methods:
        resolve_method(spec)
    print("methods:")
    width = max([11, *(len(name) + 1 for name in METHODS.names())])
    for name in METHODS.names():
        cls = METHODS.get(name)
        aliases = METHODS.aliases_of(name)
        extra = f" (aliases: {', '.join(aliases)})" if aliases else ""
        print(f"  {name:<{width}} {cls.citation}{extra} [{METHODS.origin(name)}]")
    print("Table 1 of Wang, Zhao & Li 2021 (the inner loop of each method):")
    for line in format_table1(METHODS.get(name) for name in METHODS.names()):
        print(f"  {line}")
    print("datasets:")
    for name in DATASETS.names():
        info = DATASETS.get(name)
        aliases = DATASETS.aliases_of(name)
        extra = f" (aliases: {', '.join(aliases)})" if aliases else ""
        files = "needs files" if info.needs_files else "built in, no files"
        print(f"  {name:<11} {info.image_size} px, {files}: {info.description}{extra}")
    print("budgets:")
    for line in describe_budgets():
        print(f"  {line}")
    print("bench tune's search (every method: the shared space, plus its own):")
    print("  shared: " + "; ".join(f"{k} {v}" for k, v in shared_space().items()))
    for name in METHODS.names():
        space = describe(dict(METHODS.get(name).search_space))
        print(f"  {name:<{width}} " + ("; ".join(f"{k} {v}" for k, v in space.items())
                                       or "(the shared space only)"))
    return EXIT_OK
