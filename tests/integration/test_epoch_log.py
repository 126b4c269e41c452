"""Issue 27, item 4: ``--log tensorboard,csv`` writes each run's per-epoch training loss,
validation accuracy, learning rate and cumulative device-hours under <out>/logs/<key>/, read
back here with TensorBoard's own reader; it changes no number and no identity, and a run
stopped mid-epoch (SIGTERM) and resumed from its checkpoint logs the curves of one
uninterrupted run."""
import csv
import os
import signal
from dataclasses import replace

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import bench.run.session as session
from bench.commands.main import main
from bench.run.epoch_log import (CSV_FILE, TENSORBOARD_TAGS, EpochNumbers, log_folder,
                             open_epoch_logs)
from bench.store.results import read_result, result_path
from bench.run.session import Preempted
from bench.sweep.runs import run_sweep
from datasets import load_dataset

from smoke_model_runs import smoke_model_configs  # beside this file (pytest puts it on sys.path)

STOP_AT_STEP = 8  # epoch 2 (5 steps per epoch), 3 of its steps done


def _rows(folder):
    with open(folder / CSV_FILE, newline="") as handle:
        return list(csv.DictReader(handle))


def _scalars(folder):
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """The smoke_models ProtoNet run with --log tensorboard,csv, stopped by SIGTERM in its
    second epoch and rerun (resumed from its checkpoint); with every step's loss."""
    config = replace(smoke_model_configs()[1], log=("tensorboard", "csv"))
    out = tmp_path_factory.mktemp("logged")
    glyphs = {"glyphs": load_dataset("glyphs")}
    losses = []
    original = session.parallel_train_step

    def step(*args, **kwargs):
        if len(losses) + 1 == STOP_AT_STEP and len(losses) < STOP_AT_STEP:
            os.kill(os.getpid(), signal.SIGTERM)  # the loop stops after this step
        result = original(*args, **kwargs)
        losses.append(result.loss)
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(session, "parallel_train_step", step)
        with pytest.raises(Preempted):
            run_sweep([config], glyphs, torch.device("cpu"), out, progress=False)
        assert len(losses) == STOP_AT_STEP  # epoch 1 logged, epoch 2 not finished
        assert [r["epoch"] for r in _rows(log_folder(out, config.key))] == ["1"]
        summary = run_sweep([config], glyphs, torch.device("cpu"), out, progress=False)
    assert summary.finished == [config.key] and len(losses) == 10
    return config, out, losses


def test_logging_changes_no_number_and_no_identity(resumed, smoke_models):
    config, out, _ = resumed
    plain = smoke_model_configs()[1]
    assert config.key == plain.key and config.settings() == plain.settings()
    logged, unlogged = (read_result(result_path(folder, plain.key))
                        for folder in (out, smoke_models))
    assert logged["config"]["log"] == ["tensorboard", "csv"] and "log" not in unlogged["config"]
    assert logged["timings"]["resumes"] == 1
    for protocol in ("unified", "native"):
        assert logged["test"][protocol]["accuracies"] == unlogged["test"][protocol]["accuracies"]
    assert logged["selection"] == unlogged["selection"]


def test_the_csv_holds_each_epochs_numbers_across_the_resume(resumed):
    config, out, losses = resumed
    rows = _rows(log_folder(out, config.key))
    curve = read_result(result_path(out, config.key))["learning_curve"]
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for row, point, epoch_losses in zip(rows, curve, (losses[:5], losses[5:])):
        assert float(row["train_loss"]) == pytest.approx(sum(epoch_losses) / 5, rel=1e-12)
        assert float(row["val_accuracy"]) == point["val_accuracy"]
        assert int(row["steps"]) == point["steps"] and float(row["lr"]) == config.budget.lr
        assert float(row["train_device_hours"]) == pytest.approx(point["train_seconds"] / 3600)
        assert float(row["run_device_hours"]) >= float(row["train_device_hours"]) > 0
        assert row["test_accuracy"] == ""


def test_tensorboards_reader_reads_the_same_curves(resumed):
    config, out, _ = resumed
    folder = log_folder(out, config.key)
    scalars, rows = _scalars(folder), _rows(folder)
    assert set(scalars) == {tag for name, tag in TENSORBOARD_TAGS.items()
                            if name != "test_accuracy"}
    for name, tag in TENSORBOARD_TAGS.items():
        if name == "test_accuracy":
            continue
        assert [step for step, _ in scalars[tag]] == [1, 2]
        assert [value for _, value in scalars[tag]] == pytest.approx(
            [float(r[name]) for r in rows], rel=1e-6)


def test_a_new_logger_replaces_what_was_logged_from_its_first_epoch_on(tmp_path):
    def numbers(epoch, loss):
        return EpochNumbers(epoch, loss, 50.0, 0.1, epoch / 10, epoch / 5, epoch * 5,
                            epoch * 50, 60.0 if epoch == 2 else None)

    first = open_epoch_logs(["tensorboard", "csv"], tmp_path)
    for epoch in (1, 2, 3):
        first.log_epoch(numbers(epoch, 1.0))
    first.close()
    again = open_epoch_logs(["csv", "tensorboard"], tmp_path)  # resumed after epoch 1
    again.log_epoch(numbers(2, 0.5))
    again.close()
    assert [(r["epoch"], r["train_loss"], r["test_accuracy"]) for r in _rows(tmp_path)] == \
        [("1", "1.0", ""), ("2", "0.5", "60.0")]
    scalars = _scalars(tmp_path)
    assert scalars["train/loss"] == [(1, 1.0), (2, 0.5)]
    assert scalars["test/accuracy"] == [(2, 60.0)]


def test_a_missing_tensorboard_is_one_error_before_anything_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torch.utils.tensorboard", None)
    code = main(["run", "--methods", "mtl", "--dataset", "glyphs", "--log", "tensorboard",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and not (tmp_path / "out").exists()
    assert err[0].startswith("error: --log tensorboard needs the tensorboard package")
    assert "pip install 'bridgebench[tensorboard]'" in err[0]
