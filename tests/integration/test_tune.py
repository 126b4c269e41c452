"""``bench tune`` (issue 22, item 3): the same search for every method on validation only,
resumable, shared safely by several processes, pruning clearly worse trials; and
``bench run --tuned``. Scripted curves (tune_fakes.py) stand in for training where the test is
about the study, not the training."""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from bench.commands.main import main
from bench.run.session import Preempted
from bench.tune.study import (HPARAM_PREFIX, LR_RANGES, ValidationTrainer, decode, finished,
                        journal_path, open_study, run_trials, trial_rows, write_study_files)
from core.search import Choice, Range
from datasets import load_dataset
from methods import METHODS
from tune_fakes import REPO, ScriptedTrainer, spec

FAKES = Path(__file__).with_name("tune_fakes.py")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{FAKES.parent}",
            "OMP_NUM_THREADS": "1"}


def _study(out: Path, trials: int) -> optuna.Study:
    s = spec(trials)
    return open_study(s, journal_path(out, s))


def _trials(study: optuna.Study, *states: TrialState) -> list:
    return study.get_trials(deepcopy=False, states=states or None)


def test_every_declared_search_space_lies_inside_its_hyperparameters_ranges():
    for name in METHODS.names():
        cls = METHODS.get(name)
        for key, dim in cls.search_space.items():
            assert key in cls.hparam_spec, f"{name}: {key} is not a hyperparameter"
            spec_ = cls.hparam_spec[key]
            ends = dim.values if isinstance(dim, Choice) else (dim.low, dim.high)
            for value in ends:
                value = int(value) if isinstance(dim, Range) and dim.integer else value
                assert spec_.problem(value) is None, f"{name}.{key}={value}"
    # the methods whose temperature or head the shared optimiser space cannot reach declare it
    for name in ("mtl", "metaoptnet", "r2d2", "protonet"):
        assert METHODS.get(name).search_space


def test_a_trial_s_parameters_decode_into_set_fields_and_hyperparameters():
    settings, hparams = decode({"optimizer": "sgd", "lr_sgd": 0.05, "weight_decay": 5e-4,
                                HPARAM_PREFIX + "scale_init": 10.0})
    assert settings == {"optimizer": "sgd", "lr": 0.05, "weight_decay": 5e-4, "momentum": 0.9,
                        "nesterov": True}
    assert hparams == {"scale_init": 10.0}
    assert LR_RANGES["sgd"].high > LR_RANGES["adam"].high  # SGD's rates are larger


def test_a_study_runs_its_trials_and_writes_the_best(tmp_path):
    s = spec(6)
    storage = journal_path(tmp_path, s)
    assert run_trials(s, storage, ScriptedTrainer(), tmp_path / "lock") == 6
    study = open_study(s, storage)
    assert finished(s, study)
    assert run_trials(s, storage, ScriptedTrainer(), tmp_path / "lock") == 0  # has its trials
    path = write_study_files(s, study, tmp_path, storage)
    data = json.loads(path.read_text())
    complete = _trials(study, TrialState.COMPLETE)
    best = max(complete, key=lambda t: t.value)
    assert data["best"]["trial"] == best.number and data["best"]["val_accuracy"] == best.value
    assert data["best"]["settings"]["lr"] == best.params[f"lr_{best.params['optimizer']}"]
    assert data["study"]["complete"] + data["study"]["pruned"] == 6
    assert data["cost"]["cpu_seconds"] > 0
    rows = (tmp_path / "tuned" / "mtl_glyphs_5w1s.trials.csv").read_text().splitlines()
    assert len(rows) == 7 and rows[0].startswith("number,state,value")


