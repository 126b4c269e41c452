"""``python -m bench tune``: the arguments and the command (the search is
:mod:`bench.tune.study`)."""
from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from bench.commands.config_file import add_config_argument
from bench.common import options
from bench.common.arg_types import name_list
from bench.common.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from core.budget import validate_budget_settings, with_settings

HELP = ("the same hyperparameter search for every method, on validation data only (Optuna); "
        "<out>/tuned/*.json for bench run --tuned")
DEFAULT_TRIALS = 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``bench tune``'s options (declared as ``bench run``'s, so they read alike), and
    ``--config``."""
    parser.add_argument("--methods", type=name_list, required=True,
                        help="comma-separated method names or import paths; one study each")
    parser.add_argument("--dataset", required=True, help="dataset name (see `bench list`)")
    options.add_data_root(parser, "folder with the dataset's files (as for bench run)")
    options.add_ways(parser)
    options.add_shots(parser, [1], "e.g. 1,5 (default 1)")
    options.add_budget(parser, "long", "the budget every trial trains with (default long: 40 "
                                       "epochs, cuts after 25 and 35); the search changes its "
                                       "optimiser fields")
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                        help=f"trials per study, the same for every method (default "
                             f"{DEFAULT_TRIALS}); finished and pruned trials count")
    parser.add_argument("--seed", type=int, default=0,
                        help="the run seed trials train with (training episodes, "
                             "initialisation, the tuning validation stream) and the sampler's")
    parser.add_argument("--out", type=Path, default=Path("results"),
                        help="results folder; studies go to <out>/tuned/")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="an Optuna RDB URL (e.g. postgresql://...) shared by processes on "
                             "several machines (default: a journal file in <out>/tuned/)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="trials run at once on this machine, one single-threaded process "
                             "each (default 1)")
    options.add_set(parser, "fix a budget field for every trial (as bench run --set)")
    options.add_hparam(parser, "fix a method hyperparameter for every trial (taken out of the "
                               "search)")
    options.add_queries(parser, 15, "query images per class of validation episodes")
    options.add_device(parser, "cpu", "cpu or cuda[:N] (default cpu)")
    parser.add_argument("--force", action="store_true",
                        help="replace a tuned file of another study setup at the same name")
    add_config_argument(parser)


def build_specs(args: argparse.Namespace, datasets: dict) -> tuple[list, list[str]]:
    """One :class:`bench.tune.study.StudySpec` per (method, shots), and the problems found."""
    # here, not at the top: these import torch
    from bench.common.config import RunConfig, resolve_budget
    from bench.sweep.validation import argument_problems, sweep_problems
    from bench.tune.study import StudySpec
    from methods import METHODS
    from methods.plugins import resolve_method

    problems = argument_problems(args.ways, args.shots, args.queries, 1, [args.seed])
    if args.trials < 1:
        problems.append(f"--trials must be at least 1, not {args.trials}")
    if args.jobs < 1:
        problems.append(f"--jobs must be at least 1, not {args.jobs}")
    try:
        sets = validate_budget_settings(dict(args.set))
    except ValueError as error:
        return [], problems + [str(error)]
    hparams = dict(args.hparam)
    specs = []
    for spec_text in dict.fromkeys(args.methods):
        method, source = resolve_method(spec_text)
        for shots in dict.fromkeys(args.shots):
            try:
                budget = with_settings(resolve_budget(args.budget, METHODS.get(method),
                                                      args.dataset, shots), sets)
            except (NotImplementedError, ValueError) as error:
                problems.append(f"--budget {args.budget} for {method} {shots}-shot: {error}")
                continue
            if hparams:
                budget = replace(budget, hparams={**budget.hparams, **hparams})
            base = RunConfig(method=method, dataset=args.dataset, ways=args.ways, shots=shots,
                             seed=args.seed, budget=budget, queries=args.queries,
                             method_source=source)
            specs.append(StudySpec(base, args.trials, sampler_seed=args.seed,
                                   fixed=frozenset(hparams)))
    problems += sweep_problems([s.base for s in specs], datasets)
    return specs, list(dict.fromkeys(problems))


def _die_with_parent(parent: int) -> None:
    """Linux: SIGTERM this process when the command's process dies (killed, even by SIGKILL),
    so no worker goes on alone; its trial then stays "running" and a rerun runs it again."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: a killed command may leave its workers to finish their trials
    if os.getppid() != parent:  # the parent died before the line above
        raise SystemExit(0)


