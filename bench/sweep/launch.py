"""Runs in processes of their own: ``bench run --isolate``/``--jobs N`` and ``bench run
--launcher slurm``.

``--isolate`` and ``--jobs`` run every (method, dataset, ways, shots, seed) in a child process
(``python -m bench.sweep.launch JOB_FILE``, a JSON file, :func:`execute`) while the parent holds the
run's claim (:mod:`bench.sweep.claims`); :mod:`bench.sweep.pool` starts, watches and stops the children. A
child that raises writes its own failure record; a child that dies gets one written by the
parent, and the sweep goes on. Its checkpoint stays, so rerunning the sweep resumes it.

``--launcher slurm`` submits one Slurm job per run through submitit (Meta's ``submitit``),
as one job array, each job ``--slurm-gpus-per-job`` GPUs on one node with one task per GPU
(a data-parallel run over them, :mod:`bench.run.distributed`). Jobs claim their run, resume from
its checkpoint, and are requeued by submitit when Slurm signals a timeout or pre-emption
(``--signal USR2``); a requeued job continues from the run's last checkpoint. The command
returns once the jobs are submitted; ``bench table`` reads the results as they arrive.
"""
from __future__ import annotations

import ctypes
import json
import math
import os
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import submitit

from bench.common.config import RunConfig
from bench.common.exit_codes import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_PREEMPTED,
                                     EXIT_STOPPED)
from bench.run.distributed import DistributedSetupError, init_from_environment, shutdown
from bench.run.session import Preempted
from bench.run.training import resolve_device
from bench.store.checkpoint import CheckpointError, StorageError
from bench.store.results import Existing, result_path
from bench.sweep.claims import ClaimBoard
from bench.sweep.jobs import RunJob, SweepStopped
from bench.sweep.pool import PARENT_PID_VARIABLE, Slot, run_processes
from bench.sweep.runs import CheckpointPolicy, ResultConflict, SweepSummary, run_sweep
from datasets import DatasetError, load_dataset
from methods.plugins import allow_imports