def test_pruning_stops_a_trial_whose_curve_is_clearly_worse(tmp_path):
    s = spec(4)
    study = open_study(s, journal_path(tmp_path, s))
    params = {"optimizer": "adam", "weight_decay": 1e-5, HPARAM_PREFIX + "head_lr_scale": 1.0}
    for lr in (3e-3, 1e-4, 3e-3, 1e-4):  # good, far off, good, far off
        study.enqueue_trial({**params, "lr_adam": lr})
    run_trials(s, journal_path(tmp_path, s), ScriptedTrainer(), tmp_path / "lock")
    trials = sorted(_trials(study), key=lambda t: t.number)
    assert s.unpruned_trials() == 2
    # the first trials run every epoch (they set each rung's bar), however bad
    assert [(t.state, t.last_step) for t in trials[:2]] == [(TrialState.COMPLETE, 9)] * 2
    assert (trials[2].state, trials[2].last_step) == (TrialState.COMPLETE, 9)  # as good
    assert (trials[3].state, trials[3].last_step) == (TrialState.PRUNED, 1)  # stopped at once


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_rerun_trial_keeps_its_place_so_a_first_trial_stays_unpruned(tmp_path):
    """Two processes: the study's second trial (unpruned) was killed while a later one
    finished; its rerun must still run every epoch, though the study has moved on."""
    import socket

    s = spec(5)
    storage = journal_path(tmp_path, s)
    study = open_study(s, storage)
    params = {"optimizer": "adam", "weight_decay": 1e-5, HPARAM_PREFIX + "head_lr_scale": 1.0}
    study.enqueue_trial({**params, "lr_adam": 3e-3})
    study.enqueue_trial({**params, "lr_adam": 1e-4})  # far off: killed at its first epoch
    study.enqueue_trial({**params, "lr_adam": 3e-3})
    run_trials(spec(1), storage, ScriptedTrainer(), tmp_path / "lock")  # trial 0 completes
    killed = study.ask()  # trial 1, left running by a process that is gone
    for key, value in {"host": socket.gethostname(), "pid": _dead_pid(), "pid_start": None,
                       "position": 1}.items():
        killed.set_user_attr(key, value)
    later = study.ask()  # trial 2, finished by another process meanwhile
    later.set_user_attr("position", 2)
    study.tell(later, 90.0)
    run_trials(s, storage, ScriptedTrainer(), tmp_path / "lock")
    [rerun] = [t for t in _trials(study) if t.user_attrs.get("retry_of") == 1]
    assert rerun.user_attrs["position"] == 1 < s.unpruned_trials()
    assert (rerun.state, rerun.last_step) == (TrialState.COMPLETE, 9)  # though far off


class _Broken:
    def __call__(self, config, report):
        raise RuntimeError("a bug in the method")


def test_a_trial_that_raises_fails_once_and_is_not_run_again(tmp_path):
    s = spec(3)
    storage = journal_path(tmp_path, s)
    with pytest.raises(RuntimeError, match="a bug in the method"):
        run_trials(s, storage, _Broken(), tmp_path / "lock")
    [failed] = _trials(open_study(s, storage))
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["error"] == "RuntimeError: a bug in the method"
    run_trials(s, storage, ScriptedTrainer(), tmp_path / "lock")  # the rerun goes on
    study = open_study(s, storage)
    assert len(_trials(study, TrialState.COMPLETE, TrialState.PRUNED)) == 3
    assert not any(t.user_attrs.get("retry_of") == failed.number for t in _trials(study))
    rows = trial_rows(study)
    assert [r["error"] for r in rows if r["state"] == "FAIL"] == [
        "RuntimeError: a bug in the method"]


def _run_fake(out: Path, trials: int, sleep: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(FAKES), str(out), str(trials), str(sleep)],
                            env=_env(), cwd=REPO)


