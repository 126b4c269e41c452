"""``bench run``'s sweep: its run configurations from the command line, and every check of
the whole sweep before anything trains or is written (:mod:`bench.commands.run`); the
problems found are one :class:`Refused`.

Imported when ``bench run`` runs, not when the command line is built: it imports torch.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace

import torch

from bench.common.config import DEFAULT_TEST_EVERY_EPISODES, RunConfig, resolve_budget
from bench.common.exit_codes import EXIT_USAGE
from bench.run.distributed import environment_world_size
from bench.run.epoch_log import check_formats
from bench.run.training import resolve_device
from bench.store.checkpoint import StorageError, ensure_writable
from bench.store.tuned_files import TunedError, load_tuned
from bench.sweep.pool import auto_jobs, check_devices, cpu_cores, plan_slots
from bench.sweep.runs import data_identities, preflight_checkpoints, preflight_results
from bench.sweep.validation import (argument_problems, collapse_duplicates, out_problem,
                                    sweep_problems, unique_runs)
from core.budget import TrainBudget, validate_budget_settings, with_settings
from datasets import DATASETS, DatasetError, load_dataset
from methods import METHODS
from methods.plugins import method_class, resolve_method


def collapse_lists(args: argparse.Namespace) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Methods (registered name, import path) and dataset names of the command line, with
    every repeat (``--seeds 0,0``, ``--shots 1,1``, ``--methods a,A``) collapsed and noted;
    ``args.shots`` and ``args.seeds`` are collapsed in place."""
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


def plan_configs(args: argparse.Namespace, methods: list[tuple[str, str | None]],
                 dataset_names: list[str]) -> tuple[list[RunConfig], list[str]]:
    """``bench plan``'s configurations and problems: the arguments and budgets only (the data
    need not be on this machine)."""
    configs, problems = build_configs(args, methods, dataset_names, dict(args.hparam))
    return configs, argument_problems(args.ways, args.shots, args.queries, args.episodes,
                                      args.seeds) + problems


class Refused(Exception):
    """The sweep cannot start: one ``error:`` line per problem (with their count after the
    validation pass over the whole sweep); nothing was run or written."""

    def __init__(self, problems: list[str], counted: bool = False) -> None:
        super().__init__("; ".join(problems))
        self.problems, self.counted = problems, counted

    def report(self) -> int:
        """Print the problems; returns the exit code (:data:`EXIT_USAGE`)."""
        for line in self.problems:
            print(f"error: {line}", file=sys.stderr)
        if self.counted:
            print(f"{len(self.problems)} problem(s) with this sweep. Nothing was run or "
                  "written.", file=sys.stderr)
        return EXIT_USAGE


def refuse(problem: str | None) -> None:
    """Raise :class:`Refused` for ``problem``, if there is one."""
    if problem:
        raise Refused([problem])


@dataclass
class Sweep:
    """A sweep that passed every check: its runs, their data and where the data lie, the
    data identities and the ``--jobs`` slots (None: no ``--jobs``)."""

    configs: list[RunConfig]
    datasets: dict
    roots: dict
    identities: dict
    slots: list | None


def checked_sweep(args: argparse.Namespace, methods: list[tuple[str, str | None]],
                  dataset_names: list[str]) -> Sweep:
    """Every check before anything trains or is written, in the order they print; raises
    :class:`Refused` with what failed."""
    world_size = environment_world_size()
    refuse(check_launch_flags(args, world_size))
    if world_size == 1 and args.launcher == "local":
        resolve_device(args.device)  # fail early on a missing GPU
    configs, datasets, roots, problems = _checked_configs(args, methods, dataset_names)
    if problems:
        raise Refused(problems, counted=True)
    configs, note = unique_runs(configs)
    if note:
        print(note)
    for line in selection_notes(configs, args.select_on):
        print(line)
    slots = parallel_slots(args, len(configs)) if args.jobs is not None else None
    refuse(slots if isinstance(slots, str) else None)
    processes = args.slurm_gpus_per_job if args.launcher == "slurm" else world_size
    refuse(check_meta_batches(configs, processes))
    try:
        ensure_writable(args.out)
    except StorageError as error:
        raise Refused([str(error)]) from None
    identities = data_identities(configs, datasets)
    if not args.force:
        problems = preflight_results(configs, identities, args.out)
        if not args.restart:
            problems += preflight_checkpoints(configs, datasets, args.out, world_size)
        if problems:
            raise Refused(problems)
    return Sweep(configs, datasets, roots, identities, slots)