def execute(job: RunJob) -> int:
    """Run ``job`` in this process (an isolated child or a Slurm task); returns an exit code.

    Joins the process group the environment describes (torchrun, or a multi-GPU Slurm job).
    """

    source = job.config.get("method_source")
    if source:  # the parent process wrote this job from its own command line's --methods
        allow_imports([source])
    config = RunConfig.from_dict(job.config)
    parallel = None
    try:
        parallel, device_name = init_from_environment(job.device)
        device = resolve_device(device_name)
        dataset = load_dataset(config.dataset, job.data_root,
                               allow_nonstandard=job.allow_nonstandard)
        summary = run_sweep([config], {config.dataset: dataset}, device, Path(job.out),
                            force=job.force, progress=job.progress,
                            checkpoints=CheckpointPolicy(True, job.restart, job.keep_checkpoints),
                            parallel=parallel, claim=job.claim,
                            save_models=job.save_model)
    except Preempted as stop:
        if job.announce_stop:
            print(f"pre-empted: {stop}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt as stop:  # a second signal, or Ctrl-C outside training
        if job.announce_stop:
            print(f"{stop or 'interrupted'}; the last checkpoint in {job.out}/checkpoints is "
                  "kept; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (StorageError, DatasetError, CheckpointError, DistributedSetupError, ResultConflict,
            ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_STOPPED
    finally:
        if parallel is not None:
            shutdown(parallel)
    return EXIT_FAILED if summary.failed else EXIT_OK


# --------------------------------------------------------------------------- --isolate

def run_isolated(jobs: Sequence[RunJob], out_dir: Path) -> "SweepSummary":
    """Each job in its own child process, one after the other, the child's output shown
    live (:func:`bench.sweep.pool.run_processes` with one slot on the jobs' device)."""

    slots = [Slot(jobs[0].device if jobs else "auto")]
    return run_processes(jobs, out_dir, slots, live=True)


def stop_with_parent() -> None:
    """Linux: have the kernel send this process SIGTERM when the ``bench run`` that started
    it dies (``PR_SET_PDEATHSIG``), so no orphan goes on training a run whose claim is gone;
    it checkpoints and stops instead. Does nothing elsewhere or outside ``bench.sweep.pool``."""
    parent = os.environ.get(PARENT_PID_VARIABLE)
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


# --------------------------------------------------------------------------- Slurm

@dataclass(frozen=True)
class SlurmOptions:
    """Per-job Slurm resources (``--slurm-*`` options)."""

    partition: str | None = None
    time_min: int = 24 * 60
    gpus_per_job: int = 1
    cpus_per_task: int | None = None
    extra: dict[str, str] = field(default_factory=dict)  # further sbatch options

    def executor_parameters(self) -> dict[str, Any]:
        tasks = max(1, self.gpus_per_job)
        params: dict[str, Any] = {
            "name": "bridgebench", "timeout_min": self.time_min, "nodes": 1,
            "tasks_per_node": tasks, "gpus_per_node": self.gpus_per_job,
            "slurm_signal_delay_s": 120,
        }
        if self.cpus_per_task is not None:
            params["cpus_per_task"] = self.cpus_per_task
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.extra:
            params["slurm_additional_parameters"] = dict(self.extra)
        return params


def parse_slurm_time(text: str) -> int:
    """Minutes (rounded up) of a Slurm time limit: ``M``, ``M:S``, ``H:M:S``, ``D-H``,
    ``D-H:M`` or ``D-H:M:S``."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise ValueError(f"--slurm-time {text!r} is not a Slurm time (e.g. 90, 12:00:00, "
                         "2-00:00:00)")
    days, a, b, c = match.groups()
    parts = [int(x) for x in (a, b, c) if x is not None]
    if days is not None:  # D-H, D-H:M, D-H:M:S
        h, m, s = (parts + [0, 0])[:3]
        seconds = ((int(days) * 24 + h) * 60 + m) * 60 + s
    elif len(parts) == 1:
        seconds = parts[0] * 60
    elif len(parts) == 2:
        seconds = parts[0] * 60 + parts[1]
    else:
        seconds = (parts[0] * 60 + parts[1]) * 60 + parts[2]
    if seconds <= 0:
        raise ValueError(f"--slurm-time {text!r} must be positive")
    return math.ceil(seconds / 60)


class SlurmRun(submitit.helpers.Checkpointable):
    """One Slurm job: one run, data-parallel over the job's tasks. Requeued by submitit on
    timeout or pre-emption (``checkpoint`` resubmits it unchanged); it then resumes from the
    run's checkpoint."""

    def __init__(self, job: RunJob) -> None:
        self.job = job

    def __call__(self) -> str:
        if submitit.JobEnvironment().num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        code = execute(self.job)
        outcome = {EXIT_OK: "ok", EXIT_FAILED: "failed", EXIT_PREEMPTED: "pre-empted"}
        if code == EXIT_STOPPED:
            raise SweepStopped(f"{self.job.key}: stopped (see this job's stderr)")
        return f"{self.job.key}: {outcome.get(code, code)}"


def submit(jobs: Sequence[RunJob], options: SlurmOptions, folder: Path,
           cluster: str = "slurm") -> list[submitit.Job]:
    """Submit one job per run (a job array) with ``options``; ``cluster="local"`` runs them
    with submitit's local executor instead (tests)."""
    executor = submitit.AutoExecutor(folder=Path(folder), cluster=cluster)
    executor.update_parameters(**options.executor_parameters())
    with executor.batch():
        submitted = [executor.submit(SlurmRun(job)) for job in jobs]
    return submitted


def pending_jobs(jobs: Sequence[RunJob], out_dir: Path) -> tuple[list[RunJob], list[str]]:
    """The jobs worth submitting (not finished, not claimed by a live process), and the
    messages about the others."""
    board = ClaimBoard(Path(out_dir) / "claims")
    todo, notes = [], []
    for job in jobs:
        path = result_path(out_dir, job.key)
        found = job.existing(out_dir) if not job.force else Existing()
        if found.conflict:
            notes.append(f"not submitted: {found.conflict}")
            continue
        if found.finished:
            notes.append(f"skip {job.key}: finished result exists at {path}{found.note} "
                         "(--force reruns)")
            continue
        holder = board.holder(job.key)
        if holder is not None and not board.is_stale(board.path(job.key), holder):
            notes.append(f"busy {job.key}: being run by {holder.describe()}; not submitted")
            continue
        todo.append(job)
    return todo, notes


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.sweep.launch JOB_FILE``: run one isolated job."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m bench.sweep.launch JOB_FILE (written by `bench run --isolate`)",
              file=sys.stderr)
        return EXIT_STOPPED
    job = RunJob(**json.loads(Path(args[0]).read_text(encoding="utf-8")))
    stop_with_parent()
    return execute(job)


if __name__ == "__main__":
    sys.exit(main())