def test_a_killed_study_resumes_with_the_same_trials_and_best(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run_trials(spec(5), journal_path(whole, spec(5)), ScriptedTrainer(), whole / "lock")
    process = _run_fake(killed, 5, sleep=0.2)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it in the middle of its third trial
        if (killed / "log").is_dir() and len(list((killed / "log").iterdir())) >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    study = _study(killed, 5)
    assert _trials(study, TrialState.RUNNING), "the kill left no trial midway"
    assert _run_fake(killed, 5).wait() == 0
    study = _study(killed, 5)
    assert len(_trials(study, TrialState.FAIL)) == 1  # the killed trial, run again
    reference = _study(whole, 5)

    def outcome(s: optuna.Study) -> list:
        return [(t.params, t.state, t.value) for t in sorted(
            _trials(s, TrialState.COMPLETE, TrialState.PRUNED), key=lambda t: t.number)]

    assert outcome(study) == outcome(reference)
    assert study.best_trial.params == reference.best_trial.params


class _StoppedOnSecondTrial(ScriptedTrainer):
    """Its second trial is stopped by a signal after one epoch (as TrainSession raises it)."""

    def __init__(self) -> None:
        super().__init__()
        self.trials = 0

    def __call__(self, config, report):
        self.trials += 1
        if self.trials == 2:
            report(1, 50.0)
            raise Preempted("stopped by SIGTERM after step 50 (epoch 1)")
        return super().__call__(config, report)


def test_a_trial_stopped_by_a_signal_stays_running_so_the_next_run_reruns_it(tmp_path):
    # seen on the Omniglot sweep: a SIGTERM'd trial was marked failed, so no rerun was queued
    storage = journal_path(tmp_path, spec(3))
    with pytest.raises(Preempted):
        run_trials(spec(3), storage, _StoppedOnSecondTrial(), tmp_path / "lock")
    study = _study(tmp_path, 3)
    stopped = _trials(study, TrialState.RUNNING)
    assert [t.number for t in stopped] == [1] and "error" not in stopped[0].user_attrs
    assert not _trials(study, TrialState.FAIL)


def test_two_processes_on_one_journal_never_run_one_trial_twice(tmp_path):
    first, second = _run_fake(tmp_path, 8, 0.02), _run_fake(tmp_path, 8, 0.02)
    assert first.wait() == 0 and second.wait() == 0
    study = _study(tmp_path, 8)
    done = _trials(study, TrialState.COMPLETE, TrialState.PRUNED)
    assert len(done) == 8 and len(_trials(study)) == 8  # no more trials than the budget
    logs = list((tmp_path / "log").iterdir())
    assert len(logs) == 8  # one start per trial: none ran twice
    assert len({p.name.split("-", 1)[1] for p in logs}) == 8  # eight different proposals


class _Untouchable:
    """A split that fails the test on any use."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str):
        raise AssertionError(f"tuning read the {self._name} split ({attribute})")


def test_tuning_trains_and_validates_without_opening_the_test_split(tmp_path):
    dataset = copy.copy(load_dataset("glyphs"))  # the loader caches its dataset: a copy
    object.__setattr__(dataset, "test", _Untouchable("test"))  # (a frozen dataclass)
    s = spec(2)
    storage = journal_path(tmp_path, s)
    trainer = ValidationTrainer(dataset, __import__("torch").device("cpu"))
    import dataclasses

    from core.budget import with_settings

    short = dataclasses.replace(s, base=dataclasses.replace(
        s.base, budget=with_settings(s.base.budget, {"epochs": 1, "steps_per_epoch": 2,
                                                     "val_episodes": 3})))
    run_trials(short, journal_path(tmp_path, short), trainer, tmp_path / "lock")
    study = open_study(short, journal_path(tmp_path, short))
    assert len(_trials(study, TrialState.COMPLETE, TrialState.PRUNED)) == 2
    assert all(0 <= t.value <= 100 for t in _trials(study, TrialState.COMPLETE))


def test_bench_tune_then_bench_run_tuned_on_glyphs(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--methods", "protonet", "--dataset", "glyphs", "--budget", "smoke",
            "--set", "val_episodes=5", "--set", "steps_per_epoch=2"]
    assert main(["tune", *args, "--trials", "3", "--out", str(out)]) == 0
    tuned = out / "tuned" / "protonet_glyphs_5w1s.json"
    data = json.loads(tuned.read_text())
    assert data["study"]["trials"] == 3 and data["budget"] == "smoke"
    assert set(data["best"]["hparams"]) == {"scale_init"}
    assert main(["run", *args, "--shots", "1", "--episodes", "10", "--tuned", str(out / "tuned"),
                 "--out", str(out), "--no-progress", "--no-save-model"]) == 0
    [result] = (out / "runs").glob("protonet_*.json")
    budget = json.loads(result.read_text())["config"]["budget"]
    assert budget["optimizer"] == data["best"]["settings"]["optimizer"]
    assert budget["lr"] == data["best"]["settings"]["lr"]
    assert budget["hparams"]["scale_init"] == data["best"]["hparams"]["scale_init"]
    # the table shows what tuning cost next to the tuned run's cost
    assert main(["table", str(out)]) == 0
    tuning = (out / "tuning.csv").read_text().splitlines()
    assert tuning[0].startswith("method,dataset,ways,shots,budget,trials,tuning_cpu_hours")
    row = tuning[1].split(",")
    assert row[:6] == ["protonet", "glyphs", "5", "1", "smoke", "3"] and row[7] == "1"
    assert float(row[6]) == pytest.approx(data["cost"]["cpu_hours"], rel=1e-4)
    capsys.readouterr()
    # another study setup at the same name is refused before anything runs
    assert main(["tune", *args, "--trials", "3", "--seed", "1", "--out", str(out)]) == 2
    assert "another setup" in capsys.readouterr().err
    # a run without a tuned file of its own is refused, and a broken file is data, not a crash
    assert main(["run", "--methods", "mtl", "--dataset", "glyphs", "--budget", "smoke",
                 "--tuned", str(out / "tuned"), "--out", str(out)]) == 2
    assert "no tuned file for mtl on glyphs 5-way 1-shot" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "bridgebench.tuned/1", "method": "protonet"}')
    assert main(["run", "--methods", "protonet", "--dataset", "glyphs", "--budget", "smoke",
                 "--tuned", str(bad), "--out", str(out)]) == 2
    assert "missing or malformed fields" in capsys.readouterr().err
