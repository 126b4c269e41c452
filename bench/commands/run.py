"""``python -m bench run`` (and ``bench plan`` = ``run --dry-run`` that saves the plan): its
options and the command. The sweep's configurations and checks are
:mod:`bench.commands.run_sweep`'s; where and how its runs start, :mod:`bench.commands.run_launch`'s.

Only argparse and the neutral layer at the top: building the command line imports no torch.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.commands.config_file import add_config_argument
from bench.commands.table import cmd_table
from bench.common import options
from bench.common.arg_types import name_list, positive_float
from bench.common.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

HELP = "train and test methods; one result file per run"
PLAN_HELP = ("the cost of a `bench run` sweep before it runs: the same arguments as run (= run "
             "--dry-run), and the plan is saved in --out for bench table to check")

if TYPE_CHECKING:
    from bench.commands.run_sweep import Sweep


def slurm_option(text: str) -> tuple[str, str]:
    """``--slurm-option KEY=VALUE``: an sbatch option, its key spelled as submitit's."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (an sbatch option), got {text!r}")
    key, value = text.split("=", 1)
    return key.strip().lstrip("-").replace("-", "_"), value.strip()


def dropblock_ramp(text: str) -> int | None:
    """``--dropblock-ramp``: optimiser steps >= 0, or None for ``never``."""
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


def log_formats(text: str) -> list[str]:
    """``--log tensorboard,csv``: the live learning-curve formats, each once."""
    # here, not at the top: it imports torch
    from bench.run.epoch_log import LOG_FORMATS

    formats = list(dict.fromkeys(name_list(text)))
    if not formats or any(f not in LOG_FORMATS for f in formats):
        raise argparse.ArgumentTypeError(f"expected {' or '.join(LOG_FORMATS)} (or both, "
                                         f"comma-separated), got {text!r}")
    return formats


def jobs_count(text: str) -> int | str:
    """``--jobs N|auto``."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of jobs >= 1 or auto, got {text!r}")
    return value


def thread_count(text: str) -> int:
    """``--threads N``, N >= 1."""
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of threads >= 1, got {text!r}")
    return value


def add_arguments(run: argparse.ArgumentParser) -> None:
    """``bench run``'s options, in the order ``--help`` lists them."""
    _add_sweep_arguments(run)
    _add_training_arguments(run)
    _add_output_arguments(run)
    _add_survival_arguments(run)
    add_config_argument(run)


def add_plan_parser(sub: argparse._SubParsersAction) -> None:
    """``bench plan``: no options of its own; :func:`plan_argv` makes it ``run --dry-run``."""
    sub.add_parser("plan", add_help=False, help=PLAN_HELP)


def plan_argv(argv: list[str]) -> tuple[list[str], bool]:
    """The arguments to parse, and whether they are ``bench plan``'s (`bench run --dry-run`
    that also saves the plan)."""
    plan = bool(argv) and argv[0] == "plan"
    return (["run", "--dry-run", *argv[1:]] if plan else argv), plan


def _add_sweep_arguments(run: argparse.ArgumentParser) -> None:
    """What the sweep runs: methods, datasets, episodes, seeds and budget."""
    run.add_argument("--methods", type=name_list, required=True,
                     help="comma-separated method names (see `bench list`; all: every "
                          "registered method) or import paths of methods of your own "
                          "(package.module:Class)")
    run.add_argument("--dataset", type=name_list, required=True,
                     help="dataset name(s), comma-separated (see `bench list`)")
    options.add_ways(run)
    options.add_shots(run, [1, 5], "e.g. 1,5")
    options.add_seeds(run)
    options.add_budget(run, "quick")
    run.add_argument("--episodes", type=int, default=2000, help="test episodes (default 2000)")
    options.add_queries(run, 15, "test queries per class")
    run.add_argument("--out", type=Path, default=Path("results"), help="results folder")
    options.add_device(run)
    options.add_data_root(run, "folder with the dataset's files (default: "
                               "$BRIDGEBENCH_DATA/<dataset> or ~/data/<dataset>)")
    run.add_argument("--allow-nonstandard", action="store_true",
                     help="use data that departs from the standard split (an empty class "
                          "folder, one with fewer images than the others) with a warning "
                          "saying how many classes remain, instead of refusing it")
    options.add_precision(run)


