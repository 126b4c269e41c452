"""Runs of a sweep in processes of their own, several at once: ``bench run --jobs N`` (and
``--isolate``, one at a time with the child's output shown live).

Every run is one child process (``python -m bench.sweep.launch JOB_FILE``, :func:`bench.sweep.launch.
execute`) while this process holds the run's claim (:mod:`bench.sweep.claims`), so results, claims,
checkpoints and failure records are those of a sequential sweep. A child that raises writes its
own failure record; one that dies (the out-of-memory killer's SIGKILL, a crash in native code)
gets one written here, with the end of its output, and the other runs go on.

**Slots.** ``--jobs N`` gives N :class:`Slot` s, each running one child at a time. With
``--devices cuda:0,cuda:1,...`` slot i uses device i modulo the list (round robin: one GPU per
job when N equals the number of devices; the child sees that GPU alone, through
``CUDA_VISIBLE_DEVICES``, as ``cuda:0``). Every child gets an equal share of the CPU cores as
its intra-op thread count, set in its environment before it starts (``OMP_NUM_THREADS`` and
``MKL_NUM_THREADS``; ``torch.set_num_threads(k > 1)`` corrupts batched LU solves on torch
2.14's CPU build, so it is never called). :func:`auto_jobs` is the ``--jobs auto`` rule.

**Order.** With several slots the costliest runs start first (:func:`expected_cost`: the
method's declared ``relative_cost``, then more shots), so the sweep does not end on one long
run while the other slots idle; and, unless ``--threads`` fixes the count, a CPU run that
starts when every other run has ended gets the threads of every CPU slot
(:func:`last_run_slot`), set before it starts, as any run's (its result records them in
``provenance.cpu_threads``).

**Output.** With several jobs each child's output goes to ``<out>/logs/<key>.log``; this
process prints one line per finished run and an overall bar (runs done / total, elapsed, and
the remaining time estimated from the runs finished so far).

**Signals.** Children run in sessions of their own, so a Ctrl-C in the terminal reaches this
process only. The first SIGINT or SIGTERM stops the launching of runs and sends SIGTERM to
every child, which checkpoints at its next training step (or, while testing, dies at once: its
checkpoint already holds the finished training) and exits; then one line says where the
checkpoints are and the sweep ends with 130 (Ctrl-C) or 143 (SIGTERM). A second signal is
passed on too (the children stop at once, :class:`bench.run.session.StopNow`), a third kills them.
A child also gets SIGTERM when this process dies (Linux, ``PR_SET_PDEATHSIG``).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any, Sequence

import torch
from tqdm.auto import tqdm

from bench.common.config import RunConfig
from bench.common.exit_codes import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_STOPPED,
                                     EXIT_TERMINATED)
from bench.run.session import Preempted, StopSignalHandlers, signal_label
from bench.run.train_and_test import failure_record, write_result
from bench.run.training import resolve_device
from bench.store.checkpoint import checkpoint_path
from bench.store.results import Existing, read_result, result_path
from bench.sweep.claims import Claim, ClaimBoard
from bench.sweep.jobs import RunJob, SweepStopped
from bench.sweep.runs import SweepSummary, done_line
from core.atomic import write_json_atomic
from core.keys import check_key, path_inside
from methods.plugins import method_class

_STOP_CODES = {EXIT_INTERRUPTED, EXIT_TERMINATED, -signal.SIGINT, -signal.SIGTERM}
_TAIL_BYTES = 6000
_POLL_S = 0.2
_REPO = Path(__file__).resolve().parents[1]
PARENT_PID_VARIABLE = "BRIDGEBENCH_PARENT_PID"


# --------------------------------------------------------------------------- slots

@dataclass(frozen=True)
class Slot:
    """Where one job at a time runs: its device and intra-op thread count (None: inherit)."""

    device: str
    threads: int | None = None

    @property
    def gpu_index(self) -> int | None:
        """N of ``cuda:N`` (None for the CPU, ``auto`` or a bare ``cuda``)."""
        kind, _, index = self.device.partition(":")
        return int(index) if kind == "cuda" and index.isdigit() else None

    @property
    def child_device(self) -> str:
        """The device the child is told to use: a GPU slot's child sees that GPU alone
        (:meth:`environment`), as ``cuda:0``."""
        return "cuda:0" if self.gpu_index is not None else self.device

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        """The child's environment: ``base`` plus its thread count and, for ``cuda:N``,
        ``CUDA_VISIBLE_DEVICES`` naming GPU N of ``base``'s visible ones alone (so nothing in
        the child, a library's bare ``.cuda()`` included, can touch another job's GPU)."""
        env = dict(base)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO), env.get("PYTHONPATH"))
                                            if p)
        env[PARENT_PID_VARIABLE] = str(os.getpid())
        if self.threads is not None:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.threads)
        index = self.gpu_index
        if index is not None:
            visible = [v.strip() for v in base.get("CUDA_VISIBLE_DEVICES", "").split(",")
                       if v.strip()]
            env["CUDA_VISIBLE_DEVICES"] = visible[index] if index < len(visible) else str(index)
        return env


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_jobs(devices: Sequence[str], cores: int, runs: int) -> int:
    """``--jobs auto``: one job per GPU; on the CPU one job per core, each single-threaded.

    Measured on a 2-core CPU (docs/performance.md, "Parallel runs"): two single-threaded
    glyphs runs at once finish a sweep faster than one run at a time with two threads, whose
    intra-op parallelism on small convolutions is poor. Never more jobs than runs to do.
    """
    gpus = [d for d in devices if d.startswith("cuda")]
    jobs = len(set(gpus)) if gpus else cores
    return max(1, min(jobs, runs))


def plan_slots(jobs: int, devices: Sequence[str], cores: int,
               threads: int | None = None) -> list[Slot]:
    """``jobs`` slots; slot i on ``devices[i % len(devices)]`` (round robin), each with
    ``threads`` intra-op threads (default: an equal share of the ``cores``, at least one)."""
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    if not devices:
        raise ValueError("no device to run on")
    threads = threads if threads is not None else max(1, cores // jobs)
    return [Slot(devices[i % len(devices)], threads) for i in range(jobs)]


def check_devices(devices: Sequence[str]) -> str | None:
    """What is wrong with a ``--devices`` list, if anything (before anything runs)."""

    for name in devices:
        try:
            device = torch.device(name)
        except RuntimeError:
            return f"--devices: {name!r} is not a device (expected cpu or cuda:N)"
        if device.type not in ("cpu", "cuda"):
            return f"--devices: {name!r} is not a device (expected cpu or cuda:N)"
        if device.type == "cuda":
            count = torch.cuda.device_count()
            if device.index is None:
                return f"--devices: name each GPU with its index ({name}:0, {name}:1, ...)"
            if device.index >= count:
                return (f"--devices: {name} asked for, but {count} CUDA device(s) are visible"
                        + (" (CUDA_VISIBLE_DEVICES is set)"
                           if os.environ.get("CUDA_VISIBLE_DEVICES") is not None else ""))
    return None


def expected_cost(job: "RunJob") -> tuple[float, int, int]:
    """What ``job`` is expected to cost, for ordering runs only (larger: costlier): its
    method's declared ``relative_cost`` (:class:`methods.base.FewShotMethod`), then its shots
    and its test episodes (more images per episode, more episodes)."""

    config = job.config
    cls = method_class(config["method"], config.get("method_source"))
    return float(getattr(cls, "relative_cost", 1.0)), int(config["shots"]), \
        int(config["episodes"])


def costliest_first(jobs: Sequence["RunJob"]) -> list["RunJob"]:
    """``jobs`` with the costliest first (:func:`expected_cost`; ties keep their order)."""
    return sorted(jobs, key=expected_cost, reverse=True)


def last_run_slot(slot: Slot, slots: Sequence[Slot]) -> Slot:
    """The slot of a run that starts alone with nothing left after it: on the CPU, the
    threads of every CPU slot (the cores the sweep was given), so the sweep's last run does not
    leave them idle. Set through ``OMP_NUM_THREADS`` before the child starts, never by
    ``torch.set_num_threads`` (which corrupts batched LU solves, tests/conftest.py)."""
    cpu = [s for s in slots if s.gpu_index is None and not s.device.startswith("cuda")]
    if slot not in cpu or len(cpu) < 2 or any(s.threads is None for s in cpu):
        return slot
    return replace(slot, threads=sum(s.threads for s in cpu))


# --------------------------------------------------------------------------- children

def child_command(job_file: Path) -> list[str]:
    """The command that runs one job in a process of its own (a seam for tests)."""
    return [sys.executable, "-m", "bench.sweep.launch", str(job_file)]


def _tee(stream: IO[bytes], tail: bytearray) -> None:
    """Copy a child's stderr to ours and keep its last bytes (for a failure record)."""
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


