"""Runs in processes of their own: ``bench run --isolate`` and ``bench run --launcher slurm``.

``--isolate`` runs every (method, dataset, ways, shots, seed) in a child process
(``python -m bench.launch JOB_FILE``, a JSON file) while the parent holds the run's claim
(:mod:`bench.locks`). A child that raises writes its own failure record; a child that dies
(the out-of-memory killer's SIGKILL, a segmentation fault in native code) gets one written by
the parent, with the end of its error output, and the sweep goes on. Its checkpoint stays, so
rerunning the sweep resumes it. SIGTERM to the parent is passed on to the child, which
checkpoints and stops; the sweep then stops too.

``--launcher slurm`` submits one Slurm job per run through submitit (Meta's ``submitit``),
as one job array, each job ``--slurm-gpus-per-job`` GPUs on one node with one task per GPU
(a data-parallel run over them, :mod:`bench.distributed`). Jobs claim their run, resume from
its checkpoint, and are requeued by submitit when Slurm signals a timeout or pre-emption
(``--signal USR2``); a requeued job continues from the run's last checkpoint. The command
returns once the jobs are submitted; ``bench table`` reads the results as they arrive.
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import submitit

from bench.config import RunConfig
from core.atomic import write_json_atomic
from bench.locks import ClaimBoard
from bench.results import Existing, existing_result, result_path

EXIT_OK = 0
EXIT_FAILED = 1  # the run failed and a failure record was written
EXIT_STOPPED = 2  # nothing useful can run (storage, data or setup problem); stop the sweep
EXIT_PREEMPTED = 143  # SIGTERM: checkpoint saved, rerun to resume (128 + SIGTERM)
if TYPE_CHECKING:
    from bench.sweep import SweepSummary

_TAIL_BYTES = 6000
_REPO = Path(__file__).resolve().parents[1]


class SweepStopped(RuntimeError):
    """An isolated run's process reported a problem that stops the whole sweep."""


@dataclass(frozen=True)
class RunJob:
    """Everything a process of its own needs to run one run (JSON- and pickle-friendly)."""

    config: dict[str, Any]  # RunConfig.to_dict()
    out: str
    data_root: str | None = None
    device: str = "auto"
    force: bool = False
    restart: bool = False
    keep_checkpoints: bool = False
    save_model: bool = True  # write the selected model to <out>/models (--no-save-model)
    progress: bool = True
    claim: bool = True  # False when the parent process holds the claim (--isolate)
    data_fingerprint: str | None = None  # the dataset's, as the launching process saw it

    @property
    def key(self) -> str:
        return RunConfig.from_dict(self.config).key

    def existing(self, out_dir: Path) -> "Existing":
        """What the job's result file holds (:func:`bench.results.existing_result`)."""
        return existing_result(result_path(out_dir, self.key), RunConfig.from_dict(self.config),
                               self.data_fingerprint)


def execute(job: RunJob) -> int:
    """Run ``job`` in this process (an isolated child or a Slurm task); returns an exit code.

    Joins the process group the environment describes (torchrun, or a multi-GPU Slurm job).
    """
    from bench.checkpoint import CheckpointError, StorageError
    from bench.distributed import DistributedSetupError, init_from_environment, shutdown
    from bench.session import Preempted
    from bench.sweep import CheckpointPolicy, ResultConflict, run_sweep
    from bench.training import resolve_device
    from datasets import DatasetError, load_dataset

    config = RunConfig.from_dict(job.config)
    parallel = None
    try:
        parallel, device_name = init_from_environment(job.device)
        device = resolve_device(device_name)
        dataset = load_dataset(config.dataset, job.data_root)
        summary = run_sweep([config], {config.dataset: dataset}, device, Path(job.out),
                            force=job.force, progress=job.progress,
                            checkpoints=CheckpointPolicy(True, job.restart, job.keep_checkpoints),
                            parallel=parallel, claim=job.claim,
                            save_models=job.save_model)
    except Preempted as stop:
        print(f"pre-empted: {stop}", file=sys.stderr)
        return EXIT_PREEMPTED
    except (StorageError, DatasetError, CheckpointError, DistributedSetupError, ResultConflict,
            ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_STOPPED
    finally:
        if parallel is not None:
            shutdown(parallel)
    return EXIT_FAILED if summary.failed else EXIT_OK


# --------------------------------------------------------------------------- --isolate

def child_command(job_file: Path) -> list[str]:
    """The command that runs one isolated job (a seam for tests)."""
    return [sys.executable, "-m", "bench.launch", str(job_file)]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO), env.get("PYTHONPATH")) if p)
    return env


