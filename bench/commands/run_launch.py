"""``bench run``: where and how the sweep's runs start once every check passed: in this
process (data-parallel under torchrun), each in a child process (``--isolate``, ``--jobs``,
:mod:`bench.sweep.pool`) or as Slurm jobs (:mod:`bench.sweep.launch`); and the sweep's
resolved options written beside its results.

Imported when ``bench run`` runs, not when the command line is built: it imports torch.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

from bench.commands.config_file import resolved_options, write_config_file
from bench.common import command_line
from bench.run.distributed import DistributedSetupError, init_from_environment, shutdown
from bench.run.session import Preempted
from bench.run.training import resolve_device
from bench.common.exit_codes import EXIT_OK, EXIT_USAGE
from bench.store.checkpoint import StorageError
from bench.sweep.jobs import RunJob, SweepStopped
from bench.sweep.launch import (SlurmOptions, parse_slurm_time, pending_jobs, run_isolated,
                                submit)
from bench.sweep.pool import run_processes
from bench.sweep.runs import CheckpointPolicy, ResultConflict, SweepSummary, run_sweep

__all__ = ["LAUNCH_ERRORS", "Preempted", "run_here", "save_sweep_options", "submit_slurm"]

#: What stops a started sweep with one ``error:`` line (exit 2).
LAUNCH_ERRORS = (StorageError, SweepStopped, DistributedSetupError, ResultConflict)


def save_sweep_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str | None:
    """Write the sweep's resolved options (defaults, ``--config`` and the command line; the
    options of ``parser``, the ``run`` subcommand's) to ``<out>/sweeps/<UTC start
    time>-<pid>.yaml``, one file per sweep (several sweeps may share one --out, at once too),
    which ``--config`` reads back; only the first process of a torchrun group writes it.
    Returns what went wrong, if anything."""
    if os.environ.get("RANK", "0") != "0":
        return None
    now = dt.datetime.now(dt.timezone.utc)
    path = args.out / "sweeps" / f"{now:%Y%m%dT%H%M%SZ}-{os.getpid()}.yaml"
    options = resolved_options(parser, args)
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
    """One :class:`bench.sweep.jobs.RunJob` per configuration, for a child process."""
    return [RunJob(config=c.to_dict(), out=str(args.out),
                   data_root=str(roots[c.dataset]) if roots[c.dataset] is not None else None,
                   device=args.device, force=args.force, restart=args.restart,
                   keep_checkpoints=args.keep_checkpoints, save_model=args.save_model,
                   progress=not args.no_progress,
                   data_fingerprint=identities[c.dataset]["fingerprint"],
                   allow_nonstandard=args.allow_nonstandard)
            for c in configs]


def run_here(args: argparse.Namespace, configs: list, datasets: dict, roots: dict,
             identities: dict, slots: list | None = None) -> tuple[SweepSummary, bool]:
    """The sweep on this machine: in this process (data-parallel under torchrun) or, with
    --isolate or --jobs (``slots``), each run in a child process. Returns (summary, whether
    this is rank 0)."""
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
              slots: list) -> SweepSummary:
    """``--jobs``: the runs in child processes, several at once (:mod:`bench.sweep.pool`)."""
    where = sorted({s.device for s in slots})
    print(f"{len(configs)} run(s), up to {len(slots)} at once on {', '.join(where)} "
          f"({slots[0].threads} thread(s) each); each run's output in {args.out}/logs/")
    return run_processes(_jobs(args, configs, roots, identities), args.out, slots,
                         progress=not args.no_progress, widen_last=args.threads is None)


def submit_slurm(args: argparse.Namespace, configs: list, roots: dict,
                 identities: dict) -> int:
    """``--launcher slurm``: one job per run still to do; returns the exit code."""
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
        return EXIT_OK
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
    return EXIT_OK