def _worker(spec: Any, storage: Any, lock_path: Path, dataset: str, root: Path | None,
            device: str, parent: int) -> None:
    """One ``--jobs`` process: its own copy of the data, trials until the study has them."""
    _die_with_parent(parent)
    # here, after the line above: a worker dies with its parent before it imports torch
    import torch

    from bench.run.session import Preempted
    from bench.tune.study import ValidationTrainer, run_trials
    from datasets import load_dataset

    torch.set_num_threads(1)
    trainer = ValidationTrainer(load_dataset(dataset, root), torch.device(device))
    try:
        run_trials(spec, storage, trainer, lock_path)
    except (Preempted, KeyboardInterrupt):
        pass  # its trial stays "running"; the next run of the command runs it again


def _tune_one(spec: Any, args: argparse.Namespace, dataset: Any) -> bool:
    """Run ``spec``'s study to its trials (here, or in ``--jobs`` processes); whether it has
    them all (then its files are written)."""
    # here, not at the top: these import torch and optuna
    import torch

    from bench.tune.study import (ValidationTrainer, describe_trial, finished, journal_path,
                                  open_study, run_trials, tuned_dir, write_study_files)

    storage = args.storage if args.storage else journal_path(args.out, spec)
    lock_path = tuned_dir(args.out) / f"{spec.stem}.lock"
    print(f"{spec.stem}: study {spec.study_name}, {spec.trials} trials, budget "
          f"{spec.base.budget.name} ({spec.base.budget.epochs} epochs), storage {storage}")
    seen: set[int] = set()

    def show(trial: Any) -> None:
        if trial.number not in seen and trial.state.name in ("COMPLETE", "PRUNED"):
            seen.add(trial.number)
            print(describe_trial(spec, trial), flush=True)

    study = open_study(spec, storage)
    for trial in study.get_trials(deepcopy=False):
        show(trial)  # trials of an earlier command
    if args.jobs == 1:
        run_trials(spec, storage, ValidationTrainer(dataset, torch.device(args.device)),
                   lock_path, on_trial=show)
    else:
        _run_workers(spec, args, storage, lock_path, study, show)
    if not finished(spec, study):
        return False
    path = write_study_files(spec, study, args.out, storage)
    print(f"{spec.stem}: best trial written to {path}")
    return True


def _run_workers(spec: Any, args: argparse.Namespace, storage: Any, lock_path: Path,
                 study: Any, show: Callable[[Any], None]) -> None:
    """``--jobs N``: N single-threaded processes run the study's trials; each trial finished
    or pruned is shown (``show``) as it ends."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # children: one thread each
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(spec, storage, lock_path,
                                                      spec.base.dataset, args.data_root,
                                                      args.device, os.getpid()))
               for _ in range(args.jobs)]
    for worker in workers:
        worker.start()
    try:
        while any(w.is_alive() for w in workers):
            time.sleep(2.0)
            for trial in study.get_trials(deepcopy=False):
                show(trial)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()
    for trial in study.get_trials(deepcopy=False):
        show(trial)


def _existing_conflicts(specs: list, out: Path) -> list[str]:
    """Tuned files at the specs' names written by another study setup."""
    # here, not at the top: bench.tune.study imports torch and optuna
    from bench.tune.study import tuned_dir

    problems = []
    for spec in specs:
        path = tuned_dir(out) / f"{spec.stem}.json"
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))["study"]["name"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if recorded != spec.study_name:
            problems.append(f"{path} holds study {recorded}, another setup than this command's "
                            f"{spec.study_name}; use another --out, or --force to replace it")
    return problems


def run(args: argparse.Namespace) -> int:
    # here, not at the top: these import torch
    from bench.run.session import Preempted
    from datasets import DATASETS, DatasetError, load_dataset

    args.dataset = DATASETS.canonical(args.dataset)
    try:
        dataset = load_dataset(args.dataset, args.data_root)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    specs, problems = build_specs(args, {args.dataset: dataset})
    if not args.force:
        problems += _existing_conflicts(specs, args.out)
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        print(f"{len(problems)} problem(s) with this study. Nothing was run or written.",
              file=sys.stderr)
        return EXIT_USAGE
    incomplete = []
    try:
        for spec in specs:
            if not _tune_one(spec, args, dataset):
                incomplete.append(spec.stem)
    except (Preempted, KeyboardInterrupt):
        print(f"interrupted: finished trials are kept in {args.out}/tuned; rerun the same "
              "command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    if incomplete:
        print(f"not finished: {', '.join(incomplete)} (rerun the same command to resume)",
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