def _tee(stream: Any, tail: bytearray) -> None:
    """Copy the child's stderr to ours and keep its last bytes (for a failure record)."""
    out = getattr(sys.stderr, "buffer", None)
    while True:
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            return
        tail.extend(chunk)
        del tail[:-_TAIL_BYTES]
        if out is not None:
            out.write(chunk)
            out.flush()


def run_child(job: RunJob, work_dir: Path) -> tuple[int, str]:
    """Run ``job`` in a child process; returns (exit code, end of its stderr).

    SIGTERM to this process is passed on to the child meanwhile.
    """
    name = Path(work_dir) / f".{job.key}.{uuid.uuid4().hex}.job"
    write_json_atomic(name, asdict(job))
    tail = bytearray()
    previous = None
    try:
        proc = subprocess.Popen(child_command(Path(name)), env=_child_env(),
                                stderr=subprocess.PIPE)
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM,
                                     lambda signum, frame: proc.send_signal(signal.SIGTERM))
        reader = threading.Thread(target=_tee, args=(proc.stderr, tail), daemon=True)
        reader.start()
        code = proc.wait()
        reader.join(timeout=10)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        Path(name).unlink(missing_ok=True)
    return code, tail.decode("utf-8", errors="replace")


class ProcessDied(RuntimeError):
    """An isolated run's process ended without writing a result or a failure record."""


def death_error(code: int, tail: str) -> ProcessDied:
    """Why a child ended with ``code`` (negative: killed by that signal)."""
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ \
            else f"signal {-code}"
        hint = {"SIGKILL": "the out-of-memory killer sends this (see `dmesg`); lower the "
                           "meta-batch or run it on a larger device",
                "SIGSEGV": "a crash in native code (a driver or library bug)",
                "SIGABRT": "an abort in native code (a failed assertion, CUDA error)"}
        why = f"was killed by {name}" + (f": {hint[name]}" if name in hint else "")
    else:
        why = f"exited with code {code} without writing a result or a failure record"
    last = [line for line in tail.strip().splitlines() if line.strip()][-1:]
    return ProcessDied(f"the run's process {why}" + (f". Last output: {last[0]}" if last else ""))


def run_isolated(jobs: Sequence[RunJob], out_dir: Path) -> "SweepSummary":
    """Each job in its own child process, one after the other (see the module docstring)."""
    from bench.record import failure_record, write_result
    from bench.session import Preempted
    from bench.sweep import SweepSummary
    from bench.training import resolve_device

    out_dir = Path(out_dir)
    board = ClaimBoard(out_dir / "claims")
    summary = SweepSummary()
    for job in jobs:
        path = result_path(out_dir, job.key)
        found = job.existing(out_dir) if not job.force else Existing()
        if found.conflict:
            raise SweepStopped(found.conflict)
        if found.finished:
            print(f"skip {job.key}: finished result exists at {path}{found.note} "
                  "(--force reruns)")
            summary.skipped.append(job.key)
            continue
        claim = board.try_claim(job.key)
        if claim is None:
            holder = board.holder(job.key)
            print(f"busy {job.key}: being run by "
                  f"{holder.describe() if holder else 'another process'}; skipped")
            summary.busy.append(job.key)
            continue
        with claim:
            if not job.force and job.existing(out_dir).finished:
                summary.skipped.append(job.key)
                continue
            code, tail = run_child(replace(job, claim=False), board.folder)
        if code == EXIT_OK:
            (summary.finished if job.existing(out_dir).finished
             else summary.skipped).append(job.key)
        elif code == EXIT_FAILED:
            summary.failed.append(job.key)
        elif code in (EXIT_PREEMPTED, -signal.SIGTERM):
            raise Preempted(f"{job.key}: its process stopped on SIGTERM (checkpoint saved); "
                            "rerun the same command to resume")
        elif code == EXIT_STOPPED:
            last = [line for line in tail.strip().splitlines() if line.strip()][-1:]
            raise SweepStopped(last[0] if last else f"{job.key}: its process stopped the sweep")
        else:
            error = death_error(code, tail)
            record = failure_record(RunConfig.from_dict(job.config), resolve_device(job.device),
                                    error)
            record["traceback"] = tail[-4000:]
            write_result(path, record)
            print(f"FAILED {job.key}: {error} (failure record written to {path}; a rerun "
                  "resumes from its last checkpoint)")
            summary.failed.append(job.key)
    return summary


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
    """``python -m bench.launch JOB_FILE``: run one isolated job."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m bench.launch JOB_FILE (written by `bench run --isolate`)",
              file=sys.stderr)
        return EXIT_STOPPED
    job = RunJob(**json.loads(Path(args[0]).read_text(encoding="utf-8")))
    return execute(job)


if __name__ == "__main__":
    sys.exit(main())
