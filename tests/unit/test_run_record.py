"""The result record of one run (bench.run.train_and_test.run_one) with training and the final
test replaced by scripted ones: every figure of the record is the one the training loop, the
timer and the test produced, put in its own field. Timing sections take fixed, distinct
durations, so each cost figure is checked to the second (the timing rule of
bench.common.timing: training = first step + training steps; a run = training + validation;
x processes for device-hours; the largest rank's seconds with several processes). Also the
failure record and the atomic result write."""
from __future__ import annotations

import errno
import json
import math
import traceback
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Iterator

import pytest
import torch

import bench.run.train_and_test as record_module
from bench.common.config import RunConfig, resolve_budget
from bench.common.timing import SectionTimer
from bench.run.distributed import SINGLE, Parallel
from bench.run.session import TrainOutcome, _cpu_state
from bench.run.train_and_test import failure_record, run_one, write_result
from bench.run.training import build_training
from bench.store.checkpoint import StorageError, dataset_identity
from bench.store.model_files import read_model_file
from bench.store.results import SCHEMA
from datasets import load_dataset

CPU = torch.device("cpu")
# the seconds each timed section takes: distinct primes, so a figure built from the wrong
# sections (or the right ones added twice) cannot come out right
SECONDS = {"first_step": 7.0, "train": 30.0, "validation": 5.0, "checkpoint": 13.0,
           "resume": 2.0, "test_every": 17.0}
EVAL_SECONDS = 11.0


@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs")


class FixedTimer(SectionTimer):
    """A timer whose sections each take ``EVAL_SECONDS`` (only run_one's "eval" is timed by
    it here; the scripted training writes its own sections)."""

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        yield
        self.seconds[name] += EVAL_SECONDS


def config_for(method: str, **changes: Any) -> RunConfig:
    budget = resolve_budget("smoke", method, "glyphs", 1)
    return replace(RunConfig(method, "glyphs", 5, 1, 3, budget, episodes=4), **changes)


