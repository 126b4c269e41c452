"""Command line: ``python -m bench {run,plan,eval,table,report,list,speed,tune,data,theory}``."""
from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Sequence

from bench.common.arg_types import int_list as _int_list
from bench.common.arg_types import key_value as _hparam
from bench.common.arg_types import name_list as _name_list
from bench.common.arg_types import positive_float as _positive_float
from bench.commands.config_file import ConfigFileError, add_config_argument, apply_config_file
from bench.common.precision import PRECISIONS
from core.budget import BUDGETS
from core.registry import UnknownNameError

EXIT_USAGE = 2
EXIT_PREEMPTED = 143  # SIGTERM: checkpoint saved; rerun the same command to resume
EXIT_INTERRUPTED = 130  # Ctrl-C: the same


def _slurm_option(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (an sbatch option), got {text!r}")
    key, value = text.split("=", 1)
    return key.strip().lstrip("-").replace("-", "_"), value.strip()


def _ramp(text: str) -> int | None:
    if text.strip().lower() in ("never", "none"):
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of optimiser steps (>= 0) or "
                                         f"'never', got {text!r}")
    return value


def _log_formats(text: str) -> list[str]:
    from bench.run.epoch_log import LOG_FORMATS

    formats = list(dict.fromkeys(_name_list(text)))
    if not formats or any(f not in LOG_FORMATS for f in formats):
        raise argparse.ArgumentTypeError(f"expected {' or '.join(LOG_FORMATS)} (or both, "
                                         f"comma-separated), got {text!r}")
    return formats


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="bridgebench: multi-task learning vs gradient-based meta-learning for "
                    "few-shot classification (after Wang, Zhao & Li, ICML 2021).")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and test methods; one result file per run")
    run.add_argument("--methods", type=_name_list, required=True,
                     help="comma-separated method names (see `bench list`; all: every "
                          "registered method) or import paths of methods of your own "
                          "(package.module:Class)")
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
    run.add_argument("--allow-nonstandard", action="store_true",
                     help="use data that departs from the standard split (an empty class "
                          "folder, one with fewer images than the others) with a warning "
                          "saying how many classes remain, instead of refusing it")
    run.add_argument("--precision", choices=PRECISIONS, default="fp32")
    run.add_argument("--solver", choices=("sklearn", "batched"), default="sklearn",
                     help="unified-protocol solver: scikit-learn per episode, or the batched "
                          "exact solver on the device")
    run.add_argument("--logreg-c", type=_positive_float, default=3.0,
                     help="inverse L2 strength C of the unified protocol's logistic regression "
                          "(default 3.0: the paper's penalty 0.33, App. C.2)")
    run.add_argument("--select-on", choices=("unified", "native"), default="unified",
                     help="protocol whose validation accuracy selects the model: unified "
                          "(default, every method alike) or the method's native adaptation "
                          "(MetaOptNet's own rule; methods without one select on unified)")
    run.add_argument("--compile", action="store_true",
                     help="torch.compile the backbone (compile time counts as training time and "
                          "is also reported apart as first_step_seconds)")
    run.add_argument("--backbone", default=None, help="override the budget's backbone")
    run.add_argument("--feature-mode", choices=("avg", "flatten"), default=None,
                     help="override the budget's feature mode")
    run.add_argument("--hparam", type=_hparam, action="append", default=[], metavar="KEY=VALUE",
                     help="override a method hyperparameter (repeatable)")
    run.add_argument("--set", type=_hparam, action="append", default=[], metavar="FIELD=VALUE",
                     help="override a field of the budget (repeatable): optimizer, lr, "
                          "weight_decay, momentum, nesterov, schedule, lr_epochs, lr_factors, "
                          "plateau_factor, plateau_patience, epochs, steps_per_epoch, "
                          "meta_batch, train_shots, train_queries, early_stop_patience, "
                          "val_episodes; e.g. --set optimizer=sgd --set lr_epochs=26,36")
    run.add_argument("--tuned", type=Path, default=None, metavar="FILE|DIR",
                     help="train with the settings `bench tune` found: a tuned/*.json file "
                          "(its method, any shot count) or a folder of them (the file of each "
                          "run's method, dataset, ways and shots); --set and --hparam "
                          "override them")
    run.add_argument("--dropblock-ramp", type=_ramp, default=False, metavar="STEPS|never",
                     help="override the budget's DropBlock ramp (ResNet-12): optimiser steps "
                          "over which the drop rate reaches its full value (0: at once), or "
                          "'never' (DropBlock stays inactive)")
    run.add_argument("--test-every", type=int, default=0, metavar="N",
                     help="also evaluate the test split every N epochs (unified protocol, "
                          "--test-every-episodes episodes) for the learning curve only: never "
                          "used to select, excluded from device-hours, not part of the run's "
                          "identity (default 0: off)")
    run.add_argument("--test-every-episodes", type=int, default=None, metavar="K",
                     help="test episodes of each --test-every evaluation: the first K of the "
                          "run's test episodes (default: 100, at most --episodes)")
    run.add_argument("--log", type=_log_formats, default=[], metavar="tensorboard,csv",
                     help="live learning curves of every run in <out>/logs/<key>/: "
                          "tensorboard (event files: training loss, validation accuracy, "
                          "learning rate, cumulative device-hours per epoch; needs the "
                          "tensorboard package) and/or csv (epochs.csv); records only, not "
                          "part of the run's identity")
    run.add_argument("--dry-run", action="store_true",
                     help="print the sweep's projected device-hours and model-file disk (from "
                          "`bench speed` reports, see --speed-reports) and start nothing")
    run.add_argument("--speed-reports", type=Path, default=Path("results/speed"),
                     help="folder of `bench speed` JSON reports that --dry-run and `bench plan`"
                          " project from (default results/speed)")
    run.add_argument("--assume-epochs", type=int, default=60,
                     help="--dry-run / plan: epochs assumed for budgets that stop early "
                          "(default 60, at most the budget's maximum)")
    run.add_argument("--force", action="store_true",
                     help="rerun finished results too (every run from scratch)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--table", action="store_true",
                     help="print the accuracy and efficiency tables of --out afterwards")
    _add_survival_arguments(run)
    add_config_argument(run)

    plan = sub.add_parser("plan", add_help=False,
                          help="the cost of a `bench run` sweep before it runs: the same "
                               "arguments as run (= run --dry-run), and the plan is saved in "
                               "--out for bench table to check")

    table = sub.add_parser("table", help="turn result files into accuracy and efficiency tables")
    table.add_argument("folder", type=Path, nargs="?", default=Path("results"))
    table.add_argument("--out", type=Path, default=None, metavar="DIR",
                       help="write the table files here (default: into the results folder; "
                            "when that cannot be written, the tables are still printed)")
    table.add_argument("--strict", action="store_true",
                       help="stop at the first invalid result file (default: leave it out, "
                            "tabulate the rest and list it under the tables)")
    table.add_argument("--baseline", default=None,
                       help="method every other is compared with in comparison.{csv,md} "
                            "(default: the method that declares itself the baseline, MTL)")
    table.add_argument("--margin", type=_positive_float, default=1.0,
                       help="equivalence margin in accuracy points for the paired comparisons' "
                            "verdicts (two one-sided tests; default 1.0)")
    _add_import_arguments(table)
    table.add_argument("--brief", action="store_true",
                       help="print accuracy, the paired difference from the baseline and the "
                            "training cost with its ratio to the baseline's, a few lines each, "
                            "then the files written (the files are those of the full tables)")

    report = sub.add_parser("report", help="one self-contained HTML page of a results folder: "
                                           "tables, figures, footnotes and provenance")
    from bench.report import html_report

    html_report.add_arguments(report)

    listing = sub.add_parser("list", help="list methods (and where each came from), datasets "
                                          "and budgets")
    listing.add_argument("--methods", type=_name_list, default=[],
                         help="also load and list these methods given by import path "
                              "(package.module:Class)")

    speed = sub.add_parser("speed", help="steady-state training throughput of every method vs "
                                         "its bare backbone, and paper-budget device-hours")
    from bench.cost import speed_args as speed_cli  # the options alone: --help imports no torch

    speed_cli.add_arguments(speed)

    evaluation = sub.add_parser(
        "eval", help="re-evaluate trained models (<out>/models/*.pt): other data, shots, "
                     "protocols, L2 penalties; one eval result each under <out>/evals")
    from bench.commands import eval as eval_cli

    eval_cli.add_arguments(evaluation)
    add_config_argument(evaluation)
    _add_import_arguments(evaluation)

    data = sub.add_parser("data", help="prepare or verify a dataset's files (prepare/verify)")
    from bench.commands import data as data_cli

    data_cli.add_arguments(data)

    tune = sub.add_parser("tune", help="the same hyperparameter search for every method, on "
                                       "validation data only (Optuna); <out>/tuned/*.json for "
                                       "bench run --tuned")
    from bench.commands import tune as tune_cli

    tune_cli.add_arguments(tune)
    add_config_argument(tune)

    theory = sub.add_parser("theory", help="the paper's Figure 1: MTL vs ANIL predictors "
                                           "from NTK/NNGP kernels and trained networks")
    from bench.theory import options as theory_cli  # the options alone: no torch for --help

    theory_cli.add_arguments(theory)
    return parser


