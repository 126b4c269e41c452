"""``bench run --jobs``: parallel runs give the results sequential ones give, a killed run costs
one failure record, and Ctrl-C stops every run at a checkpoint that a rerun resumes from."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bench.sweep.pool as pool
from bench.store.checkpoint import checkpoint_path, load_checkpoint
from bench.commands.main import main
from bench.common.config import RunConfig, resolve_budget
from bench.sweep.jobs import RunJob
from bench.sweep.pool import plan_slots, run_processes
from bench.store.results import read_result, result_path

REPO = Path(__file__).resolve().parents[2]
# 20 test episodes are not the budget's default, so the keys carry the settings hash
KEYS = sorted(RunConfig(m, "glyphs", 5, 1, 0, resolve_budget("smoke", m, "glyphs", 1),
                        episodes=20).key for m in ("mtl", "protonet"))
SWEEP = ("run", "--methods", "mtl,protonet", "--dataset", "glyphs", "--shots", "1",
         "--budget", "smoke", "--episodes", "20", "--device", "cpu", "--no-progress",
         "--threads", "1")  # one thread per job: the thread count changes the last digits

# The parent runs the real CLI but starts its children through CHILD (below).
PARENT = """
import sys
import bench.sweep.pool as pool
child = sys.argv[1]
pool.child_command = lambda job_file: [sys.executable, child, str(job_file)]
from bench.commands.main import main
sys.exit(main(sys.argv[2:]))
"""
# A child whose second epoch is slow and which says (a file) when it is in it.
CHILD = """
import os, pathlib, sys, time
import bench.run.session as session
original, calls = session.parallel_train_step, [0]
def slow(*args, **kwargs):
    calls[0] += 1
    if calls[0] == 7:  # epoch 2, step 2 of the smoke budget's 2 x 5
        (pathlib.Path(os.environ["MARKERS"]) / str(os.getpid())).touch()
    if calls[0] >= 7:
        time.sleep(0.5)
    return original(*args, **kwargs)
