"""Sweeps that degrade gracefully: isolated runs (a killed or failing run costs one row),
concurrent ``bench run`` processes on one results folder (no run twice, nothing corrupt), and
Slurm submission through submitit (its local executor runs the jobs here)."""
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import submitit
import submitit.slurm.slurm as submitit_slurm

import bench.sweep.launch as launch
import bench.sweep.pool as pool
from bench.common.config import RunConfig, resolve_budget
from bench.sweep.launch import SlurmOptions, parse_slurm_time, run_isolated, submit
from bench.sweep.jobs import RunJob
from bench.store.results import read_result, result_path
from bench.report.all_tables import make_tables

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def smoke_key(seed: int = 0, shots: int = 1) -> str:
    """The key of an MTL glyphs smoke run with 20 test episodes (a non-default setting, so the
    key carries the settings hash)."""
    return RunConfig("mtl", "glyphs", 5, shots, seed,
                     resolve_budget("smoke", "mtl", "glyphs", shots), episodes=20).key


def smoke_job(out: Path, seed: int, shots: int = 1) -> RunJob:
    config = RunConfig("mtl", "glyphs", 5, shots, seed,
                       resolve_budget("smoke", "mtl", "glyphs", shots), episodes=20)
    return RunJob(config=config.to_dict(), out=str(out), device="cpu", progress=False)


@pytest.mark.slow
def test_an_isolated_run_killed_like_an_oom_costs_one_row(tmp_path, monkeypatch):
    jobs = [smoke_job(tmp_path, 0), smoke_job(tmp_path, 1)]
    victim = jobs[0].key
    real = pool.child_command

    def command(job_file: Path) -> list[str]:
        if victim in job_file.name:  # dies the way the out-of-memory killer kills
            return [sys.executable, "-c", "import os, signal, sys; "
                    "sys.stderr.write('allocating a lot\\n'); "
                    "os.kill(os.getpid(), signal.SIGKILL)"]
        return real(job_file)

    monkeypatch.setattr(pool, "child_command", command)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    summary = run_isolated(jobs, tmp_path)
    assert summary.failed == [victim] and summary.finished == [jobs[1].key]
    record = read_result(result_path(tmp_path, victim))
    assert record["status"] == "failed" and "killed by SIGKILL" in record["error"]
    assert "out-of-memory killer" in record["error"]
    assert "allocating a lot" in record["traceback"]
    assert read_result(result_path(tmp_path, jobs[1].key))["status"] == "ok"
    assert not list((tmp_path / "claims").iterdir())  # claims and job files cleaned up
    table = make_tables(tmp_path)
    assert "Failed runs" in table and victim in table and "SIGKILL" in table