def _checked_configs(args: argparse.Namespace, methods: list[tuple[str, str | None]],
                     dataset_names: list[str]) -> tuple[list[RunConfig], dict, dict, list[str]]:
    """One validation pass over the whole sweep before anything trains or is written: the
    configurations, the datasets and their roots by name, and every problem found."""
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
    configs, unbuilt = build_configs(args, methods, dataset_names, dict(args.hparam))
    problems += unbuilt
    problems += sweep_problems([c for c in configs if c.dataset in datasets], datasets)
    return configs, datasets, roots, problems


def build_configs(args: argparse.Namespace, methods: list[tuple[str, str | None]],
                  dataset_names: list[str], hparams: dict) -> tuple[list, list[str]]:
    """The sweep's run configurations, and what kept some from being built (a budget a
    method does not declare). ``methods``: (registered name, import path or None) as
    :func:`methods.plugins.resolve_method` gives them."""
    try:
        sets = validate_budget_settings(dict(args.set))
    except ValueError as error:
        return [], [str(error)]
    try:
        tuned = load_tuned(args.tuned) if args.tuned is not None else None
    except TunedError as error:
        return [], [str(error)]
    configs, problems = [], []
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
                budget = _overridden(budget, args, hparams)
                configs += [_config(args, method, source, name, shots, seed, budget)
                            for seed in args.seeds]
    if tuned is not None and not problems:
        for line in tuned.notes([(c.method, c.dataset, c.ways, c.shots) for c in configs]):
            print(line)
    return configs, list(dict.fromkeys(problems))


def _overridden(budget: TrainBudget, args: argparse.Namespace, hparams: dict) -> TrainBudget:
    """``budget`` with ``--backbone``, ``--feature-mode``, ``--dropblock-ramp`` and
    ``--hparam`` applied."""
    overrides = {k: v for k, v in (("backbone", args.backbone),
                                   ("feature_mode", args.feature_mode))
                 if v is not None}
    if args.dropblock_ramp is not False:
        overrides["dropblock_ramp_steps"] = args.dropblock_ramp
    if hparams:
        overrides["hparams"] = {**budget.hparams, **hparams}
    return replace(budget, **overrides) if overrides else budget


def _config(args: argparse.Namespace, method: str, source: str | None, dataset: str,
            shots: int, seed: int, budget: TrainBudget) -> RunConfig:
    """One run's configuration."""
    return RunConfig(method=method, dataset=dataset, ways=args.ways, shots=shots, seed=seed,
                     budget=budget, queries=args.queries, episodes=args.episodes,
                     precision=args.precision, solver=args.solver, compile=args.compile,
                     logreg_c=args.logreg_c, select_on=args.select_on,
                     method_source=source, log=tuple(args.log), **_test_every(args))


def _test_every(args: argparse.Namespace) -> dict:
    """``--test-every`` and its episodes (default: 100, at most ``--episodes``)."""
    episodes = args.test_every_episodes
    if episodes is None:
        episodes = min(DEFAULT_TEST_EVERY_EPISODES, args.episodes)
    return {"test_every": args.test_every, "test_every_episodes": episodes}


def selection_notes(configs: list, asked: str) -> list[str]:
    """One line per method that cannot select on the protocol ``asked`` (it has no native
    adaptation, so its configuration selects on unified)."""
    names = sorted({c.method for c in configs if c.select_on != asked})
    return [f"note: {method_class(name).display_name} has no native adaptation; it selects on "
            "unified validation accuracy (--select-on native applies to the others)"
            for name in names]


def check_meta_batches(configs: list, processes: int) -> str | None:
    """Data-parallel runs need at least one task of each meta-batch per process."""
    small = [f"{c.key} ({c.budget.meta_batch})" for c in configs
             if c.budget.meta_batch < processes]
    if processes <= 1 or not small:
        return None
    return (f"{processes} processes per run, but these runs' meta-batches have fewer tasks: "
            f"{', '.join(small[:8])}{' ...' if len(small) > 8 else ''}; each process needs at "
            "least one task of every meta-batch. Use fewer GPUs per run for them (a separate "
            "command), or a larger meta-batch.")


def check_launch_flags(args: argparse.Namespace, world_size: int) -> str | None:
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


def parallel_slots(args: argparse.Namespace, runs: int) -> list | str:
    """The :class:`bench.sweep.pool.Slot` s of ``--jobs`` (or a message saying what is wrong)."""
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