def log_path(out_dir: Path, key: str) -> Path:

    return path_inside(out_dir, "logs", f"{check_key(key, 'run key')}.log")


class Child:
    """One run's process: started in a session of its own, output to a log file (``live``:
    stdout inherited and stderr copied to ours)."""

    def __init__(self, job: "RunJob", slot: Slot, out_dir: Path, claim: Claim,
                 live: bool) -> None:
        self.job, self.slot, self.claim, self.live = job, slot, claim, live
        self.started = time.perf_counter()
        self.job_file = claim.path.parent / f".{job.key}.{uuid.uuid4().hex}.job"
        write_json_atomic(self.job_file, asdict(job))
        self._tail = bytearray()
        self._log: IO[bytes] | None = None
        self._reader: threading.Thread | None = None
        if live:
            stdout, stderr = None, subprocess.PIPE
        else:
            self.log = log_path(out_dir, job.key)
            self.log.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log, "ab")
            self._log_start = self._log.tell()
            stdout = stderr = self._log
        self.proc = subprocess.Popen(child_command(self.job_file),
                                     env=slot.environment(dict(os.environ)), stdout=stdout,
                                     stderr=stderr, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        if live:
            self._reader = threading.Thread(target=_tee, args=(self.proc.stderr, self._tail),
                                            daemon=True)
            self._reader.start()

    @property
    def key(self) -> str:
        return self.job.key

    def signal(self, signum: int) -> None:
        try:
            self.proc.send_signal(signum)
        except ProcessLookupError:
            pass

    def close(self) -> tuple[int, str]:
        """After the process ended: (exit code, end of its output); releases the claim."""
        code = self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)
        if self._log is not None:
            self._log.close()
            with open(self.log, "rb") as handle:
                handle.seek(max(self._log_start, self.log.stat().st_size - _TAIL_BYTES))
                self._tail = bytearray(handle.read())
        self.job_file.unlink(missing_ok=True)
        self.claim.release()
        return code, self._tail.decode("utf-8", errors="replace")


