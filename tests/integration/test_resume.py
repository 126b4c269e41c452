"""Checkpoint and resume: a run killed mid-epoch (SIGKILL) or stopped by SIGTERM, then rerun
with the same command, ends exactly where an uninterrupted run ends; bad conditions (corrupt
checkpoint, changed dataset or configuration, full disk, unwritable folder) stop with a clear
error and lose nothing already written."""
import errno
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import bench.store.checkpoint as ckpt
import bench.store.results as results_module
import bench.run.session as session
from bench.store.checkpoint import StorageError, checkpoint_path, load_checkpoint
from bench.common.config import RunConfig, resolve_budget
from bench.store.results import read_result, result_path
from bench.sweep.runs import CheckpointPolicy, preflight_checkpoints, run_sweep
from datasets import load_dataset
from datasets.base import ClassSplit, FewShotDataset
from interrupted_cli import INTERRUPTED, KEY, RUN  # beside this file (pytest puts it on sys.path)

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def bench(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *map(str, args)], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=300)


def interrupted_bench(tmp_path: Path, step: int, sig: str, *args) -> subprocess.CompletedProcess:
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED)
    return subprocess.run([sys.executable, str(script), str(step), sig, *map(str, args)],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = bench(*RUN, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return read_result(result_path(out, KEY)), load_checkpoint(checkpoint_path(out, KEY))


def assert_same_run(result, final, reference):
    ref_result, ref_final = reference
    assert result["test"]["unified"]["accuracies"] == ref_result["test"]["unified"]["accuracies"]
    assert result["selection"] == ref_result["selection"]
    assert result["episode_hash"] == ref_result["episode_hash"]
    for name in ("steps", "images_seen", "epochs"):
        assert result["timings"][name] == ref_result["timings"][name]
    for which in ("model", "best"):
        mine = final[which] if which == "model" else final[which]["state"]
        ref = ref_final[which] if which == "model" else ref_final[which]["state"]
        assert mine.keys() == ref.keys()
        for name, value in ref.items():
            if torch.is_tensor(value):
                assert torch.equal(mine[name], value), f"{which}: {name} differs"
            else:
                assert mine[name] == value
    assert torch.equal(final["optimizer"]["state"][0]["exp_avg"],
                       ref_final["optimizer"]["state"][0]["exp_avg"])


@pytest.mark.slow
def test_sigkill_mid_epoch_then_the_same_command_resumes_to_the_same_result(tmp_path,
                                                                           uninterrupted):
    out = tmp_path / "out"
    killed = interrupted_bench(tmp_path, 8, "SIGKILL", *RUN, "--out", out)  # epoch 2 of 2
    assert killed.returncode == -9
    saved = load_checkpoint(checkpoint_path(out, KEY))
    assert saved["progress"]["epochs"] == 1 and saved["progress"]["step_in_epoch"] == 0
    assert not result_path(out, KEY).exists()
    assert (out / "claims" / f"{KEY}.claim").exists()  # left behind by the dead process

    started = time.perf_counter()
    resumed = bench(*RUN, "--out", out)
    wall = time.perf_counter() - started
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed {KEY}" in resumed.stdout and "epoch 2, step 1" in resumed.stdout
    result = read_result(result_path(out, KEY))
    assert_same_run(result, load_checkpoint(checkpoint_path(out, KEY)), uninterrupted)
    timings = result["timings"]
    assert timings["resumes"] == 1 and timings["resume_seconds"] > 0
    # Device time: the first process's checkpointed training time plus the second's.
    assert saved["timings"]["train"] + saved["timings"]["first_step"] \
        < timings["train_seconds"]
    # The learning curve survives the resume unchanged: epoch 1 as checkpointed, then epoch 2;
    # all but its clocks equal to the uninterrupted run's, its clocks adding up to the result's.
    curve, clocks = result["learning_curve"], ("train_seconds", "run_seconds")
    assert len(saved["curve"]) == 1 and curve[0] == saved["curve"][0]
    assert [{k: v for k, v in p.items() if k not in clocks} for p in curve] == \
        [{k: v for k, v in p.items() if k not in clocks}
         for p in uninterrupted[0]["learning_curve"]]
    assert curve[-1]["train_seconds"] == timings["train_seconds"]
    assert not (out / "claims" / f"{KEY}.claim").exists()
    print(f"resume: {timings['resume_seconds'] * 1000:.1f} ms to load and restore the "
          f"checkpoint; the whole resumed command took {wall:.1f} s")


#: Methods added after the resume machinery (issue 17): each is killed and resumed at the smoke
#: budget (their CPU-sized quick_hparams; RFS on image batches, whose sampler state the
#: checkpoint must carry).
NEWER_METHODS = ("imaml", "minibatchprox", "rfs")


def smoke_run(methods: str) -> tuple[str, ...]:
    return ("run", "--methods", methods, "--dataset", "glyphs", "--shots", "1", "--budget",
            "smoke", "--episodes", "20", "--device", "cpu", "--no-progress",
            "--keep-checkpoints")


def smoke_key(method: str) -> str:
    """The key of ``smoke_run``'s run of ``method`` (20 test episodes are not the budget's
    default, so it carries issue 10's settings hash)."""
    return RunConfig(method, "glyphs", 5, 1, 0, resolve_budget("smoke", method, "glyphs", 1),
                     episodes=20).key


@pytest.fixture(scope="module")
def uninterrupted_newer(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted-newer")
    proc = bench(*smoke_run(",".join(NEWER_METHODS)), "--out", out)  # one process for all
    assert proc.returncode == 0, proc.stderr
    return {m: (read_result(result_path(out, smoke_key(m))),
                load_checkpoint(checkpoint_path(out, smoke_key(m)))) for m in NEWER_METHODS}


@pytest.mark.slow
@pytest.mark.parametrize("method", NEWER_METHODS)
def test_each_newer_method_killed_mid_epoch_resumes_to_the_same_run(method, tmp_path,
                                                                    uninterrupted_newer):
    out, key = tmp_path / "out", smoke_key(method)
    killed = interrupted_bench(tmp_path, 8, "SIGKILL", *smoke_run(method), "--out", out)
    assert killed.returncode == -9
    assert load_checkpoint(checkpoint_path(out, key))["progress"]["epochs"] == 1
    resumed = bench(*smoke_run(method), "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed {key}" in resumed.stdout and "epoch 2, step 1" in resumed.stdout
    result = read_result(result_path(out, key))
    reference = uninterrupted_newer[method]
    assert_same_run(result, load_checkpoint(checkpoint_path(out, key)), reference)
    assert result["test"]["native"]["accuracies"] == \
        reference[0]["test"]["native"]["accuracies"]


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, name", [("SIGTERM", 143, "SIGTERM"),
                                             ("SIGINT", 130, "Ctrl-C (SIGINT)")])
def test_a_stop_signal_checkpoints_mid_epoch_and_resume_continues_from_that_step(
        tmp_path, uninterrupted, sig, code, name):
    out = tmp_path / "out"
    along = ("--test-every", "1", "--test-every-episodes", "5")  # recorded, changes nothing
    stopped = interrupted_bench(tmp_path, 8, sig, *RUN, *along, "--out", out)
    assert stopped.returncode == code, stopped.stderr
    lines = [line for line in stopped.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"stopped by {name} after step 8" in lines[0], stopped.stderr
    assert "Rerun the same command to resume" in lines[0]
    saved = load_checkpoint(checkpoint_path(out, KEY))
    assert saved["progress"]["epochs"] == 1 and saved["progress"]["step_in_epoch"] == 3
    resumed = bench(*RUN, *along, "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    assert "epoch 2, step 4" in resumed.stdout
    result = read_result(result_path(out, KEY))
    assert_same_run(result, load_checkpoint(checkpoint_path(out, KEY)), uninterrupted)
    assert result["timings"]["steps"] == 10
    curve = result["learning_curve"]
    assert curve[0] == saved["curve"][0] and [p["test_episodes"] for p in curve] == [5, 5]


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_and_the_last_checkpoint_resumes(tmp_path,
                                                                      uninterrupted):
    out = tmp_path / "out"
    script = tmp_path / "twice.py"  # two Ctrl-C in a row when step 8 starts
    script.write_text(INTERRUPTED.replace("os.kill(os.getpid(), sig)",
                                          "os.kill(os.getpid(), sig); os.kill(os.getpid(), sig)"))
    stopped = subprocess.run([sys.executable, str(script), "8", "SIGINT", *RUN, "--out",
                              str(out)], cwd=REPO, env=_env(), capture_output=True, text=True,
                             timeout=300)
    assert stopped.returncode == 130, stopped.stderr
    lines = [line for line in stopped.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "stopped at once" in lines[0], stopped.stderr
    assert "rerun the same command to resume" in lines[0]
    saved = load_checkpoint(checkpoint_path(out, KEY))  # the end of epoch 1
    assert saved["progress"]["epochs"] == 1 and saved["progress"]["step_in_epoch"] == 0
    resumed = bench(*RUN, "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(read_result(result_path(out, KEY)),
                    load_checkpoint(checkpoint_path(out, KEY)), uninterrupted)


@pytest.mark.slow
def test_checkpoints_are_removed_once_the_result_is_written_unless_kept(tmp_path):
    out = tmp_path / "out"
    args = [a for a in RUN if a != "--keep-checkpoints"]
    proc = bench(*args, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert read_result(result_path(out, KEY))["status"] == "ok"
    assert not checkpoint_path(out, KEY).exists()


@pytest.mark.slow
def test_a_corrupt_checkpoint_stops_before_training_and_restart_starts_fresh(tmp_path):
    out = tmp_path / "out"
    path = checkpoint_path(out, KEY)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00garbage from a crashed copy")
    refused = bench(*RUN, "--out", out)
    assert refused.returncode == 2
    assert str(path) in refused.stderr and "--restart" in refused.stderr
    assert not result_path(out, KEY).exists()
    fresh = bench(*RUN, "--out", out, "--restart")
    assert fresh.returncode == 0, fresh.stderr
    assert read_result(result_path(out, KEY))["timings"]["resumes"] == 0


@pytest.mark.slow
def test_a_changed_configuration_is_refused_with_the_difference(tmp_path):
    out = tmp_path / "out"
    assert interrupted_bench(tmp_path, 8, "SIGKILL", *RUN, "--out", out).returncode == -9
    changed = bench(*RUN, "--out", out, "--hparam", "normalize_features=false")
    assert changed.returncode == 2
    assert "budget.hparams.normalize_features: True in the checkpoint, False now" \
        in changed.stderr and "--restart" in changed.stderr


def test_an_unwritable_results_folder_is_reported_before_anything_runs(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = bench(*RUN, "--out", blocker / "results")
    assert proc.returncode == 2
    assert "is not writable" in proc.stderr and "Nothing was run" in proc.stderr


# ----------------------------------------------------------------------------- in process

@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs")


def smoke(seed: int) -> RunConfig:
    return RunConfig("mtl", "glyphs", 5, 1, seed, resolve_budget("smoke", "mtl", "glyphs", 1),
                     episodes=20)


def crash_at_step(monkeypatch, step: int) -> None:
    original, calls = session.parallel_train_step, [0]

    def crashing(*args, **kwargs):
        calls[0] += 1
        if calls[0] == step:
            raise RuntimeError("simulated crash")
        return original(*args, **kwargs)

    monkeypatch.setattr(session, "parallel_train_step", crashing)


def with_changed_pixel(dataset: FewShotDataset) -> FewShotDataset:
    images = dataset.train.images.clone()
    images[0, 0, 0, 0] ^= 1
    train = ClassSplit(dataset.train.name, images, dataset.train.labels,
                       dataset.train.class_names)
    return replace(dataset, train=train)


def test_a_changed_dataset_is_refused_before_and_during_a_sweep(glyphs, tmp_path,
                                                               monkeypatch):
    config, cpu = smoke(0), torch.device("cpu")
    with monkeypatch.context() as patch:
        crash_at_step(patch, 7)
        summary = run_sweep([config], {"glyphs": glyphs}, cpu, tmp_path, progress=False)
    assert summary.failed == [config.key]
    assert load_checkpoint(checkpoint_path(tmp_path, config.key))["progress"]["epochs"] == 1
    changed = {"glyphs": with_changed_pixel(glyphs)}
    problems = preflight_checkpoints([config], changed, tmp_path)
    assert len(problems) == 1 and "the dataset changed since this checkpoint" in problems[0]
    assert "--restart" in problems[0]
    assert preflight_checkpoints([config], {"glyphs": glyphs}, tmp_path) == []
    summary = run_sweep([config], changed, cpu, tmp_path, progress=False)
    record = read_result(result_path(tmp_path, config.key))
    assert summary.failed == [config.key] and "dataset changed" in record["error"]
    assert checkpoint_path(tmp_path, config.key).exists()  # kept for the unchanged dataset
    summary = run_sweep([config], {"glyphs": glyphs}, cpu, tmp_path, progress=False)
    assert summary.finished == [config.key]
    assert read_result(result_path(tmp_path, config.key))["timings"]["resumes"] == 1


def test_a_full_disk_while_checkpointing_keeps_the_last_checkpoint(glyphs, tmp_path,
                                                                  monkeypatch):
    config = smoke(0)
    original, calls = ckpt._write_payload, [0]

    def fills_up(handle, payload):
        calls[0] += 1
        if calls[0] == 2:  # the end of epoch 2
            handle.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        original(handle, payload)

    monkeypatch.setattr(ckpt, "_write_payload", fills_up)
    with pytest.raises(StorageError) as info:
        run_sweep([config], {"glyphs": glyphs}, torch.device("cpu"), tmp_path, progress=False)
    path = checkpoint_path(tmp_path, config.key)
    assert str(path) in str(info.value) and "disk is full" in str(info.value)
    assert load_checkpoint(path)["progress"]["epochs"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert not result_path(tmp_path, config.key).exists()  # no half-written failure record


def test_a_full_disk_while_writing_a_result_loses_nothing_and_a_rerun_only_tests(
        glyphs, tmp_path, monkeypatch):
    first, second = smoke(0), smoke(1)
    cpu = torch.device("cpu")
    run_sweep([first], {"glyphs": glyphs}, cpu, tmp_path, progress=False)
    kept = result_path(tmp_path, first.key).read_bytes()
    original_dump = results_module.json.dump

    def full(data, handle, **kwargs):
        if data.get("key") == second.key:
            raise OSError(errno.ENOSPC, "No space left on device")
        original_dump(data, handle, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(results_module.json, "dump", full)
        with pytest.raises(StorageError) as info:
            run_sweep([first, second], {"glyphs": glyphs}, cpu, tmp_path, progress=False,
                      checkpoints=CheckpointPolicy(keep=False))
    message = str(info.value)
    assert str(result_path(tmp_path, second.key)) in message and "disk is full" in message
    assert result_path(tmp_path, first.key).read_bytes() == kept
    assert not result_path(tmp_path, second.key).exists()
    assert not list((tmp_path / "runs").glob(".*.tmp"))
    assert load_checkpoint(checkpoint_path(tmp_path, second.key))["progress"]["finished"]
    summary = run_sweep([first, second], {"glyphs": glyphs}, cpu, tmp_path, progress=False)
    assert summary.skipped == [first.key] and summary.finished == [second.key]
    record = read_result(result_path(tmp_path, second.key))
    assert record["timings"]["resumes"] == 1 and record["timings"]["steps"] == 10


@pytest.mark.parametrize("schedule", ["plateau", "step", "linear"])
def test_learning_rate_schedules_resume_exactly(glyphs, tmp_path, monkeypatch, schedule):
    budget = replace(resolve_budget("smoke", "mtl", "glyphs", 1), schedule=schedule, epochs=3,
                     plateau_patience=0, lr_epochs=(1, 2), lr_factors=(0.5, 0.1))
    config = replace(smoke(0), budget=budget)
    cpu, keep = torch.device("cpu"), CheckpointPolicy(keep=True)
    run_sweep([config], {"glyphs": glyphs}, cpu, tmp_path / "a", progress=False,
              checkpoints=keep)
    with monkeypatch.context() as patch:
        crash_at_step(patch, 12)  # epoch 3
        run_sweep([config], {"glyphs": glyphs}, cpu, tmp_path / "b", progress=False,
                  checkpoints=keep)
    run_sweep([config], {"glyphs": glyphs}, cpu, tmp_path / "b", progress=False,
              checkpoints=keep)
    a, b = (read_result(result_path(tmp_path / d, config.key)) for d in ("a", "b"))
    assert b["timings"]["resumes"] == 1
    assert a["selection"] == b["selection"] and a["test"]["unified"]["accuracies"] == \
        b["test"]["unified"]["accuracies"]
    lrs = [load_checkpoint(checkpoint_path(tmp_path / d, config.key))["optimizer"]
           ["param_groups"][0]["lr"] for d in ("a", "b")]
    assert lrs[0] == lrs[1] < budget.lr  # the schedule did act, and resumed where it was