class Script:
    """Scripted training and final test for run_one; remembers how they were called."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, curve: list | None = (),
                 over_ranks: list[float] | None = None) -> None:
        self.calls: dict[str, Any] = {}
        self.curve = None if curve is None else list(curve)
        self.over_ranks = over_ranks
        monkeypatch.setattr(record_module, "SectionTimer", FixedTimer)
        monkeypatch.setattr(record_module, "train", self.train)
        monkeypatch.setattr(record_module, "evaluate_test_split", self.evaluate)
        monkeypatch.setattr(record_module, "build_training", self.build_training)
        monkeypatch.setattr(record_module.provenance, "collect",
                            lambda device, count: {"device_count": count, "device": str(device)})
        if over_ranks is not None:
            values = iter(over_ranks)
            monkeypatch.setattr(record_module, "max_over_ranks",
                                lambda value, parallel: self._over_ranks(value, next(values)))

    def _over_ranks(self, mine: float, slowest_other: float) -> float:
        self.calls.setdefault("max_over_ranks", []).append(mine)
        return max(mine, slowest_other)

    def build_training(self, config, dataset, device, parallel):
        self.calls["build_training"] = parallel
        training = build_training(config, dataset, CPU, SINGLE)
        self.method = training.method
        # the selected epoch's weights: every parameter 0.25, unlike the trained ones
        self.best_state = {k: torch.full_like(v, 0.25)
                           if torch.is_tensor(v) and v.is_floating_point() else v
                           for k, v in _cpu_state(self.method).items()}
        return training

    def train(self, training, dataset, config, device, timer, progress, *, checkpoint,
              parallel, epoch_log):
        self.calls["train"] = (training.method, config, progress, checkpoint, parallel,
                               epoch_log)
        self.calls["train_on"] = (dataset, device)
        for name, seconds in SECONDS.items():
            timer.seconds[name] += seconds
        return TrainOutcome(best_state=self.best_state, best_epoch=2, best_val=61.5,
                            val_curve=[40.0, 61.5, 58.25], steps=9, images_seen=270,
                            epochs=3, resumes=1, curve=self.curve)

    def evaluate(self, method, dataset, config, device, progress, parallel):
        self.calls["evaluate"] = (config, device, progress, parallel)
        self.calls["evaluate_on"] = dataset
        self.tested_weights = _cpu_state(method)
        results = {"unified": {"accuracies": [50.0, 70.0], "mean": 60.0, "ci95": 19.6,
                               "seconds": 1.5},
                   "native": {"accuracies": [40.0, 80.0], "mean": 60.0, "ci95": 39.2,
                              "seconds": 2.5}}
        return results, "episode-digest"


def test_the_record_holds_the_figures_of_training_selection_and_the_test(glyphs, monkeypatch):
    script = Script(monkeypatch, curve=[{"epoch": 1, "val": 40.0}])
    config = config_for("protonet", select_on="native", test_every=2, test_every_episodes=2)
    checkpoint, log = object(), object()
    record = run_one(config, glyphs, CPU, progress=False, checkpoint=checkpoint,
                     data={"name": "glyphs", "fingerprint": "f"}, epoch_log=log)

    assert record["schema"] == SCHEMA and record["status"] == "ok"
    assert record["key"] == config.key and record["config"] == config.to_dict()
    assert record["data"] == {"name": "glyphs", "fingerprint": "f"}
    assert record["n_train_classes"] == glyphs.train.n_classes
    assert record["provenance"] == {"device_count": 1, "device": "cpu"}
    method, trained_config, progress, passed_checkpoint, parallel, passed_log = \
        script.calls["train"]
    assert method is script.method and trained_config is config and progress is False
    assert passed_checkpoint is checkpoint and parallel is SINGLE and passed_log is log
    assert script.calls["build_training"] is SINGLE
    assert script.calls["train_on"] == (glyphs, CPU) and script.calls["evaluate_on"] is glyphs
    # the test ran on the selected epoch's weights, with the run's settings
    assert all(torch.equal(script.tested_weights[k], v)
               for k, v in script.best_state.items() if torch.is_tensor(v))
    assert script.calls["evaluate"] == (config, CPU, False, SINGLE)

    train_seconds = SECONDS["first_step"] + SECONDS["train"]
    run_seconds = train_seconds + SECONDS["validation"]
    assert record["timings"] == {
        "train_seconds": train_seconds,
        "train_device_hours": pytest.approx(train_seconds / 3600),
        "run_seconds": run_seconds,
        "run_device_hours": pytest.approx(run_seconds / 3600),
        "device_hours": pytest.approx(train_seconds / 3600),
        "device_hours_unit": "CPU-hours",
        "first_step_seconds": SECONDS["first_step"],
        "validation_seconds": SECONDS["validation"],
        "eval_seconds": EVAL_SECONDS,
        "checkpoint_seconds": SECONDS["checkpoint"],
        "resume_seconds": SECONDS["resume"],
        "resumes": 1,
        "peak_memory_bytes": None,
        "steps": 9,
        "images_seen": 270,
        "epochs": 3,
        "test_every_seconds": SECONDS["test_every"],
    }
    assert record["selection"] == {"protocol": "native", "best_epoch": 2,
                                   "best_val_accuracy": 61.5,
                                   "val_curve": [40.0, 61.5, 58.25]}
    assert record["test"]["native"]["accuracies"] == [40.0, 80.0]
    assert record["test"]["unified"]["ci95"] == 19.6
    assert record["episode_hash"] == "episode-digest"
    assert record["native_is_unified"] is False
    assert record["learning_curve"] == [{"epoch": 1, "val": 40.0}]
    assert "model" not in record


def test_a_method_without_its_own_adaptation_is_selected_and_tested_unified(glyphs,
                                                                           monkeypatch):
    """MTL has no adaptation of its own: selection says "unified" whatever --select-on says;
    a run without --test-every has no test-every seconds, and one resumed from a checkpoint
    without curves has no learning curve. Progress bars are on unless turned off."""
    script = Script(monkeypatch, curve=None)
    record = run_one(config_for("mtl", select_on="native"), glyphs, CPU)
    assert script.calls["train"][2] is True and script.calls["evaluate"][2] is True
    assert record["selection"]["protocol"] == "unified"
    assert record["native_is_unified"] is True
    assert "test_every_seconds" not in record["timings"]
    assert "learning_curve" not in record
    assert record["data"] == dataset_identity(glyphs)  # computed when not given


def test_several_processes_count_the_slowest_rank_times_the_processes(glyphs, monkeypatch):
    """With 2 processes: training seconds are the slowest rank's, the run's seconds the
    slowest rank's training + validation but never less than the training seconds, and
    device-hours count both processes."""
    train_seconds = SECONDS["first_step"] + SECONDS["train"]
    # another rank trained for 100 s; its training + validation took 90 s (less)
    script = Script(monkeypatch, over_ranks=[100.0, 90.0])
    two = Parallel(rank=0, world_size=2)
    record = run_one(config_for("protonet"), glyphs, CPU, progress=False, parallel=two)
    assert script.calls["max_over_ranks"] == [train_seconds,
                                              train_seconds + SECONDS["validation"]]
    assert script.calls["build_training"] is two and script.calls["train"][4] is two
    assert record["provenance"]["device_count"] == 2
    timings = record["timings"]
    assert (timings["train_seconds"], timings["run_seconds"]) == (100.0, 100.0)
    assert timings["train_device_hours"] == pytest.approx(100.0 / 3600 * 2)
    assert timings["run_device_hours"] == pytest.approx(100.0 / 3600 * 2)
    assert timings["device_hours"] == timings["train_device_hours"]

    script = Script(monkeypatch, over_ranks=[100.0, 120.0])
    timings = run_one(config_for("protonet"), glyphs, CPU, progress=False,
                      parallel=two)["timings"]
    assert (timings["train_seconds"], timings["run_seconds"]) == (100.0, 120.0)
    assert timings["run_device_hours"] == pytest.approx(120.0 / 3600 * 2)


def test_the_model_file_holds_the_selected_weights_and_only_rank_0_writes_it(glyphs,
                                                                            monkeypatch,
                                                                            tmp_path):
    script = Script(monkeypatch)
    path = tmp_path / "models" / "run.pt"
    config = config_for("protonet")
    record = run_one(config, glyphs, CPU, progress=False, model_file=path)
    model = record["model"]
    assert model["bytes"] == path.stat().st_size and len(model["sha256"]) == 64
    assert model["path"] == "models/run.pt"
    saved = read_model_file(path)
    assert saved.key == config.key and saved.sha256 == model["sha256"]
    assert saved.meta["selection"]["best_epoch"] == 2
    assert all(torch.equal(saved.state_dict[k], v)
               for k, v in script.best_state.items() if torch.is_tensor(v))

    other = tmp_path / "models" / "rank1.pt"
    Script(monkeypatch, over_ranks=[1.0, 1.0])
    record = run_one(config, glyphs, CPU, progress=False, model_file=other,
                     parallel=Parallel(rank=1, world_size=2))
    assert "model" not in record and not other.exists()


def test_a_state_no_model_file_can_hold_costs_the_model_not_the_result(glyphs, monkeypatch,
                                                                       tmp_path, capsys):
    Script(monkeypatch)

    def refuse(record, dataset, state):
        raise TypeError("a tensor subclass cannot be saved")

    monkeypatch.setattr(record_module, "model_payload", refuse)
    path = tmp_path / "run.pt"
    config = config_for("protonet")
    record = run_one(config, glyphs, CPU, progress=False, model_file=path)
    assert record["model"] is None and record["status"] == "ok" and not path.exists()
    assert (f"warning: {config.key}: no model file written (a tensor subclass cannot be "
            "saved)") in capsys.readouterr().out


def test_the_final_test_shows_progress_unless_told_not_to(glyphs, monkeypatch):
    seen = []

    def unified(method, loader, episodes, **kwargs):
        seen.append(kwargs["progress"])
        return [100.0] * episodes.n_tasks

    monkeypatch.setattr(record_module, "evaluate_unified", unified)
    config = config_for("mtl")
    method = build_training(config, glyphs, CPU, SINGLE).method
    record_module.evaluate_test_split(method, glyphs, config, CPU)
    record_module.evaluate_test_split(method, glyphs, config, CPU, progress=False)
    assert seen == [True, False]


def test_a_run_on_a_gpu_records_its_peak_memory_in_gpu_hours(glyphs, monkeypatch):
    """On a CUDA device the peak-memory counter is reset before training and read after it,
    and the cost is labelled GPU-hours (CUDA's counters are replaced here: CI has no GPU)."""
    script = Script(monkeypatch)
    events = []
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats",
                        lambda device: events.append(("reset", device, "train" in script.calls)))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated",
                        lambda device: events.append(("peak", device, "evaluate" in script.calls))
                        or 123456789.0)
    gpu = torch.device("cuda", 0)
    record = run_one(config_for("protonet"), glyphs, gpu, progress=False)
    # reset before training; read after training and before the test
    assert events == [("reset", gpu, False), ("peak", gpu, False)]
    assert record["timings"]["peak_memory_bytes"] == 123456789
    assert isinstance(record["timings"]["peak_memory_bytes"], int)
    assert record["timings"]["device_hours_unit"] == "GPU-hours"
    assert script.calls["train_on"][1] == gpu and script.calls["evaluate"][1] == gpu