session.parallel_train_step = slow
from bench.sweep.launch import main
sys.exit(main(sys.argv[1:]))
"""


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


def bench(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *map(str, args)], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=600)


def same_results(out_a: Path, out_b: Path) -> None:
    for key in KEYS:
        a, b = (read_result(result_path(out, key)) for out in (out_a, out_b))
        assert a["status"] == b["status"] == "ok"
        assert a["episode_hash"] == b["episode_hash"]
        assert a["selection"] == b["selection"]
        for protocol in ("unified", "native"):
            assert a["test"][protocol]["accuracies"] == b["test"][protocol]["accuracies"], key


@pytest.fixture(scope="module")
def two_jobs(tmp_path_factory):
    out = tmp_path_factory.mktemp("jobs2")
    proc = bench(*SWEEP, "--jobs", "2", "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.mark.slow
def test_two_jobs_give_the_result_files_of_a_sequential_sweep(tmp_path, two_jobs):
    out2, proc = two_jobs
    assert "up to 2 at once on cpu (1 thread(s) each)" in proc.stdout
    assert sorted(line.split()[1].rstrip(":") for line in proc.stdout.splitlines()
                  if line.startswith("done ")) == KEYS  # one line per finished run
    assert not list((out2 / "claims").iterdir()) and not list((out2 / "checkpoints").iterdir())
    assert sorted(p.stem for p in (out2 / "logs").iterdir()) == KEYS
    # the reference: the same sweep run one after the other in this (single-threaded)
    # process, the plain path (cheaper than --jobs 1, which differs from --jobs 2 only in
    # the number of slots)
    out1 = tmp_path / "sequential"
    assert SWEEP[-2:] == ("--threads", "1")  # a --jobs option
    assert main([*SWEEP[:-2], "--out", str(out1)]) == 0
    same_results(out1, out2)


def _smoke_job(out: Path, seed: int) -> RunJob:
    config = RunConfig("mtl", "glyphs", 5, 1, seed, resolve_budget("smoke", "mtl", "glyphs", 1),
                       episodes=20)
    return RunJob(config=config.to_dict(), out=str(out), device="cpu", progress=False)


@pytest.mark.slow
def test_a_child_killed_by_sigkill_costs_one_failure_record(tmp_path, monkeypatch):
    jobs = [_smoke_job(tmp_path, seed) for seed in range(2)]
    victim = jobs[0].key
    real = pool.child_command

    def command(job_file: Path) -> list[str]:
        if victim in job_file.name:  # dies the way the out-of-memory killer kills
            return [sys.executable, "-c", "import os, signal, sys; "
                    "sys.stderr.write('allocating a lot\\n'); sys.stderr.flush(); "
                    "os.kill(os.getpid(), signal.SIGKILL)"]
        return real(job_file)

    monkeypatch.setattr(pool, "child_command", command)
    summary = run_processes(jobs, tmp_path, plan_slots(2, ["cpu"], cores=2), progress=False)
    assert summary.failed == [victim]
    assert summary.finished == [jobs[1].key]  # the other run finished
    record = read_result(result_path(tmp_path, victim))
    assert record["status"] == "failed" and "killed by SIGKILL" in record["error"]
    assert "allocating a lot" in record["traceback"]  # the end of its log
    assert not list((tmp_path / "claims").iterdir())


@pytest.mark.slow
def test_ctrl_c_during_two_jobs_leaves_checkpoints_that_a_rerun_resumes(tmp_path, two_jobs):
    (tmp_path / "parent.py").write_text(PARENT)
    (tmp_path / "child.py").write_text(CHILD)
    markers, out = tmp_path / "markers", tmp_path / "out"
    markers.mkdir()
    proc = subprocess.Popen([sys.executable, str(tmp_path / "parent.py"),
                             str(tmp_path / "child.py"), *SWEEP, "--jobs", "2", "--out",
                             str(out)], cwd=REPO, env=_env(MARKERS=str(markers)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while len(list(markers.iterdir())) < 2 and proc.poll() is None:
        assert time.monotonic() < deadline, "the children never reached epoch 2"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends (to this process)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("stopped by Ctrl-C (SIGINT): 2 running"), \
        stderr
    assert "Rerun the same command to resume" in lines[0] and "Traceback" not in stderr
    for key in KEYS:  # each stopped mid-epoch 2 at a step boundary, nothing else written
        saved = load_checkpoint(checkpoint_path(out, key))
        assert saved["progress"]["epochs"] == 1 and saved["progress"]["step_in_epoch"] >= 2
        assert not result_path(out, key).exists()
    assert not list((out / "claims").iterdir())

    resumed = bench(*SWEEP, "--jobs", "2", "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    for key in KEYS:
        assert read_result(result_path(out, key))["timings"]["resumes"] == 1
        assert "resumed" in (out / "logs" / f"{key}.log").read_text()
    same_results(out, two_jobs[0])  # the resumed runs end where uninterrupted ones end


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse rejects a value
        return stop.code


def test_jobs_flags_are_checked_before_anything_runs(tmp_path, capsys):
    for extra, expect in ((("--devices", "cuda:0"), "give --jobs too"),
                          (("--jobs", "2", "--devices", "gpu3"), "not a device"),
                          (("--jobs", "2", "--threads", "auto"), "expected a number of threads"),
                          (("--jobs", "0"), "expected a number of jobs")):
        code = _exit_code(["run", "--methods", "mtl", "--dataset", "glyphs", "--out",
                           str(tmp_path), *extra])
        err = capsys.readouterr().err
        assert code == 2 and expect in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_two_jobs_sweeps_and_a_plain_one_on_one_folder_train_every_run_once(tmp_path):
    """Issue 11: two ``--jobs 2`` sweeps and one sequential sweep started together on one
    results folder: every run is trained exactly once, every result is valid, nothing is left
    claimed or half-written."""
    import re

    out = tmp_path / "shared"
    seeds = range(5)
    sweep = [sys.executable, "-m", "bench", "run", "--methods", "mtl", "--dataset", "glyphs",
             "--shots", "1", "--seeds", ",".join(map(str, seeds)), "--budget", "smoke",
             "--episodes", "20", "--device", "cpu", "--no-progress", "--out", str(out)]
    commands = [sweep + ["--jobs", "2", "--threads", "1"]] * 2 + [sweep]
    procs = [subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for command in commands]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    keys = sorted(RunConfig("mtl", "glyphs", 5, 1, seed,
                            resolve_budget("smoke", "mtl", "glyphs", 1), episodes=20).key
                  for seed in seeds)
    trained = sorted(key for stdout, _ in outputs
                     for key in re.findall(r"^done (\S+):", stdout, re.M))
    assert trained == keys, outputs  # each run trained once, by one of the three sweeps
    for key in keys:
        assert read_result(result_path(out, key))["status"] == "ok"
    assert not list((out / "claims").iterdir()) and not list((out / "checkpoints").iterdir())
    assert not list((out / "runs").glob(".*"))  # no temporary files left