def _add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """``--allow-import`` and ``--methods`` of the commands that read files from elsewhere
    (``bench table``, ``bench eval``): a recorded import path is imported only when asked."""
    parser.add_argument("--allow-import", action="store_true",
                        help="import the methods that result and model files name by import "
                             "path (their recorded method_source); without it, no file's "
                             "contents import code")
    parser.add_argument("--methods", type=_name_list, default=[], metavar="PKG.MOD:CLASS,...",
                        help="import these methods (import paths) first, allowing the files "
                             "that record them")


def _add_survival_arguments(run: argparse.ArgumentParser) -> None:
    """Checkpoints, isolation and launchers (see the README's "Long sweeps" section)."""
    group = run.add_argument_group(
        "long sweeps", "Each run is checkpointed every epoch (and on SIGTERM) to "
        "<out>/checkpoints; rerunning the same command resumes unfinished runs. Several "
        "`bench run` processes may share one --out. Data-parallel: torchrun "
        "--nproc_per_node=N -m bench run ...")
    group.add_argument("--restart", action="store_true",
                       help="discard the checkpoints of the runs to do and train them from "
                            "scratch")
    group.add_argument("--keep-checkpoints", action="store_true",
                       help="keep each run's checkpoint after its result is written")
    group.add_argument("--no-save-model", dest="save_model", action="store_false",
                       help="do not write each finished run's selected model to "
                            "<out>/models/<key>.pt (written by default; `bench eval` and "
                            "bench.api.load_model read it)")
    group.add_argument("--isolate", action="store_true",
                       help="run each (method, dataset, ways, shots, seed) in its own process: "
                            "a crash or out-of-memory kill writes one failure record and the "
                            "sweep goes on")
    _add_parallel_arguments(group)
    group.add_argument("--launcher", choices=("local", "slurm"), default="local",
                       help="local (default): run here; slurm: submit one job per run through "
                            "submitit and return")
    group.add_argument("--slurm-partition", default=None, help="Slurm partition")
    group.add_argument("--slurm-time", default="24:00:00",
                       help="time limit per job (Slurm format: 90, 12:00:00, 2-00:00:00); a "
                            "job that reaches it is requeued and resumes from its checkpoint")
    group.add_argument("--slurm-gpus-per-job", type=int, default=1,
                       help="GPUs per job; more than one trains data-parallel over them")
    group.add_argument("--slurm-cpus-per-task", type=int, default=None,
                       help="CPU cores per GPU task (default: the cluster's)")
    group.add_argument("--slurm-option", type=_slurm_option, action="append", default=[],
                       metavar="KEY=VALUE",
                       help="any further sbatch option, e.g. account=proj or qos=long "
                            "(repeatable)")