@pytest.mark.slow
def test_isolate_from_the_command_line_keeps_going_after_a_failing_run(tmp_path):
    out = tmp_path / "out"
    # a method from outside the repository whose training step raises: its run fails in its
    # own process (bad arguments would be refused before anything runs, issue 11)
    (tmp_path / "exploding_method.py").write_text(
        "from methods.mtl import MTL\n\n\n"
        "class Exploding(MTL):\n"
        "    display_name = 'Exploding'\n\n"
        "    def loss(self, batch):\n"
        "        raise RuntimeError('exploding on purpose')\n")
    env = {**_env(), "PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--methods", "exploding_method:Exploding,mtl",
         "--dataset", "glyphs", "--shots", "1", "--budget", "smoke", "--episodes", "20",
         "--device", "cpu", "--no-progress", "--isolate", "--out", str(out), "--table"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # one failed run
    assert "1 finished, 0 skipped, 1 failed" in proc.stdout
    [failed_path] = (out / "runs").glob("exploding_glyphs_5w1s_smoke_seed0*.json")
    failed = read_result(failed_path)
    assert failed["status"] == "failed" and "exploding on purpose" in failed["error"]
    assert read_result(result_path(out, smoke_key()))["status"] == "ok"
    assert "Failed runs" in proc.stdout and failed_path.stem in proc.stdout


@pytest.mark.slow
def test_two_processes_on_one_results_folder_never_run_a_key_twice(tmp_path):
    out = tmp_path / "shared"
    args = [sys.executable, "-m", "bench", "run", "--methods", "mtl", "--dataset", "glyphs",
            "--shots", "1", "--seeds", "0,1,2,3", "--budget", "smoke", "--episodes", "20",
            "--device", "cpu", "--no-progress", "--out", str(out)]
    procs = [subprocess.Popen(args, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    done = [re.findall(r"^done (\S+):", stdout, re.M) for stdout, _ in outputs]
    keys = [smoke_key(seed=s) for s in range(4)]
    assert sorted(done[0] + done[1]) == keys, outputs  # each key trained exactly once
    for (stdout, _), mine in zip(outputs, done):  # the rest were left to the other process
        others = re.findall(r"^(?:busy|skip) (\S+):", stdout, re.M)
        assert sorted(mine + others) == keys, stdout
    for key in keys:
        assert read_result(result_path(out, key))["status"] == "ok"
    assert not list((out / "claims").iterdir()) and not list((out / "checkpoints").iterdir())
    assert not list((out / "runs").glob(".*"))  # no temporary files left


def test_slurm_times_are_parsed_to_minutes():
    assert parse_slurm_time("90") == 90
    assert parse_slurm_time("12:00:00") == 720
    assert parse_slurm_time("1:30") == 2  # minutes:seconds, rounded up
    assert parse_slurm_time("2-00:00:00") == 2880
    assert parse_slurm_time("1-6") == 1800
    with pytest.raises(ValueError, match="not a Slurm time"):
        parse_slurm_time("two days")


def test_the_sbatch_script_asks_for_the_requested_resources(tmp_path, monkeypatch):
    monkeypatch.setattr(submitit_slurm.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    executor = submitit.AutoExecutor(folder=tmp_path, cluster="slurm")
    options = SlurmOptions(partition="gpu", time_min=parse_slurm_time("2-00:00:00"),
                           gpus_per_job=4, cpus_per_task=8, extra={"account": "proj"})
    executor.update_parameters(**options.executor_parameters())
    script = executor._executor._make_submission_file_text("python -m x", "uid")
    for line in ("--partition=gpu", "--time=2880", "--gpus-per-node=4",
                 "--ntasks-per-node=4", "--cpus-per-task=8", "--account=proj",
                 "--signal=USR2@120", "--nodes=1"):
        assert f"#SBATCH {line}" in script


@pytest.mark.slow
def test_slurm_jobs_run_through_submitits_local_executor(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    jobs = [smoke_job(tmp_path, 0), smoke_job(tmp_path, 1)]
    submitted = submit(jobs, SlurmOptions(partition="gpu", time_min=20, gpus_per_job=0),
                       tmp_path / "slurm", cluster="local")
    assert [j.result() for j in submitted] == [f"{job.key}: ok" for job in jobs]
    for job in jobs:
        assert read_result(result_path(tmp_path, job.key))["status"] == "ok"
    todo, notes = launch.pending_jobs(jobs, tmp_path)
    assert todo == [] and all(n.startswith("skip") for n in notes)


def test_slurm_run_is_requeued_unchanged_on_timeout_or_preemption(tmp_path):
    job = launch.SlurmRun(smoke_job(tmp_path, 0))
    resubmission = job.checkpoint()
    assert resubmission.function is job  # resumes from the run's checkpoint when requeued


@pytest.mark.parametrize("extra, expect", [
    (("--isolate", "--launcher", "slurm"), "already runs every run in a job of its own"),
    (("--launcher", "slurm", "--slurm-gpus-per-job", "8", "--budget", "paper"),
     "each process needs at least one task of every meta-batch"),
    (("--launcher", "slurm", "--budget", "smoke"), "cannot submit Slurm jobs from this machine"),
])
def test_launch_problems_are_refused_before_anything_runs(tmp_path, extra, expect):
    if "cannot submit" in expect and submitit_slurm.SlurmExecutor.affinity() > 0:
        pytest.skip("this machine is a Slurm node")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--methods", "mtl", "--dataset", "glyphs",
         "--out", str(tmp_path), *extra], cwd=REPO, env=_env(), capture_output=True,
        text=True, timeout=120)
    assert proc.returncode == 2 and expect in proc.stderr, proc.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_job_configs_survive_the_json_round_trip(tmp_path):
    config = RunConfig("metaoptnet", "mini", 5, 5, 2, resolve_budget("paper", "metaoptnet",
                                                                       "mini", 5))
    job = RunJob(config=config.to_dict(), out=str(tmp_path))
    again = RunConfig.from_dict(json.loads(json.dumps(job.config)))
    assert again == config and again.budget.lr_epochs == (20, 40, 50)


def test_a_child_that_dies_is_described(tmp_path):
    assert "killed by SIGSEGV" in str(pool.death_error(-signal.SIGSEGV, "boom\n"))
    assert "Last output: boom" in str(pool.death_error(-signal.SIGSEGV, "boom\n"))
    assert "exited with code 7" in str(pool.death_error(7, ""))
