"""``bench run --jobs``: slots (device round robin, thread shares), the ``auto`` rule, and the
pool's book-keeping with fake children (no training)."""
import json
import sys
from pathlib import Path

import pytest

import bench.sweep.pool as pool
from bench.common.config import RunConfig, resolve_budget
from bench.sweep.jobs import RunJob
from bench.sweep.pool import Slot, auto_jobs, check_devices, plan_slots, run_processes


def test_slots_go_round_robin_over_the_devices_with_an_equal_share_of_the_cores():
    slots = plan_slots(4, ["cuda:0", "cuda:1", "cuda:2"], cores=16)
    assert [s.device for s in slots] == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    assert {s.threads for s in slots} == {4}
    assert [s.device for s in plan_slots(2, ["cpu"], cores=2)] == ["cpu", "cpu"]
    assert {s.threads for s in plan_slots(3, ["cpu"], cores=2)} == {1}  # never below one
    assert plan_slots(1, ["cpu"], cores=8)[0].threads == 8
    with pytest.raises(ValueError, match="at least 1"):
        plan_slots(0, ["cpu"], cores=2)


def test_a_slot_sets_the_thread_count_before_the_child_starts():
    env = Slot("cpu", 3).environment({"PATH": "/bin", "OMP_NUM_THREADS": "8"})
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "3"
    assert env["PATH"] == "/bin" and env[pool.PARENT_PID_VARIABLE].isdigit()
    assert "OMP_NUM_THREADS" not in Slot("cpu").environment({})  # None: inherited


def test_a_gpu_slots_child_sees_its_gpu_alone():
    slot = Slot("cuda:1", 4)
    assert slot.child_device == "cuda:0"
    assert slot.environment({})["CUDA_VISIBLE_DEVICES"] == "1"
    # indices are the parent's: with GPUs 4,6 visible to it, cuda:1 is GPU 6
    assert slot.environment({"CUDA_VISIBLE_DEVICES": "4, 6"})["CUDA_VISIBLE_DEVICES"] == "6"
    assert "CUDA_VISIBLE_DEVICES" not in Slot("cpu").environment({})
    assert Slot("cpu").child_device == "cpu" and Slot("auto").child_device == "auto"


def test_jobs_auto_is_one_per_gpu_or_one_per_core_and_never_more_than_the_runs():
    assert auto_jobs(["cuda:0", "cuda:1", "cuda:2", "cuda:3"], cores=32, runs=12) == 4
    assert auto_jobs(["cpu"], cores=2, runs=12) == 2
    assert auto_jobs(["cpu"], cores=16, runs=3) == 3
    assert auto_jobs(["cuda:0", "cuda:1"], cores=2, runs=1) == 1


def test_bad_device_lists_are_named():
    assert "not a device" in check_devices(["cpu", "gpu7"])
    assert "name each GPU" in check_devices(["cuda"])
    assert check_devices(["cpu"]) is None
    assert "CUDA device(s) are visible" in check_devices(["cuda:0", "cuda:99"])


def _job(out: Path, seed: int) -> RunJob:
    config = RunConfig("mtl", "glyphs", 5, 1, seed, resolve_budget("smoke", "mtl", "glyphs", 1),
                       episodes=20)
    return RunJob(config=config.to_dict(), out=str(out), device="cpu", progress=False)


# A fake child: records its job's device and thread count, then exits as a finished run
# whose result was not written (the pool books it as skipped).
FAKE_CHILD = """
import json, os, sys, time
job = json.load(open(sys.argv[1]))
with open(os.path.join(job["out"], "seen.jsonl"), "a") as f:
    f.write(json.dumps({"key": json.dumps(job["config"]["seed"]), "device": job["device"],
                        "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
                        "threads": os.environ.get("OMP_NUM_THREADS"),
                        "claim": job["claim"], "announce_stop": job["announce_stop"]}) + "\\n")
time.sleep(0.3)
"""


def test_children_run_on_their_slots_device_with_its_threads(tmp_path, monkeypatch):
    script = tmp_path / "fake_child.py"
    script.write_text(FAKE_CHILD)
    monkeypatch.setattr(pool, "child_command", lambda job_file: [sys.executable, str(script),
                                                                 str(job_file)])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    slots = plan_slots(2, ["cuda:0", "cuda:1"], cores=6)  # fake devices: nothing touches them
    summary = run_processes([_job(tmp_path, s) for s in range(4)], tmp_path, slots,
                            progress=False)
    seen = [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
    assert len(seen) == 4 and len(summary.skipped) == 4  # exit 0 without a result
    assert {s["device"] for s in seen} == {"cuda:0"}  # each sees its own GPU alone
    assert {s["gpu"] for s in seen} == {"0", "1"}  # round robin
    assert {s["threads"] for s in seen} == {"3"}
    assert not any(s["claim"] or s["announce_stop"] for s in seen)  # the parent does both
    assert not list((tmp_path / "claims").iterdir())  # claims and job files cleaned up
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == sorted(
        f"{_job(tmp_path, s).key}.log" for s in range(4))


def _method_job(out: Path, method: str, shots: int) -> RunJob:
    config = RunConfig(method, "glyphs", 5, shots, 0,
                       resolve_budget("smoke", method, "glyphs", shots), episodes=20)
    return RunJob(config=config.to_dict(), out=str(out), device="cpu", progress=False)


def test_the_costliest_runs_start_first_by_the_methods_declared_cost(tmp_path):
    jobs = [_method_job(tmp_path, m, s) for m, s in
            (("mtl", 1), ("mtl", 5), ("metaoptnet", 1), ("maml", 1), ("anil", 5))]
    order = [(j.config["method"], j.config["shots"]) for j in pool.costliest_first(jobs)]
    assert order == [("maml", 1), ("anil", 5), ("metaoptnet", 1), ("mtl", 5), ("mtl", 1)]


def test_the_last_run_alone_gets_every_cpu_slots_threads(tmp_path, monkeypatch):
    cpu = plan_slots(2, ["cpu"], cores=2)
    assert pool.last_run_slot(cpu[0], cpu) == Slot("cpu", 2)
    gpu = plan_slots(2, ["cuda:0", "cuda:1"], cores=8)
    assert pool.last_run_slot(gpu[0], gpu) == gpu[0]  # a GPU run keeps its share
    assert pool.last_run_slot(Slot("cpu"), [Slot("cpu"), Slot("cpu")]) == Slot("cpu")
    # through the pool: one run left, nothing else running -> both cores, set at its start
    script = tmp_path / "fake_child.py"
    script.write_text(FAKE_CHILD)
    monkeypatch.setattr(pool, "child_command", lambda job_file: [sys.executable, str(script),
                                                                 str(job_file)])
    run_processes([_job(tmp_path, 0)], tmp_path, cpu, progress=False)
    seen = [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
    assert [s["threads"] for s in seen] == ["2"]


def test_the_last_run_keeps_its_threads_when_they_were_fixed(tmp_path, monkeypatch):
    script = tmp_path / "fake_child.py"
    script.write_text(FAKE_CHILD)
    monkeypatch.setattr(pool, "child_command", lambda job_file: [sys.executable, str(script),
                                                                 str(job_file)])
    run_processes([_job(tmp_path, 0)], tmp_path, plan_slots(2, ["cpu"], cores=2, threads=1),
                  progress=False, widen_last=False)  # what --threads 1 asks for
    seen = [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
    assert [s["threads"] for s in seen] == ["1"]
