"""Command line: ``python -m bench {run,table,list,theory}``."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from bench.config import BUDGETS, RunConfig, describe_budgets, resolve_budget
from bench.precision import PRECISIONS
from bench.registry import UnknownNameError

EXIT_USAGE = 2


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _hparam(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    import json

    try:
        value: object = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="bridgebench: multi-task learning vs gradient-based meta-learning for "
                    "few-shot classification (after Wang, Zhao & Li, ICML 2021).")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and test methods; one result file per run")
    run.add_argument("--methods", type=_name_list, required=True,
                     help="comma-separated method names (see `bench list`)")
    run.add_argument("--dataset", type=_name_list, required=True,
                     help="dataset name(s), comma-separated (see `bench list`)")
    run.add_argument("--ways", type=int, default=5)
    run.add_argument("--shots", type=_int_list, default=[1, 5], help="e.g. 1,5")
    run.add_argument("--seeds", type=_int_list, default=[0], help="e.g. 0,1,2")
    run.add_argument("--budget", choices=BUDGETS, default="quick")
    run.add_argument("--episodes", type=int, default=2000, help="test episodes (default 2000)")
    run.add_argument("--queries", type=int, default=15, help="test queries per class")
    run.add_argument("--out", type=Path, default=Path("results"), help="results folder")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    run.add_argument("--data-root", type=Path, default=None,
                     help="folder with the dataset's files (default: $BRIDGEBENCH_DATA/<dataset>"
                          " or ~/data/<dataset>)")
    run.add_argument("--precision", choices=PRECISIONS, default="fp32")
    run.add_argument("--solver", choices=("sklearn", "batched"), default="sklearn",
                     help="unified-protocol solver: scikit-learn per episode, or the batched "
                          "exact solver on the device")
    run.add_argument("--compile", action="store_true",
                     help="torch.compile the backbone (compile time counts as training time and "
                          "is also reported apart as first_step_seconds)")
    run.add_argument("--backbone", default=None, help="override the budget's backbone")
    run.add_argument("--feature-mode", choices=("avg", "flatten"), default=None,
                     help="override the budget's feature mode")
    run.add_argument("--hparam", type=_hparam, action="append", default=[], metavar="KEY=VALUE",
                     help="override a method hyperparameter (repeatable)")
    run.add_argument("--force", action="store_true", help="rerun finished results")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--table", action="store_true",
                     help="print the accuracy and efficiency tables of --out afterwards")

    table = sub.add_parser("table", help="turn result files into accuracy and efficiency tables")
    table.add_argument("folder", type=Path, nargs="?", default=Path("results"))

    sub.add_parser("list", help="list methods, datasets and budgets")

    data = sub.add_parser("data", help="prepare or verify a dataset's files (prepare/verify)")
    from bench import data_cli

    data_cli.add_arguments(data)

    theory = sub.add_parser("theory", help="the paper's Figure 1: MTL vs ANIL predictors "
                                           "from NTK/NNGP kernels and trained networks")
    from bench.theory import cli as theory_cli

    theory_cli.add_arguments(theory)
    return parser


def cmd_list() -> int:
    from datasets import DATASETS
    from methods import METHODS

    print("methods:")
    for name in METHODS.names():
        cls = METHODS.get(name)
        aliases = METHODS.aliases_of(name)
        extra = f" (aliases: {', '.join(aliases)})" if aliases else ""
        print(f"  {name:<11} {cls.paper}{extra}")
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
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bench.runner import resolve_device, run_sweep
    from datasets import DATASETS, DatasetError, load_dataset
    from methods import METHODS

    methods = [METHODS.canonical(m) for m in args.methods]
    dataset_names = [DATASETS.canonical(d) for d in args.dataset]
    hparams = dict(args.hparam)
    for method in methods:  # fail before any training on a misspelt hyperparameter
        METHODS.get(method).resolve_hparams(hparams)
    device = resolve_device(args.device)
    datasets = {}
    for name in dataset_names:
        root = args.data_root if len(dataset_names) == 1 or args.data_root is None \
            else args.data_root / name
        try:
            datasets[name] = load_dataset(name, root)
        except DatasetError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE
    configs = []
    for name in dataset_names:
        for method in methods:
            for shots in args.shots:
                for seed in args.seeds:
                    budget = resolve_budget(args.budget, method, name, shots)
                    overrides = {k: v for k, v in (("backbone", args.backbone),
                                                   ("feature_mode", args.feature_mode))
                                 if v is not None}
                    if hparams:
                        overrides["hparams"] = {**budget.hparams, **hparams}
                    if overrides:
                        from dataclasses import replace

                        budget = replace(budget, **overrides)
                    configs.append(RunConfig(
                        method=method, dataset=name, ways=args.ways, shots=shots, seed=seed,
                        budget=budget, queries=args.queries, episodes=args.episodes,
                        precision=args.precision, solver=args.solver,
                        compile=args.compile))
    started = time.perf_counter()
    summary = run_sweep(configs, datasets, device, args.out, force=args.force,
                        progress=not args.no_progress)
    print(f"{len(summary.finished)} finished, {len(summary.skipped)} skipped, "
          f"{len(summary.failed)} failed in {time.perf_counter() - started:.0f} s; "
          f"results in {args.out}/runs")
    if args.table:
        cmd_table(args.out)
    return 1 if summary.failed else 0


def cmd_table(folder: Path) -> int:
    from bench.results import ResultFileError
    from bench.table import make_tables

    try:
        print(make_tables(folder))
    except (ResultFileError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"(written to {folder}/accuracy.csv, accuracy.md, efficiency.csv, efficiency.md)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list()
        if args.command == "run":
            return cmd_run(args)
        if args.command == "table":
            return cmd_table(args.folder)
        if args.command == "data":
            from bench import data_cli

            return data_cli.run(args)
        if args.command == "theory":
            from bench.theory import cli as theory_cli

            return theory_cli.run(args)
    except UnknownNameError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    raise AssertionError(f"unhandled command {args.command}")