def _add_training_arguments(run: argparse.ArgumentParser) -> None:
    """How each run trains, selects and is tested."""
    options.add_solver(run, "sklearn", "unified-protocol solver: scikit-learn per episode, or "
                                       "the batched exact solver on the device")
    run.add_argument("--logreg-c", type=positive_float, default=3.0,
                     help="inverse L2 strength C of the unified protocol's logistic regression "
                          "(default 3.0: the paper's penalty 0.33, App. C.2)")
    options.add_select_on(
        run, help="protocol whose validation accuracy selects the model: unified (default, "
                  "every method alike) or the method's native adaptation (MetaOptNet's own rule; "
                  "methods without one select on unified)")
    run.add_argument("--compile", action="store_true",
                     help="torch.compile the backbone (compile time counts as training time and "
                          "is also reported apart as first_step_seconds)")
    options.add_backbone_overrides(run)
    options.add_hparam(run, "override a method hyperparameter (repeatable)")
    options.add_set(run, "override a field of the budget (repeatable): optimizer, lr, "
                         "weight_decay, momentum, nesterov, schedule, lr_epochs, lr_factors, "
                         "plateau_factor, plateau_patience, epochs, steps_per_epoch, "
                         "meta_batch, train_shots, train_queries, early_stop_patience, "
                         "val_episodes; e.g. --set optimizer=sgd --set lr_epochs=26,36")
    run.add_argument("--tuned", type=Path, default=None, metavar="FILE|DIR",
                     help="train with the settings `bench tune` found: a tuned/*.json file "
                          "(its method, any shot count) or a folder of them (the file of each "
                          "run's method, dataset, ways and shots); --set and --hparam "
                          "override them")
    run.add_argument("--dropblock-ramp", type=dropblock_ramp, default=False,
                     metavar="STEPS|never",
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


def _add_output_arguments(run: argparse.ArgumentParser) -> None:
    """Logs, the dry run (``bench plan``), reruns and what is printed."""
    run.add_argument("--log", type=log_formats, default=[], metavar="tensorboard,csv",
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
    options.add_no_progress(run)
    run.add_argument("--table", action="store_true",
                     help="print the accuracy and efficiency tables of --out afterwards")


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
    _add_slurm_arguments(group)


def _add_parallel_arguments(group: argparse._ArgumentGroup) -> None:
    """``--jobs``, ``--devices`` and ``--threads`` (:mod:`bench.sweep.pool`)."""
    group.add_argument("--jobs", type=jobs_count, default=None, metavar="N|auto",
                       help="run up to N runs at once, each in its own process (as --isolate); "
                            "on the CPU each gets an equal share of the cores (OMP_NUM_THREADS), "
                            "with --devices one device each, round robin. auto: one per GPU, or "
                            "on the CPU one single-threaded job per core")
    group.add_argument("--devices", type=name_list, default=None, metavar="cuda:0,cuda:1,...",
                       help="devices the --jobs are spread over (job i on device i modulo the "
                            "list); default: every visible GPU, else the CPU")
    group.add_argument("--threads", type=thread_count, default=None, metavar="N",
                       help="intra-op threads per job (OMP_NUM_THREADS; default: the cores "
                            "divided by --jobs). On the CPU the thread count changes the last "
                            "digits of results (summation order)")


def _add_slurm_arguments(group: argparse._ArgumentGroup) -> None:
    """``--launcher`` and the Slurm job's options (:mod:`bench.sweep.launch`)."""
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
    group.add_argument("--slurm-option", type=slurm_option, action="append", default=[],
                       metavar="KEY=VALUE",
                       help="any further sbatch option, e.g. account=proj or qos=long "
                            "(repeatable)")


def run(args: argparse.Namespace) -> int:
    """``bench run`` (and ``bench plan``); a torchrun worker exits at once (gloo)."""
    # here, not at the top: it imports torch
    from bench.run.distributed import finish_process

    return finish_process(cmd_run(args))


def run_parser() -> argparse.ArgumentParser:
    """A parser of ``bench run``'s options alone (what the sweep's options file records)."""
    parser = argparse.ArgumentParser(prog="python -m bench run")
    add_arguments(parser)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    """Check the whole sweep, then train and test its runs (or, with ``--dry-run``, print
    its plan); returns the exit code."""
    # here, not at the top: these import torch
    from bench.commands.run_launch import save_sweep_options
    from bench.commands.run_sweep import Refused, checked_sweep, collapse_lists, refuse

    methods, dataset_names = collapse_lists(args)
    if args.dry_run:
        return _dry_run(args, methods, dataset_names)
    try:
        sweep = checked_sweep(args, methods, dataset_names)
        refuse(save_sweep_options(args, run_parser()))
    except Refused as refusal:
        return refusal.report()
    return _launch(args, sweep)


def _dry_run(args: argparse.Namespace, methods: list, dataset_names: list[str]) -> int:
    """``bench plan``: the sweep's cost from ``bench speed`` reports; nothing starts, and the
    data need not be on this machine."""
    # here, not at the top: these import torch and pandas
    from bench.commands.run_sweep import Refused, plan_configs
    from bench.cost.plan import cmd_plan

    configs, problems = plan_configs(args, methods, dataset_names)
    if problems:
        return Refused(problems, counted=True).report()
    return cmd_plan(args, configs)


def _launch(args: argparse.Namespace, sweep: Sweep) -> int:
    """Start the checked sweep here or on Slurm; print its summary (and the tables)."""
    # here, not at the top: it imports torch
    from bench.commands.run_launch import LAUNCH_ERRORS, Preempted, run_here, submit_slurm

    started = time.perf_counter()
    try:
        if args.launcher == "slurm":
            return submit_slurm(args, sweep.configs, sweep.roots, sweep.identities)
        summary, is_main = run_here(args, sweep.configs, sweep.datasets, sweep.roots,
                                    sweep.identities, sweep.slots)
    except Preempted as stop:
        print(stop if stop.signum == signal.SIGINT else f"pre-empted: {stop}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt as stop:  # a second Ctrl-C, or one outside training
        print(f"{stop or 'interrupted (Ctrl-C)'}: finished results and the last checkpoints in "
              f"{args.out} are kept; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except LAUNCH_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if is_main:
        busy = f", {len(summary.busy)} run elsewhere" if summary.busy else ""
        print(f"{len(summary.finished)} finished, {len(summary.skipped)} skipped, "
              f"{len(summary.failed)} failed{busy} in {time.perf_counter() - started:.0f} s; "
              f"results in {args.out}/runs")
        if args.table:
            cmd_table(args.out)
    return EXIT_FAILED if summary.failed else EXIT_OK