def _jobs_count(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of jobs >= 1 or auto, got {text!r}")
    return value


def _thread_count(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of threads >= 1, got {text!r}")
    return value


def _add_parallel_arguments(group: argparse._ArgumentGroup) -> None:
    """``--jobs`` and ``--devices`` (:mod:`bench.sweep.pool`)."""
    group.add_argument("--jobs", type=_jobs_count, default=None, metavar="N|auto",
                       help="run up to N runs at once, each in its own process (as --isolate); "
                            "on the CPU each gets an equal share of the cores (OMP_NUM_THREADS), "
                            "with --devices one device each, round robin. auto: one per GPU, or "
                            "on the CPU one single-threaded job per core")
    group.add_argument("--devices", type=_name_list, default=None, metavar="cuda:0,cuda:1,...",
                       help="devices the --jobs are spread over (job i on device i modulo the "
                            "list); default: every visible GPU, else the CPU")
    group.add_argument("--threads", type=_thread_count, default=None, metavar="N",
                       help="intra-op threads per job (OMP_NUM_THREADS; default: the cores "
                            "divided by --jobs). On the CPU the thread count changes the last "
                            "digits of results (summation order)")


def _parallel_slots(args: argparse.Namespace, runs: int) -> list | str:
    """The :class:`bench.sweep.pool.Slot` s of ``--jobs`` (or a message saying what is wrong)."""
    import torch  # here, not at the top: --help and `bench list` need no torch at start

    from bench.sweep.pool import auto_jobs, check_devices, cpu_cores, plan_slots

    if args.devices is not None:
        if args.device != "auto":
            return "give either --device or --devices, not both"
        devices = list(args.devices)
        problem = check_devices(devices)
        if problem:
            return problem
    elif args.device in ("auto", "cuda") and torch.cuda.is_available():
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    else:
        devices = [args.device if args.device != "auto" else "cpu"]
    cores = cpu_cores()
    jobs = auto_jobs(devices, cores, runs) if args.jobs == "auto" else args.jobs
    return plan_slots(jobs, devices, cores, args.threads)


def cmd_list(extra_methods: Sequence[str] = ()) -> int:
    """Methods (with where each came from), datasets and budgets; ``extra_methods``: import
    paths to load and list too."""
    from bench.common.config import describe_budgets  # here: the registries import torch
    from datasets import DATASETS
    from methods import METHODS
    from methods.plugins import resolve_method
    from bench.tune.study import shared_space
    from core.search import describe
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
    return 0


def _build_configs(args: argparse.Namespace, methods: list[tuple[str, str | None]],
                   dataset_names: list[str], hparams: dict) -> tuple[list, list[str]]:
    """The sweep's run configurations, and what kept some from being built (a budget a
    method does not declare). ``methods``: (registered name, import path or None) as
    :func:`methods.plugins.resolve_method` gives them."""
    from dataclasses import replace

    from bench.common.config import RunConfig, resolve_budget  # here: bench.common.config imports torch
    from methods import METHODS

    from bench.store.tuned_files import TunedError, load_tuned
    from core.budget import validate_budget_settings, with_settings

    configs, problems = [], []
    try:
        sets = validate_budget_settings(dict(args.set))
    except ValueError as error:
        return [], [str(error)]
    try:
        tuned = load_tuned(args.tuned) if args.tuned is not None else None
    except TunedError as error:
        return [], [str(error)]
    for name in dataset_names:
        for method, source in methods:
            for shots in args.shots:
                try:
                    budget = resolve_budget(args.budget, METHODS.get(method), name, shots)
                    if tuned is not None:
                        budget = tuned.apply(budget, method, name, args.ways, shots)
                    budget = with_settings(budget, sets)
                except (NotImplementedError, ValueError) as error:
                    problems.append(f"--budget {args.budget} for {method} on {name} "
                                    f"{shots}-shot: {error}")
                    continue
                overrides = {k: v for k, v in (("backbone", args.backbone),
                                               ("feature_mode", args.feature_mode))
                             if v is not None}
                if args.dropblock_ramp is not False:
                    overrides["dropblock_ramp_steps"] = args.dropblock_ramp
                if hparams:
                    overrides["hparams"] = {**budget.hparams, **hparams}
                if overrides:
                    budget = replace(budget, **overrides)
                for seed in args.seeds:
                    configs.append(RunConfig(
                        method=method, dataset=name, ways=args.ways, shots=shots, seed=seed,
                        budget=budget, queries=args.queries, episodes=args.episodes,
                        precision=args.precision, solver=args.solver,
                        compile=args.compile, logreg_c=args.logreg_c,
                        select_on=args.select_on, method_source=source,
                        log=tuple(args.log), **_test_every(args)))
    if tuned is not None and not problems:
        for line in tuned.notes([(c.method, c.dataset, c.ways, c.shots) for c in configs]):
            print(line)
    return configs, list(dict.fromkeys(problems))


def _test_every(args: argparse.Namespace) -> dict:
    """``--test-every`` and its episodes (default: 100, at most ``--episodes``)."""
    from bench.common.config import DEFAULT_TEST_EVERY_EPISODES

    episodes = args.test_every_episodes
    if episodes is None:
        episodes = min(DEFAULT_TEST_EVERY_EPISODES, args.episodes)
    return {"test_every": args.test_every, "test_every_episodes": episodes}


def selection_notes(configs: list, asked: str) -> list[str]:
    """One line per method that cannot select on the protocol ``asked`` (it has no native
    adaptation, so its configuration selects on unified)."""
    from methods.plugins import method_class

    names = sorted({c.method for c in configs if c.select_on != asked})
    return [f"note: {method_class(name).display_name} has no native adaptation; it selects on "
            "unified validation accuracy (--select-on native applies to the others)"
            for name in names]


def _check_launch_flags(args: argparse.Namespace, world_size: int) -> str | None:
    """What is wrong with the combination of launch flags, if anything."""
    isolate = args.isolate or args.jobs is not None
    if world_size > 1 and (isolate or args.launcher != "local"):
        return ("--isolate, --jobs and --launcher slurm start their own processes; do not "
                "combine them with torchrun (use --slurm-gpus-per-job for data-parallel Slurm "
                "jobs)")
    if isolate and args.launcher == "slurm":
        return ("--launcher slurm already runs every run in a job of its own; drop --isolate "
                "and --jobs")
    if (args.devices is not None or args.threads is not None) and args.jobs is None:
        return "--devices and --threads apply to --jobs; give --jobs too (e.g. --jobs auto)"
    if args.launcher == "slurm" and args.slurm_gpus_per_job < 0:
        return "--slurm-gpus-per-job must be 0 or more"
    return None


def _check_meta_batches(configs: list, processes: int) -> str | None:
    """Data-parallel runs need at least one task of each meta-batch per process."""
    small = [f"{c.key} ({c.budget.meta_batch})" for c in configs
             if c.budget.meta_batch < processes]
    if processes <= 1 or not small:
        return None
    return (f"{processes} processes per run, but these runs' meta-batches have fewer tasks: "
            f"{', '.join(small[:8])}{' ...' if len(small) > 8 else ''}; each process needs at "
            "least one task of every meta-batch. Use fewer GPUs per run for them (a separate "
            "command), or a larger meta-batch.")


def _collapse_lists(args: argparse.Namespace) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Methods (registered name, import path) and dataset names of the command line, with
    every repeat (``--seeds 0,0``, ``--shots 1,1``, ``--methods a,A``) collapsed and noted;
    ``args.shots`` and ``args.seeds`` are collapsed in place."""
    from bench.sweep.validation import collapse_duplicates
    from datasets import DATASETS
    from methods import METHODS
    from methods.plugins import resolve_method

    names = [n for m in args.methods for n in (METHODS.names() if m.lower() == "all" else [m])]
    methods, note_m = collapse_duplicates([(m, resolve_method(m)) for m in names],
                                          "--methods", key=lambda p: p[1][0],
                                          show=lambda p: p[0])
    datasets, note_d = collapse_duplicates([(d, DATASETS.canonical(d)) for d in args.dataset],
                                           "--dataset", key=lambda p: p[1],
                                           show=lambda p: p[0])
    args.shots, note_s = collapse_duplicates(args.shots, "--shots")
    args.seeds, note_e = collapse_duplicates(args.seeds, "--seeds")
    for note in (note_m, note_d, note_s, note_e):
        if note:
            print(note)
    return [m for _, m in methods], [d for _, d in datasets]


def _refuse_sweep(problems: list[str]) -> int:
    """One line per problem, a count, exit 2: nothing was run or written."""
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    print(f"{len(problems)} problem(s) with this sweep. Nothing was run or written.",
          file=sys.stderr)
    return EXIT_USAGE


def cmd_run(args: argparse.Namespace) -> int:
    from bench.store.checkpoint import StorageError, ensure_writable
    from bench.run.distributed import DistributedSetupError, environment_world_size
    from bench.run.epoch_log import check_formats
    from bench.sweep.jobs import SweepStopped
    from bench.run.session import Preempted
    from bench.sweep.runs import (ResultConflict, data_identities, preflight_checkpoints,
                             preflight_results)
    from bench.run.training import resolve_device
    from bench.sweep.validation import argument_problems, out_problem, sweep_problems, unique_runs
    from datasets import DatasetError, load_dataset

    methods, dataset_names = _collapse_lists(args)
    hparams = dict(args.hparam)
    if args.dry_run:  # bench plan: the sweep's cost from bench speed reports; nothing starts,
        from bench.cost.plan import cmd_plan  # and the data need not be on this machine

        configs, problems = _build_configs(args, methods, dataset_names, hparams)
        problems = argument_problems(args.ways, args.shots, args.queries, args.episodes,
                                     args.seeds) + problems
        if problems:
            return _refuse_sweep(problems)
        return cmd_plan(args, configs)
    world_size = environment_world_size()
    problem = _check_launch_flags(args, world_size)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if world_size == 1 and args.launcher == "local":
        resolve_device(args.device)  # fail early on a missing GPU
    # One validation pass over the whole sweep before anything trains or is written.
    problems = argument_problems(args.ways, args.shots, args.queries, args.episodes,
                                 args.seeds)
    problems += [p for p in [out_problem(args.out), check_formats(args.log)] if p]
    datasets, roots = {}, {}
    for name in dataset_names:
        roots[name] = args.data_root if len(dataset_names) == 1 or args.data_root is None \
            else args.data_root / name
        try:
            datasets[name] = load_dataset(name, roots[name],
                                          allow_nonstandard=args.allow_nonstandard)
        except DatasetError as error:
            problems.append(str(error))
    configs, unbuilt = _build_configs(args, methods, dataset_names, hparams)
    problems += unbuilt
    problems += sweep_problems([c for c in configs if c.dataset in datasets], datasets)
    if problems:
        return _refuse_sweep(problems)
    configs, note = unique_runs(configs)
    if note:
        print(note)
    for line in selection_notes(configs, args.select_on):
        print(line)
    slots = _parallel_slots(args, len(configs)) if args.jobs is not None else None
    if isinstance(slots, str):
        print(f"error: {slots}", file=sys.stderr)
        return EXIT_USAGE
    processes = args.slurm_gpus_per_job if args.launcher == "slurm" else world_size
    problem = _check_meta_batches(configs, processes)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        ensure_writable(args.out)
    except StorageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    identities = data_identities(configs, datasets)
    if not args.force:
        problems = preflight_results(configs, identities, args.out)
        if not args.restart:
            problems += preflight_checkpoints(configs, datasets, args.out, world_size)
        if problems:
            for line in problems:
                print(f"error: {line}", file=sys.stderr)
            return EXIT_USAGE
    problem = _save_sweep_options(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    started = time.perf_counter()
    try:
        if args.launcher == "slurm":
            return _submit_slurm(args, configs, roots, identities)
        summary, is_main = _run_here(args, configs, datasets, roots, identities, slots)
    except Preempted as stop:
        print(stop if stop.signum == signal.SIGINT else f"pre-empted: {stop}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt as stop:  # a second Ctrl-C, or one outside training
        print(f"{stop or 'interrupted (Ctrl-C)'}: finished results and the last checkpoints in "
              f"{args.out} are kept; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (StorageError, SweepStopped, DistributedSetupError, ResultConflict) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if is_main:
        busy = f", {len(summary.busy)} run elsewhere" if summary.busy else ""
        print(f"{len(summary.finished)} finished, {len(summary.skipped)} skipped, "
              f"{len(summary.failed)} failed{busy} in {time.perf_counter() - started:.0f} s; "
              f"results in {args.out}/runs")
        if args.table:
            cmd_table(args.out)
    return 1 if summary.failed else 0


def _save_sweep_options(args: argparse.Namespace) -> str | None:
    """Write the sweep's resolved options (defaults, ``--config`` and the command line) to
    ``<out>/sweeps/<UTC start time>-<pid>.yaml``, one file per sweep (several sweeps may share
    one --out, at once too), which ``--config`` reads back; only the first process of a
    torchrun group writes it. Returns what went wrong, if anything."""
    import datetime as dt
    import os

    from bench.common import command_line
    from bench.commands.config_file import resolved_options, subcommand, write_config_file

    if os.environ.get("RANK", "0") != "0":
        return None
    now = dt.datetime.now(dt.timezone.utc)
    path = args.out / "sweeps" / f"{now:%Y%m%dT%H%M%SZ}-{os.getpid()}.yaml"
    options = resolved_options(subcommand(build_parser(), "run"), args)
    header = [f"bridgebench sweep started {now.isoformat(timespec='seconds')}: the options "
              "of `run` after defaults, --config and the command line",
              f"command: {command_line.current()}",
              f"rerun (finished runs are skipped): {command_line.program()} run --config "
              f"{path}"]
    try:
        write_config_file(path, options, header)
    except OSError as error:
        return f"cannot write the sweep's configuration {path}: {error.strerror or error}"
    print(f"sweep configuration: {path}")
    return None


def _jobs(args: argparse.Namespace, configs: list, roots: dict, identities: dict) -> list:
    from bench.sweep.jobs import RunJob

    return [RunJob(config=c.to_dict(), out=str(args.out),
                   data_root=str(roots[c.dataset]) if roots[c.dataset] is not None else None,
                   device=args.device, force=args.force, restart=args.restart,
                   keep_checkpoints=args.keep_checkpoints, save_model=args.save_model,
                   progress=not args.no_progress,
                   data_fingerprint=identities[c.dataset]["fingerprint"],
                   allow_nonstandard=args.allow_nonstandard)
            for c in configs]


def _run_here(args: argparse.Namespace, configs: list, datasets: dict, roots: dict,
              identities: dict, slots: list | None = None):
    """The sweep on this machine: in this process (data-parallel under torchrun) or, with
    --isolate or --jobs (``slots``), each run in a child process. Returns (summary, whether
    this is rank 0)."""
    from bench.run.distributed import init_from_environment, shutdown
    from bench.sweep.launch import run_isolated
    from bench.sweep.runs import CheckpointPolicy, run_sweep
    from bench.run.training import resolve_device

    if slots is not None:
        return _run_jobs(args, configs, roots, identities, slots), True
    if args.isolate:
        return run_isolated(_jobs(args, configs, roots, identities), args.out), True
    parallel, device_name = init_from_environment(args.device)
    try:
        summary = run_sweep(configs, datasets, resolve_device(device_name), args.out,
                            force=args.force, progress=not args.no_progress,
                            checkpoints=CheckpointPolicy(True, args.restart,
                                                         args.keep_checkpoints),
                            parallel=parallel, identities=identities,
                            save_models=args.save_model)
    finally:
        shutdown(parallel)
    return summary, parallel.is_main


def _run_jobs(args: argparse.Namespace, configs: list, roots: dict, identities: dict,
              slots: list):
    """``--jobs``: the runs in child processes, several at once (:mod:`bench.sweep.pool`)."""
    from bench.sweep.pool import run_processes

    where = sorted({s.device for s in slots})
    print(f"{len(configs)} run(s), up to {len(slots)} at once on {', '.join(where)} "
          f"({slots[0].threads} thread(s) each); each run's output in {args.out}/logs/")
    return run_processes(_jobs(args, configs, roots, identities), args.out, slots,
                         progress=not args.no_progress, widen_last=args.threads is None)


def _submit_slurm(args: argparse.Namespace, configs: list, roots: dict,
                  identities: dict) -> int:
    from bench.sweep.launch import SlurmOptions, parse_slurm_time, pending_jobs, submit

    options = SlurmOptions(partition=args.slurm_partition,
                           time_min=parse_slurm_time(args.slurm_time),
                           gpus_per_job=args.slurm_gpus_per_job,
                           cpus_per_task=args.slurm_cpus_per_task,
                           extra=dict(args.slurm_option))
    todo, notes = pending_jobs(_jobs(args, configs, roots, identities), args.out)
    for line in notes:
        print(line)
    if not todo:
        print("nothing to submit")
        return 0
    try:
        jobs = submit(todo, options, args.out / "slurm")
    except RuntimeError as error:  # submitit: no sbatch/srun here
        print(f"error: cannot submit Slurm jobs from this machine ({error}); run the command "
              "on a Slurm login node, or use --launcher local", file=sys.stderr)
        return EXIT_USAGE
    ids = ", ".join(job.job_id for job in jobs[:5]) + (" ..." if len(jobs) > 5 else "")
    print(f"submitted {len(jobs)} Slurm job(s) ({ids}), {options.gpus_per_job} GPU(s) and "
          f"{options.time_min} min each; logs in {args.out}/slurm. Timed-out or pre-empted "
          "jobs are requeued and resume from their checkpoints; rerun this command to "
          f"resubmit failed ones, and `python -m bench table {args.out}` for the tables.")
    return 0


def cmd_table(folder: Path, out: Path | None = None, strict: bool = False,
              args: argparse.Namespace | None = None) -> int:
    """Print the tables of ``folder`` and write their files into ``out`` (default: the
    folder). The results are read once and the tables built once; files that cannot be
    written never cost the printed tables: without ``out`` a read-only folder is one line of
    note (exit 0); an unwritable ``out`` is an error (exit 2) after the tables are printed.
    ``args``: the paired tables' ``--baseline`` and ``--margin``, and ``--brief``
    (:mod:`bench.report.summary` of the tables built, printed instead of them)."""
    from bench.report.all_tables import build_tables
    from bench.report.paired_tables import PairedOptions
    from bench.report.summary import summarize
    from bench.store.eval_files import EvalFileError
    from bench.store.result_set import find_result_files, load_result_set
    from bench.store.results import ResultFileError
    from bench.store.written import output_problem, snapshot, written_since

    paired = PairedOptions(args.baseline, args.margin) if args is not None else None
    target = out if out is not None else folder
    brief = bool(getattr(args, "brief", False))
    try:
        files = find_result_files(folder)
        if not files.inputs:
            print(f"no results in {folder} (no run or eval result files under it); nothing "
                  "written", file=sys.stderr)
            return EXIT_USAGE
        why = output_problem(target)
        before = snapshot(target)
        tables = build_tables(load_result_set(files), strict=strict, paired=paired)
        if why is None:
            try:
                tables.write(target)
            except OSError as error:  # a write failed part-way (disk full, ...)
                why = (f"{error.filename}: " if error.filename else "") \
                    + (error.strerror or str(error))
        text = (summarize(tables, None, written_since(target, before) if why is None else None)
                if brief else tables.text(written=why is None))
    except (ResultFileError, EvalFileError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(text)
    if why is not None:
        message = (f"the table files could not be written to {target} ({why})"
                   + ("" if out is not None else "; pass --out DIR to write them elsewhere"))
        print(f"{'error' if out is not None else 'note'}: {message}", file=sys.stderr)
        return EXIT_USAGE if out is not None else 0
    if brief:  # the summary ends with the files written
        return 0
    names = [p.name for p in written_since(target, before)]
    print(f"(written to {target}: {', '.join(names) or 'nothing'})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from bench.common import command_line

    argv = list(sys.argv[1:] if argv is None else argv)
    plan = bool(argv) and argv[0] == "plan"  # `bench run --dry-run` that also saves the plan
    parser, parsed = build_parser(), ["run", "--dry-run", *argv[1:]] if plan else argv
    try:
        apply_config_file(parser, parsed)  # --config FILE: defaults that flags override
    except ConfigFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(parsed)
    args.save_plan = plan
    with command_line.remembered(argv):  # provenance's command, in child processes too
        return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        if args.command == "list":
            return cmd_list(args.methods)
        if args.command == "run":
            from bench.run.distributed import finish_process

            return finish_process(cmd_run(args))  # a torchrun worker exits at once (gloo)
        if args.command == "table":
            from methods.plugins import allow_from_arguments

            allow_from_arguments(args.allow_import, args.methods)
            return cmd_table(args.folder, args.out, args.strict, args)
        if args.command == "report":
            from bench.report import html_report

            return html_report.run(args)
        if args.command == "speed":
            from bench.cost import speed as speed_cli

            return speed_cli.run(args)
        if args.command == "eval":
            from bench.commands import eval as eval_cli

            return eval_cli.run(args)
        if args.command == "data":
            from bench.commands import data as data_cli

            return data_cli.run(args)
        if args.command == "tune":
            from bench.commands import tune as tune_cli

            return tune_cli.run(args)
        if args.command == "theory":
            from bench.theory import cli as theory_cli

            return theory_cli.run(args)
    except UnknownNameError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    raise AssertionError(f"unhandled command {args.command}")