class ProcessDied(RuntimeError):
    """A run's process ended without writing a result or a failure record."""


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


# --------------------------------------------------------------------------- signals

class SignalRelay(StopSignalHandlers):
    """While active (in the main thread), SIGINT and SIGTERM to this process are counted and
    passed on to the children: SIGTERM the first two times, SIGKILL after that."""

    def __init__(self, children: list[Child]) -> None:
        super().__init__()
        self.children = children
        self.count = 0
        self.signum: int | None = None

    @property
    def stopping(self) -> bool:
        return self.count > 0

    def stop(self, signum: int) -> None:
        """Stop every child (also used when a child's own stop must end the sweep)."""
        self.count += 1
        self.signum = self.signum or signum
        for child in self.children:
            child.signal(signal.SIGTERM if self.count <= 2 else signal.SIGKILL)

    def _handle(self, signum: int, frame: Any) -> None:
        self.stop(signum)


# --------------------------------------------------------------------------- the pool

def run_processes(jobs: Sequence["RunJob"], out_dir: Path, slots: Sequence[Slot], *,
                  live: bool = False, progress: bool = True,
                  widen_last: bool = True) -> "SweepSummary":
    """Run ``jobs`` in child processes, one per slot at a time (see the module docstring).

    ``widen_last``: a CPU run that starts alone, last, gets every CPU slot's threads
    (:func:`last_run_slot`; off when ``--threads`` fixes the count, since the thread count
    changes the last digits of CPU results).
    ``live``: children print to our terminal (``--isolate``, one slot); otherwise each writes
    ``<out>/logs/<key>.log`` and this process prints a line per finished run and an overall
    bar (``progress``). Raises :class:`bench.run.session.Preempted` after a stop signal (every
    child stopped, checkpoints saved) and :class:`bench.sweep.launch.SweepStopped` when a child
    reports a problem no other run can escape (storage, data); running children are stopped
    first in both cases.
    """

    out_dir = Path(out_dir)
    board = ClaimBoard(out_dir / "claims")
    summary = SweepSummary()
    todo: deque = deque()
    for job in costliest_first(jobs) if len(slots) > 1 else jobs:
        if _skip_finished(job, out_dir, summary, live):
            continue
        todo.append(job)
    free = deque(slots)
    running: list[Child] = []
    stopped: list[str] = []  # runs stopped by a signal (checkpoint kept)
    fatal: str | None = None
    # disable=None: no bar when stderr is not a terminal (a log), the per-run lines remain
    bar = tqdm(total=len(todo), desc="runs", unit="run", smoothing=0, dynamic_ncols=True,
               disable=True if live or not progress else None,
               bar_format="{desc}: {n_fmt}/{total_fmt} done [{elapsed} elapsed, "
                          "{remaining} to go{postfix}]")
    say = print if live else tqdm.write
    last_refresh = 0.0
    with SignalRelay(running) as relay:
        while running or (todo and not relay.stopping and fatal is None):
            while free and todo and not relay.stopping and fatal is None:
                job = todo.popleft()
                alone = widen_last and not todo and not running
                slot = last_run_slot(free[0], slots) if alone else free[0]
                child = _start(job, slot, board, out_dir, summary, live, say)
                if child is None:
                    bar.total -= 1
                    continue
                free.popleft()
                running.append(child)
            if time.monotonic() - last_refresh >= 1.0:
                bar.set_postfix_str(f"{len(running)} running", refresh=False)
                bar.refresh()
                last_refresh = time.monotonic()
            time.sleep(_POLL_S)
            for child in [c for c in running if c.proc.poll() is not None]:
                running.remove(child)
                free.append(child.slot)
                code, tail = child.close()
                outcome = _settle(child, code, tail, out_dir, summary, relay.stopping, say)
                if outcome == "stopped":
                    stopped.append(child.key)
                    if not relay.stopping:  # stopped from outside: the sweep stops (as
                        relay.stop(signal.SIGTERM)  # a sequential one does)
                elif outcome is not None:  # a problem every run would have
                    fatal = outcome
                    relay.stop(signal.SIGTERM)
                bar.update(outcome is None)
    bar.close()
    if fatal is not None:

        raise SweepStopped(fatal)
    if relay.stopping:
        signum = relay.signum or signal.SIGTERM
        kept = [k for k in stopped if checkpoint_path(out_dir, k).exists()]
        where = (f"checkpoints of {len(kept)} run(s) in {out_dir / 'checkpoints'} "
                 f"({', '.join(kept)})" if kept else "no run had a checkpoint yet")
        raise Preempted(f"stopped by {signal_label(signum)}: {len(stopped)} running run(s) "
                        f"stopped, {where}; {len(summary.finished)} finished in this sweep. "
                        "Rerun the same command to resume.", signum)
    return summary