def test_a_failure_record_names_the_error_and_keeps_the_end_of_its_traceback():
    config = config_for("protonet")

    def fail() -> None:
        raise KeyError("the short one")

    try:
        fail()
    except KeyError as error:
        failed = failure_record(config, CPU, error)
        expected = "".join(traceback.format_exception(error))
    assert failed["provenance"]["device_count"] == 1
    assert failed["error"] == "KeyError: 'the short one'"
    assert failed["traceback"] == expected
    assert failed["traceback"].startswith("Traceback (most recent call last):\n")
    assert "in fail\n" in failed["traceback"]  # the frames, not the message alone
    try:
        raise ValueError("x" * 5000 + " the end")
    except ValueError as error:
        failed = failure_record(config, CPU, error, world_size=3)
    assert failed["schema"] == SCHEMA and failed["status"] == "failed"
    assert failed["key"] == config.key and failed["config"] == config.to_dict()
    assert failed["data"] is None
    assert failed["provenance"]["device_count"] == 3
    assert failed["provenance"]["device_type"] == "cpu"
    assert failed["error"] == "ValueError: " + "x" * 5000 + " the end"
    assert len(failed["traceback"]) == 4000
    assert failed["traceback"].endswith("x the end\n")


def test_a_result_is_written_whole_and_a_failed_write_says_what_to_do(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    write_result(path, {"status": "ok", "value": math.pi})
    assert json.loads(path.read_text()) == {"status": "ok", "value": math.pi}

    def full_disk(target, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(record_module, "write_json_atomic", full_disk)
    with pytest.raises(StorageError) as caught:
        write_result(path, {"status": "ok", "value": 1.0})
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value).startswith(f"cannot write the result file {path}: the disk is "
                                        "full")
    assert json.loads(path.read_text())["value"] == math.pi  # the earlier file is intact

    def odd_failure(target, data):
        raise OSError("no errno")

    monkeypatch.setattr(record_module, "write_json_atomic", odd_failure)
    with pytest.raises(StorageError) as caught:
        write_result(path, {})
    assert caught.value.errno == errno.EIO
