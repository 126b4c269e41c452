"""Claims on a shared results folder: exactly one winner under contention, stale claims of
dead processes broken (exactly once), live claims respected."""
import json
import multiprocessing
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace

import pytest

from bench.sweep.claims import ClaimBoard, ClaimInfo, process_start, read_claim


def write_claim(board: ClaimBoard, key: str, **changes) -> ClaimInfo:
    pid = os.getpid()
    info = ClaimInfo(key=key, host=board.host, pid=pid, pid_start=process_start(pid),
                     slurm_job=None, created=time.time(), token="t-" + key)
    info = replace(info, **changes)
    board.folder.mkdir(parents=True, exist_ok=True)
    board.path(key).write_text(json.dumps(asdict(info)))
    return info


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _ours(board: ClaimBoard, claim) -> bool:
    """The claim file now names this process, on this host, with the claim's own token (not
    the one it replaced)."""
    on_disk = read_claim(board.path("run"))
    return (on_disk is not None and on_disk.token == claim.info.token
            and not on_disk.token.startswith("t-") and on_disk.pid == os.getpid()
            and on_disk.host == board.host)


def test_a_claim_is_exclusive_until_released(tmp_path):
    board = ClaimBoard(tmp_path / "claims")
    claim = board.try_claim("run")
    assert claim is not None and _ours(board, claim)
    assert board.try_claim("run") is None  # held by a live process (this one)
    holder = board.holder("run")
    assert holder.pid == os.getpid() and f"pid {os.getpid()}" in holder.describe()
    claim.release()
    assert not board.path("run").exists()
    again = board.try_claim("run")
    assert again is not None and _ours(board, again) and again.info.token != claim.info.token
    again.release()


def test_the_claim_of_a_dead_process_is_broken(tmp_path):
    board = ClaimBoard(tmp_path / "claims")
    write_claim(board, "run", pid=dead_pid(), pid_start=None)
    claim = board.try_claim("run")
    assert claim is not None and _ours(board, claim)
    claim.release()


def test_a_reused_pid_does_not_keep_a_claim_alive(tmp_path):
    board = ClaimBoard(tmp_path / "claims")
    if process_start(os.getpid()) is None:
        pytest.skip("process start times need /proc")
    write_claim(board, "run", pid=os.getpid(), pid_start="1")  # our pid, another start time
    claim = board.try_claim("run")
    assert claim is not None and _ours(board, claim)
    claim.release()


def test_another_hosts_claim_is_live_until_its_heartbeat_is_old(tmp_path):
    board = ClaimBoard(tmp_path / "claims", stale_after_s=600)
    write_claim(board, "run", host="elsewhere", pid=1)
    assert board.try_claim("run") is None
    old = time.time() - 601
    os.utime(board.path("run"), (old, old))
    claim = board.try_claim("run")
    assert claim is not None and _ours(board, claim)
    claim.release()


def test_a_requeued_slurm_job_takes_over_its_own_claim(tmp_path, monkeypatch):
    board = ClaimBoard(tmp_path / "claims")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    write_claim(board, "run", host="node-a", pid=1, slurm_job="4242")
    claim = board.try_claim("run")
    assert claim is not None and _ours(board, claim) and claim.info.slurm_job == "4242"
    claim.release()
    write_claim(board, "run", host="node-a", pid=1, slurm_job="999")  # another job: live
    assert board.try_claim("run") is None


def test_release_never_removes_someone_elses_claim(tmp_path):
    board = ClaimBoard(tmp_path / "claims")
    claim = board.try_claim("run")
    write_claim(board, "run", token="somebody-else")  # ours was broken and re-claimed
    claim.release()
    assert read_claim(board.path("run")).token == "somebody-else"


def test_the_heartbeat_refreshes_a_held_claim(tmp_path):
    board = ClaimBoard(tmp_path / "claims", heartbeat_s=0.05)
    claim = board.try_claim("run")
    old = time.time() - 1000
    os.utime(board.path("run"), (old, old))
    deadline = time.time() + 5
    while board.path("run").stat().st_mtime < old + 1 and time.time() < deadline:
        time.sleep(0.02)
    assert board.path("run").stat().st_mtime > old + 900
    claim.release()


def _contend(folder: str, barrier, results) -> None:
    board = ClaimBoard(folder)
    barrier.wait()
    claim = board.try_claim("run")
    results.put(os.getpid() if claim is not None else None)
    if claim is not None:
        time.sleep(0.5)  # hold it while the others try
        claim.release()


@pytest.mark.parametrize("stale_first", [False, True])
def test_exactly_one_of_many_processes_wins(tmp_path, stale_first):
    folder = tmp_path / "claims"
    if stale_first:  # everyone races to break the same dead claim, then to claim
        write_claim(ClaimBoard(folder), "run", pid=dead_pid(), pid_start=None)
    ctx = multiprocessing.get_context("fork")
    n = 6
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_contend, args=(str(folder), barrier, results))
             for _ in range(n)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in range(n)]
    for p in procs:
        p.join(timeout=60)
    winners = [o for o in outcomes if o is not None]
    assert len(winners) == 1, outcomes
    assert not any(folder.glob("*.break")) and not any(folder.glob("*.tmp"))