def _skip_finished(job: "RunJob", out_dir: Path, summary: "SweepSummary", live: bool) -> bool:
    """True (and said) when ``job``'s result is finished; a finished result of another
    identity at its key stops the sweep before anything starts."""
    path = result_path(out_dir, job.key)
    found = job.existing(out_dir) if not job.force else Existing()
    if found.conflict:

        raise SweepStopped(found.conflict)
    if not found.finished:
        return False
    print(f"skip {job.key}: finished result exists at {path}{found.note} (--force reruns)")
    summary.skipped.append(job.key)
    return True


def _start(job: "RunJob", slot: Slot, board: ClaimBoard, out_dir: Path,
           summary: "SweepSummary", live: bool, say: Any) -> Child | None:
    """Claim ``job`` and start its child on ``slot``; None when it is done or busy elsewhere."""
    claim = board.try_claim(job.key)
    if claim is None:
        holder = board.holder(job.key)
        say(f"busy {job.key}: being run by "
            f"{holder.describe() if holder else 'another process'}; skipped")
        summary.busy.append(job.key)
        return None
    if not job.force and job.existing(out_dir).finished:  # finished meanwhile
        claim.release()
        summary.skipped.append(job.key)
        return None
    child_job = replace(job, device=slot.child_device, claim=False, announce_stop=False,
                        progress=job.progress and live)
    return Child(child_job, slot, out_dir, claim, live)


def _settle(child: Child, code: int, tail: str, out_dir: Path, summary: "SweepSummary",
            stopping: bool, say: Any) -> str | None:
    """Book a child's exit. Returns None when its run ended (finished or failed), "stopped"
    when a signal stopped it, or the message of a problem that stops the sweep."""

    key, path = child.key, result_path(out_dir, child.key)
    log = "" if child.live else f"; log: {child.log}"
    if code == EXIT_OK:
        if child.job.existing(out_dir).finished:
            summary.finished.append(key)
            if not child.live:
                say(done_line(read_result(path), path))
        else:
            summary.skipped.append(key)
        return None
    if code == EXIT_FAILED:
        summary.failed.append(key)
        if not child.live:
            error = read_result(path).get("error", "see the log") if path.exists() else ""
            say(f"FAILED {key}: {error} (failure record written to {path}{log})")
        return None
    if code in _STOP_CODES or (stopping and code == -signal.SIGKILL):  # killed on request
        return "stopped"
    if code == EXIT_STOPPED:
        last = [line for line in tail.strip().splitlines() if line.strip()][-1:]
        return last[0] if last else f"{key}: its process stopped the sweep{log}"
    error = death_error(code, tail)
    record = failure_record(RunConfig.from_dict(child.job.config),
                            resolve_device(child.job.device), error)
    record["traceback"] = tail[-4000:]
    write_result(path, record)
    say(f"FAILED {key}: {error} (failure record written to {path}{log}; a rerun resumes from "
        "its last checkpoint)")
    summary.failed.append(key)
    return None

