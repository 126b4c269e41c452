"""Atomic claims, so several ``bench run`` processes can share one results folder.

Before a process trains run ``key`` it claims it: it creates ``<out>/claims/<key>.claim`` (who,
where, since when) with :func:`core.atomic.create_new`, which hard-links a temporary file to the
claim's name. A link fails when the name exists, so exactly one process wins, on a local disk
as on NFS, and a claim file is never seen half-written. The winner trains, writes the result
and removes its claim; everyone else skips the run. A daemon thread refreshes the claim's
modification time while it is held (the heartbeat).

A claim left behind by a process that died (SIGKILL, out-of-memory killer, node failure) is
*stale* and is broken by the next claimant:

- on the same host, when its process is gone, or its pid now belongs to a process that started
  later (pid reuse; the process start time is recorded where ``/proc`` exists);
- in the same Slurm job (a requeued job keeps its job id, so its new incarnation takes over);
- otherwise (another host), when its heartbeat is older than ``stale_after_s``.

Breaking happens under a short-lived ``<key>.break`` claim, taken the same way, and only if the
claim file still holds the token that was judged stale, so a fresh claim is never removed.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from core.atomic import create_new
from core.keys import check_key, path_inside

HEARTBEAT_S = 30.0
"""How often a held claim's modification time is refreshed."""
STALE_AFTER_S = 600.0
"""A claim from another host whose heartbeat is older than this is stale."""
BREAK_STALE_S = 60.0
"""A ``.break`` file older than this was left by a breaker that died; it is removed."""


@dataclass(frozen=True)
class ClaimInfo:
    """What a claim file holds."""

    key: str
    host: str
    pid: int
    pid_start: str | None  # the process's start time (/proc/<pid>/stat field 22), if known
    slurm_job: str | None  # $SLURM_JOB_ID (with the array task), if in a Slurm job
    created: float  # time.time() when claimed
    token: str  # unique per claim

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created))
        job = f", Slurm job {self.slurm_job}" if self.slurm_job else ""
        return f"pid {self.pid} on {self.host}{job}, since {since}"


def process_start(pid: int) -> str | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def process_alive(pid: int, start: str | None) -> bool:
    """Whether ``pid`` runs and, when ``start`` is known, is the process that started then."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if start is None:
        return True
    now = process_start(pid)
    return now is None or now == start


def current_slurm_job() -> str | None:
    """This process's Slurm job (``<array job>_<task>`` for array tasks), else None."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def read_claim(path: Path) -> ClaimInfo | None:
    """The claim in ``path``; None if it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return ClaimInfo(**data)
    except (OSError, ValueError, TypeError):
        return None


class Claim:
    """A held claim; release it (or use it as a context manager) when the run is written."""

    def __init__(self, path: Path, info: ClaimInfo, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.path = path
        self.info = info
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat_s,),
                                        name=f"claim-heartbeat-{info.key}", daemon=True)
        self._thread.start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        """Stop the heartbeat and remove the claim file if it is still ours."""
        self._stop.set()
        current = read_claim(self.path)
        if current is not None and current.token == self.info.token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class ClaimBoard:
    """The claims of one results folder (``<out>/claims``)."""

    def __init__(self, folder: Path, stale_after_s: float = STALE_AFTER_S,
                 heartbeat_s: float = HEARTBEAT_S) -> None:
        self.folder = Path(folder)
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.host = socket.gethostname()

    def path(self, key: str) -> Path:
        """Run ``key``'s claim file (``key`` checked, :mod:`core.keys`)."""

        return path_inside(self.folder, f"{check_key(key, 'run key')}.claim")

    def try_claim(self, key: str) -> Claim | None:
        """Claim ``key``; None when a live process holds it (see :meth:`holder`)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        pid = os.getpid()
        info = ClaimInfo(key=key, host=self.host, pid=pid, pid_start=process_start(pid),
                         slurm_job=current_slurm_job(), created=time.time(),
                         token=uuid.uuid4().hex)
        for _ in range(5):
            if create_new(path, json.dumps(asdict(info))):
                return Claim(path, info, self.heartbeat_s)
            held = read_claim(path)
            if not self.is_stale(path, held):
                return None
            self._break(path, held)
        return None

    def holder(self, key: str) -> ClaimInfo | None:
        """Who holds ``key`` now (None if nobody or unreadable)."""
        return read_claim(self.path(key))

    def is_stale(self, path: Path, held: ClaimInfo | None) -> bool:
        """Whether the claim ``held`` (read from ``path``) was left by a dead claimant."""
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True  # released meanwhile: try again
        if held is None:  # unreadable: only its age can tell
            return age > self.stale_after_s
        job = current_slurm_job()
        if held.slurm_job is not None and held.slurm_job == job:
            return True  # an earlier incarnation of this (requeued) job
        if held.host == self.host:
            return not process_alive(held.pid, held.pid_start)
        return age > self.stale_after_s

    def _break(self, path: Path, held: ClaimInfo | None) -> None:
        """Remove the stale claim ``held`` unless it was replaced meanwhile."""
        breaker = path.with_suffix(".break")
        if not create_new(breaker, str(os.getpid())):
            try:
                if time.time() - breaker.stat().st_mtime > BREAK_STALE_S:
                    breaker.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            time.sleep(0.01)
            return
        try:
            current = read_claim(path)
            same = (current is None and held is None) or (
                current is not None and held is not None and current.token == held.token)
            if same:
                path.unlink(missing_ok=True)
        finally:
            breaker.unlink(missing_ok=True)

    def held_keys(self) -> Iterator[str]:
        """Keys with a claim file (live or stale)."""
        if self.folder.is_dir():
            for path in sorted(self.folder.glob("*.claim")):
                yield path.stem
