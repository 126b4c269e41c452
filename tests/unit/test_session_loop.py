"""The training loop around model selection (bench.run.session): ``TrainSession.run`` (every
epoch's steps, validation, a checkpoint after every epoch, a stop at the next step boundary
on SIGTERM or Ctrl-C, then :class:`Preempted` with a message that says where), the
checkpoint (``state_dict``/``load_state_dict``, :class:`RunCheckpoint`), resuming
(``_resume``, ``train``: a resumed run ends exactly where an uninterrupted one ends) and the
stop signals' handlers. Real smoke-budget ProtoNet steps on glyphs (milliseconds each) with a
scripted validation curve; a signal is delivered by calling the handler the loop installed,
never by sending it to the test process."""
from __future__ import annotations

import math
import random
import re
import signal
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

import bench.run.session as session_module
from bench.common.config import RunConfig, resolve_budget
from bench.common.timing import SectionTimer
from bench.run.distributed import Parallel
from bench.run.session import (Preempted, RunCheckpoint, StopNow, StopSignal,
                               StopSignalHandlers, TrainSession, _cpu_state, _resume,
                               signal_label, train)
from bench.run.training import StepResult, build_training
from bench.store.checkpoint import (CHECKPOINT_FORMAT, CheckpointError, check_compatible,
                                    load_checkpoint, normalized_config, save_checkpoint)
from datasets import load_dataset

IDENTITY = {"name": "glyphs", "source": "built-in", "fingerprint": "f" * 64}
VAL = {1: 50.0, 2: 60.0, 3: 55.0}
"""The scripted validation accuracy of each epoch: epoch 2 is the best, the last is not."""
IMAGES = 50
"""Images of one smoke step: a meta-batch of 2 tasks of 5 ways x (2 shots + 3 queries)."""
SECONDS = ("train_seconds", "run_seconds")


@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs")


def scripted_validation(self: TrainSession) -> float:
    return VAL[self.outcome.epochs + 1]


@pytest.fixture(autouse=True)
def scripted(monkeypatch):
    """Every session here (also those ``train`` builds) validates on the scripted curve."""
    monkeypatch.setattr(TrainSession, "validate", scripted_validation)


def make_config(**budget_changes: Any) -> RunConfig:
    budget = replace(resolve_budget("smoke", "protonet", "glyphs", 1),
                     **{"epochs": 3, **budget_changes})
    return RunConfig("protonet", "glyphs", 5, 1, 0, budget, episodes=20)


def make_session(glyphs, config: RunConfig | None = None) -> TrainSession:
    config = config or make_config()
    device = torch.device("cpu")
    return TrainSession(build_training(config, glyphs, device), glyphs, config, device)


def checkpoint_for(session: TrainSession, folder: Path,
                   parallel: Parallel = Parallel()) -> RunCheckpoint:
    return RunCheckpoint(folder / f"{session.config.key}.pt", session.config, IDENTITY,
                         parallel)


class Steps:
    """Stands in for ``parallel_train_step``: the real step, and during step ``signal_at``
    (counted from 1 over this object's life) the stop signal ``signum`` delivered to the
    handler the loop installed, as the signal would be; or (``vote_at``) a step whose
    result says another process voted to stop. Records the stop vote each step was given."""

    def __init__(self, real) -> None:
        self.real, self.votes = real, []
        self.signal_at: int | None = None
        self.vote_at: int | None = None
        self.signum = signal.SIGTERM

    def __call__(self, *args: Any) -> StepResult:
        self.votes.append(args[-1])
        if len(self.votes) == self.signal_at:
            handler = signal.getsignal(self.signum)
            assert isinstance(getattr(handler, "__self__", None), StopSignal), handler
            handler(self.signum, None)
        result = self.real(*args)
        if len(self.votes) == self.vote_at:
            return replace(result, stop=True)
        return result


@pytest.fixture
def steps(monkeypatch) -> Steps:
    recorder = Steps(session_module.parallel_train_step)
    monkeypatch.setattr(session_module, "parallel_train_step", recorder)
    return recorder


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Equal values, tensors compared exactly, NaN equal to NaN."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: {set(a) ^ set(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def where_it_ended(s: TrainSession) -> dict[str, Any]:
    """What an uninterrupted and a resumed run must agree on (the clock excepted)."""
    o = s.outcome
    return {"model": s.method.state_dict(), "optimizer": s.optimizer.state_dict(),
            "sampler": s.sampler.state_dict(), "best": o.best_state,
            "selection": (o.best_epoch, o.best_val, o.val_curve, s.since_best),
            "position": (o.epochs, o.steps, o.images_seen, s.step_in_epoch, s.finished,
                         s.epoch_loss),
            "curve": [{k: v for k, v in p.items() if k not in SECONDS} for p in o.curve],
            "rng": torch.get_rng_state()}


@pytest.fixture(scope="module")
def uninterrupted(glyphs):
    """One run of three epochs, never stopped, no checkpoint: (session, outcome, timer,
    where it ended)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TrainSession, "validate", scripted_validation)
        s, timer = make_session(glyphs), SectionTimer("cpu")
        outcome = s.run(timer, progress=False)
        return s, outcome, timer, where_it_ended(s)


def stop_message(key: str, label: str, step: int, epoch: int, where: str) -> str:
    return (f"{key}: stopped by {label} after step {step} (epoch {epoch}); {where}. Rerun the "
            "same command to resume.")


# ---------------------------------------------------------------------------- the loop

def test_an_uninterrupted_run_trains_every_epoch_and_keeps_the_best(uninterrupted):
    s, outcome, timer, _ = uninterrupted
    assert outcome is s.outcome and s.finished
    assert (outcome.epochs, outcome.steps, outcome.images_seen) == (3, 15, 15 * IMAGES)
    assert (outcome.best_epoch, outcome.best_val, outcome.val_curve) == (2, 60.0,
                                                                         [50.0, 60.0, 55.0])
    assert outcome.resumes == 0 and [p["epoch"] for p in outcome.curve] == [1, 2, 3]
    assert [p["steps"] for p in outcome.curve] == [5, 10, 15]
    assert "checkpoint" not in timer.seconds  # checkpoints off: none written, none timed


def test_run_saves_a_checkpoint_after_every_epoch(glyphs, tmp_path, uninterrupted):
    s = make_session(glyphs)
    checkpoint = checkpoint_for(s, tmp_path)
    saved, real_save = [], checkpoint.save
    checkpoint.save = lambda payload: saved.append(payload["progress"]) or real_save(payload)
    timer = SectionTimer("cpu")
    handlers = {n: signal.getsignal(n) for n in StopSignal.SIGNALS}
    outcome = s.run(timer, progress=False, checkpoint=checkpoint)
    assert [(p["epochs"], p["step_in_epoch"], p["steps"], p["finished"]) for p in saved] == \
        [(1, 0, 5, False), (2, 0, 10, False), (3, 0, 15, True)]
    assert timer.seconds["checkpoint"] > 0  # writing them is timed, apart
    assert {n: signal.getsignal(n) for n in StopSignal.SIGNALS} == handlers  # restored
    on_disk = load_checkpoint(checkpoint.path)
    assert {k: on_disk[k] for k in ("key", "config", "dataset", "world_size")} == \
        checkpoint.header()
    assert on_disk["format"] == CHECKPOINT_FORMAT and on_disk["progress"] == saved[-1]
    assert outcome is s.outcome
    assert_same(where_it_ended(s), uninterrupted[3])


def test_ctrl_c_mid_epoch_checkpoints_at_the_step_boundary_and_resume_ends_the_same(
        glyphs, tmp_path, steps, uninterrupted):
    s = make_session(glyphs)
    checkpoint = checkpoint_for(s, tmp_path)
    handlers = {n: signal.getsignal(n) for n in StopSignal.SIGNALS}
    steps.signal_at, steps.signum = 7, signal.SIGINT  # Ctrl-C in the second step of epoch 2
    with pytest.raises(Preempted) as stopped:
        s.run(SectionTimer("cpu"), progress=False, checkpoint=checkpoint)
    assert str(stopped.value) == stop_message(s.config.key, "Ctrl-C (SIGINT)", 7, 2,
                                              f"checkpoint saved to {checkpoint.path}")
    assert stopped.value.signum == signal.SIGINT
    assert {n: signal.getsignal(n) for n in StopSignal.SIGNALS} == handlers
    assert steps.votes == [False] * 7  # the signal came during step 7, after its vote
    progress = load_checkpoint(checkpoint.path)["progress"]
    assert (progress["epochs"], progress["step_in_epoch"], progress["steps"]) == (1, 2, 7)
    steps.signal_at = None
    resumed, timer = make_session(glyphs), SectionTimer("cpu")
    _resume(resumed, checkpoint, timer)
    assert (resumed.outcome.steps, resumed.step_in_epoch) == (7, 2)
    outcome = resumed.run(timer, progress=False, checkpoint=checkpoint)
    assert outcome.resumes == 1 and len(steps.votes) == 7 + 8
    assert_same(where_it_ended(resumed), uninterrupted[3])


def test_a_signal_in_an_epochs_last_step_stops_after_its_validation_and_train_resumes(
        glyphs, tmp_path, steps, uninterrupted):
    s = make_session(glyphs)
    checkpoint = checkpoint_for(s, tmp_path)
    steps.signal_at, steps.signum = 5, signal.SIGINT
    with pytest.raises(Preempted) as stopped:
        s.run(SectionTimer("cpu"), progress=False, checkpoint=checkpoint)
    assert str(stopped.value) == stop_message(s.config.key, "Ctrl-C (SIGINT)", 5, 2,
                                              f"checkpoint saved to {checkpoint.path}")
    assert stopped.value.signum == signal.SIGINT
    saved = load_checkpoint(checkpoint.path)
    assert (saved["progress"]["epochs"], saved["progress"]["step_in_epoch"]) == (1, 0)
    assert saved["best"]["val_curve"] == [50.0]  # epoch 1 was validated before the stop
    steps.signal_at = None
    timer = SectionTimer("cpu")
    training = build_training(s.config, glyphs, torch.device("cpu"))
    outcome = train(training, glyphs, s.config, torch.device("cpu"), timer, progress=False,
                    checkpoint=checkpoint)
    assert outcome.resumes == 1 and len(steps.votes) == 5 + 10 and timer.seconds["resume"] > 0
    assert load_checkpoint(checkpoint.path)["progress"]["finished"]
    ended = uninterrupted[3]
    assert_same(training.method.state_dict(), ended["model"])
    assert_same(outcome.best_state, ended["best"])
    assert (outcome.best_epoch, outcome.best_val, outcome.val_curve) == ended["selection"][:3]
    assert (outcome.epochs, outcome.steps, outcome.images_seen) == ended["position"][:3]


def test_another_process_vote_stops_with_sigterm_and_without_checkpoints_says_so(
        glyphs, steps):
    s = make_session(glyphs)
    steps.vote_at = 2  # no signal here: another process was asked to stop
    timer = SectionTimer("cpu")
    with pytest.raises(Preempted) as stopped:
        s.run(timer, progress=False)
    assert str(stopped.value) == stop_message(s.config.key, "SIGTERM", 2, 1,
                                              "no checkpoint (checkpoints are off)")
    assert stopped.value.signum == signal.SIGTERM and "checkpoint" not in timer.seconds


def test_a_finished_checkpoint_is_not_trained_again(glyphs, tmp_path, steps, uninterrupted):
    s, _, _, ended = uninterrupted
    fresh = make_session(glyphs)
    checkpoint = checkpoint_for(fresh, tmp_path)
    checkpoint.save(s.state_dict(SectionTimer("cpu")))
    timer = SectionTimer("cpu")
    _resume(fresh, checkpoint, timer)
    outcome = fresh.run(timer, progress=False, checkpoint=checkpoint)
    assert steps.votes == [] and outcome.resumes == 1
    assert_same({k: v for k, v in where_it_ended(fresh).items() if k != "rng"},
                {k: v for k, v in ended.items() if k != "rng"})


# ---------------------------------------------------------------------------- the checkpoint

def stopped_session(glyphs, steps: Steps, at: int = 7) -> TrainSession:
    """A session stopped by SIGTERM during step ``at`` (checkpoints off)."""
    s = make_session(glyphs)
    steps.signal_at = at
    with pytest.raises(Preempted):
        s.run(SectionTimer("cpu"), progress=False)
    steps.signal_at = None
    return s


def test_state_dict_holds_the_whole_position_and_load_state_dict_restores_it(glyphs, steps,
                                                                            tmp_path):
    a = stopped_session(glyphs, steps)
    torch.manual_seed(11), np.random.seed(12), random.seed(13)
    a.augment.manual_seed(14)
    timer = SectionTimer("cpu")
    timer.seconds.update(train=3.0, first_step=0.5, validation=1.0, resume=0.25)
    state = a.state_dict(timer)
    o = a.outcome
    assert state["progress"] == {"epochs": 1, "step_in_epoch": 2, "steps": 7,
                                 "images_seen": 7 * IMAGES, "since_best": 0,
                                 "finished": False, "resumes": 0,
                                 "epoch_loss": a.epoch_loss}
    assert a.epoch_loss > 0  # the two steps' losses of epoch 2
    assert_same(state["best"], {"state": o.best_state, "epoch": 1, "val": 50.0,
                                "val_curve": [50.0]})
    assert state["curve"] == o.curve and state["curve"][0] is not o.curve[0]
    assert state["timings"] == {"train": 3.0, "first_step": 0.5, "validation": 1.0,
                                "resume": 0.25}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", state["saved_at"])
    assert_same(state["model"], a.method.state_dict())
    assert_same(state["optimizer"], a.optimizer.state_dict())
    assert_same(state["schedule"], a.schedule.state_dict())
    assert_same(state["sampler"], a.sampler.state_dict())
    assert len(state["rng"]) == 1
    assert torch.equal(state["rng"][0]["torch_cpu"], torch.get_rng_state())
    assert torch.equal(state["rng"][0]["augment"], a.augment.get_state())

    # through a file, as a checkpoint goes (the payload holds the optimiser's live tensors)
    save_checkpoint(tmp_path / "run.pt", state)
    written = load_checkpoint(tmp_path / "run.pt")
    b = make_session(glyphs)  # fresh: other weights, optimiser, sampler and random states
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    later = SectionTimer("cpu")
    later.seconds["stale"] = 9.0
    b.load_state_dict(written, later)
    assert dict(later.seconds) == state["timings"]  # replaced, not added to
    again = b.state_dict(later)
    assert again["progress"] == {**state["progress"], "resumes": 1}
    assert again["progress"]["epoch_loss"] == a.epoch_loss
    for part in ("model", "optimizer", "schedule", "sampler", "rng", "best", "curve",
                 "timings"):
        assert_same(again[part], state[part], part)
    assert b.outcome.curve is not o.curve and b.outcome.val_curve is not o.val_curve
    # the next step of the resumed session is the next step of the one it came from
    step = session_module.parallel_train_step.real
    results = [step(s.method, s.optimizer, s.train_loader, s.sampler,
                    s.config.budget.meta_batch) for s in (a, b)]
    assert results[0] == results[1]
    assert_same(a.method.state_dict(), b.method.state_dict())
    assert torch.equal(a.augment.get_state(), b.augment.get_state())


def test_a_checkpoint_from_before_curves_and_epoch_losses_still_loads(glyphs, steps):
    a = stopped_session(glyphs, steps, at=2)
    state = a.state_dict(SectionTimer("cpu"))
    del state["progress"]["epoch_loss"]
    state["curve"] = None
    b = make_session(glyphs)
    b.load_state_dict(state, SectionTimer("cpu"))
    assert b.outcome.curve is None and math.isnan(b.epoch_loss)
    assert b.state_dict(SectionTimer("cpu"))["curve"] is None
    del state["curve"]
    b.load_state_dict(state, SectionTimer("cpu"))
    assert b.outcome.curve is None and b.outcome.resumes == 1


def test_run_checkpoint_header_save_load_and_discard(tmp_path):
    config = make_config()
    checkpoint = RunCheckpoint(str(tmp_path / "run.pt"), config, IDENTITY)
    assert checkpoint.path == tmp_path / "run.pt" and isinstance(checkpoint.path, Path)
    assert (checkpoint.config, checkpoint.identity) == (config, IDENTITY)
    assert checkpoint.parallel == Parallel()
    assert checkpoint.load() is None  # no file: nothing to resume
    header = {"key": config.key, "config": normalized_config(config.to_dict()),
              "dataset": IDENTITY, "world_size": 1}
    assert checkpoint.header() == header
    checkpoint.save({"progress": {"epochs": 2}})
    assert checkpoint.load() == {"format": CHECKPOINT_FORMAT, **header,
                                 "progress": {"epochs": 2}}
    checkpoint.discard()
    assert not checkpoint.path.exists()
    checkpoint.discard()  # nothing left to discard: no error
    two = RunCheckpoint(tmp_path / "run.pt", config, IDENTITY, Parallel(0, 2))
    assert two.header() == {**header, "world_size": 2}


def refusal(path: Path, payload: dict, config: RunConfig) -> str:
    """The message :func:`check_compatible` refuses ``payload`` with, for a one-process run of
    ``config`` on :data:`IDENTITY`."""
    with pytest.raises(CheckpointError) as refused:
        check_compatible(path, payload, key=config.key, config=config.to_dict(),
                         identity=IDENTITY, world_size=1)
    return str(refused.value)


@pytest.mark.parametrize("written_by", ["another run", "another dataset",
                                        "two processes", "a corrupt file"])
def test_run_checkpoint_load_refuses_what_it_cannot_resume(tmp_path, written_by):
    config = make_config()
    path = tmp_path / "run.pt"
    mine = RunCheckpoint(path, config, IDENTITY)
    if written_by == "another run":
        RunCheckpoint(path, make_config(lr=0.5), IDENTITY).save({})
    elif written_by == "another dataset":
        RunCheckpoint(path, config, {**IDENTITY, "fingerprint": "0" * 64}).save({})
    elif written_by == "two processes":
        RunCheckpoint(path, config, IDENTITY, Parallel(0, 2)).save({})
    else:
        path.write_bytes(b"not a checkpoint")
    if written_by == "a corrupt file":
        with pytest.raises(CheckpointError) as expected:
            load_checkpoint(path)
        expected_message = str(expected.value)
    else:
        expected_message = refusal(path, load_checkpoint(path), config)
    with pytest.raises(CheckpointError) as refused:
        mine.load()
    assert str(refused.value) == expected_message


def test_only_rank_0_touches_the_file_and_the_others_get_its_payload(tmp_path, monkeypatch):
    config = make_config()
    path = tmp_path / "run.pt"
    RunCheckpoint(path, config, IDENTITY).save({"progress": {"epochs": 1}})
    before = path.read_bytes()
    sent = []
    monkeypatch.setattr(session_module, "broadcast_object",
                        lambda obj, parallel: sent.append(obj) or rank_0)
    other = RunCheckpoint(path, config, IDENTITY, Parallel(1, 2, 1))
    rank_0 = ({"progress": {"epochs": 1}}, None)
    assert other.load() == {"progress": {"epochs": 1}}
    assert sent == [(None, None)]  # rank 1 read nothing itself
    rank_0 = (None, "run.pt: refused on rank 0")
    with pytest.raises(CheckpointError, match="^run.pt: refused on rank 0$"):
        other.load()
    other.save({"progress": {"epochs": 5}})
    other.discard()
    assert path.read_bytes() == before  # neither written nor removed by rank 1


# ---------------------------------------------------------------------------- resuming

def test_resume_without_a_checkpoint_file_changes_nothing(glyphs, tmp_path, capsys):
    s = make_session(glyphs)
    timer = SectionTimer("cpu")
    _resume(s, checkpoint_for(s, tmp_path), timer)
    assert dict(timer.seconds) == {} and s.outcome.resumes == 0 and s.outcome.steps == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("finished", [False, True])
def test_resume_adds_its_seconds_and_says_where_it_continues(glyphs, tmp_path, steps,
                                                             monkeypatch, capsys, finished):
    a = stopped_session(glyphs, steps)
    checkpoint = checkpoint_for(a, tmp_path)
    payload = a.state_dict(SectionTimer("cpu"))
    payload["timings"] = {"train": 2.0, "first_step": 0.5, "validation": 1.0, "resume": 5.0}
    payload["progress"]["finished"] = finished
    checkpoint.save(payload)
    clock = iter([100.0, 102.5])
    monkeypatch.setattr(session_module, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    capsys.readouterr()
    b, timer = make_session(glyphs), SectionTimer("cpu")
    _resume(b, checkpoint, timer)
    assert dict(timer.seconds) == {"train": 2.0, "first_step": 0.5, "validation": 1.0,
                                   "resume": 7.5}
    assert (b.outcome.resumes, b.outcome.steps, b.finished) == (1, 7, finished)
    where = "training had finished; testing" if finished else "epoch 2, step 3"
    assert capsys.readouterr().out == (
        f"resumed {a.config.key} from {checkpoint.path} ({where}; 7 steps and 2.5 s of "
        "training already done) in 2.50 s\n")


def epoch_line(key: str) -> str:
    """What the end of epoch 1 prints with progress on."""
    return f"{key}: epoch 1 val 50.00% (best 50.00% at epoch 1)\n"


def test_train_passes_its_options_to_the_session(glyphs, monkeypatch, capsys):
    """``train`` hands the session its training, process group and epoch log; without a
    checkpoint nothing is resumed. Two processes, this one rank 0, with the collectives and
    the step scripted (each process counts its own device time: twice the seconds)."""
    config = make_config(epochs=1)
    training = build_training(config, glyphs, torch.device("cpu"))
    given = []
    monkeypatch.setattr(session_module, "parallel_train_step",
                        lambda *a: given.append((a[0], a[6])) or StepResult(1.0, 7, False))
    monkeypatch.setattr(session_module, "gather_objects", lambda obj, parallel: [obj, False])
    monkeypatch.setattr(session_module, "max_over_ranks", lambda value, parallel: value)
    logged, parallel, timer = [], Parallel(0, 2), SectionTimer("cpu")
    outcome = train(training, glyphs, config, torch.device("cpu"), timer, parallel=parallel,
                    epoch_log=SimpleNamespace(log_epoch=logged.append))
    assert given == [(training.method, parallel)] * 5
    assert (outcome.epochs, outcome.steps, outcome.images_seen, outcome.resumes) == (1, 5, 35,
                                                                                    0)
    assert "resume" not in timer.seconds
    (numbers,) = logged
    point = outcome.curve[0]
    assert numbers.epoch == 1 and numbers.train_loss == 1.0
    assert numbers.train_device_hours == point["train_seconds"] * 2 / 3600
    assert numbers.run_device_hours == point["run_seconds"] * 2 / 3600
    assert capsys.readouterr().out == epoch_line(config.key)


def test_progress_shows_the_bar_and_the_epoch_lines_only_when_asked(glyphs, capsys):
    config = make_config(epochs=1)
    make_session(glyphs, config).run(SectionTimer("cpu"))  # progress by default
    shown = capsys.readouterr()
    assert f"{config.key} epoch 1" in shown.err  # the bar of the epoch's steps
    assert shown.out == epoch_line(config.key)
    make_session(glyphs, config).run(SectionTimer("cpu"), progress=False)
    assert capsys.readouterr() == ("", "")


# ---------------------------------------------------------------------------- signals

def test_signal_labels():
    assert signal_label(signal.SIGINT) == "Ctrl-C (SIGINT)"
    assert signal_label(signal.SIGTERM) == "SIGTERM"
    assert signal_label(int(signal.SIGHUP)) == "SIGHUP"


def test_preempted_carries_its_message_and_signal():
    assert str(Preempted("stopped")) == "stopped"
    assert Preempted("stopped").signum == signal.SIGTERM
    assert Preempted("stopped", signal.SIGINT).signum == signal.SIGINT


def test_the_first_signal_asks_to_stop_the_second_stops_at_once_and_exit_restores():
    def before(signum, frame):  # a handler of the caller's, restored on exit
        raise AssertionError("not this one")

    previous = signal.signal(signal.SIGTERM, before)
    interrupt = signal.getsignal(signal.SIGINT)
    try:
        stop = StopSignal()
        assert (stop.requested, stop.signum) == (False, signal.SIGTERM)
        with stop as entered:
            assert entered is stop
            assert [signal.getsignal(n) for n in StopSignal.SIGNALS] == [stop._handle] * 2
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
            assert (stop.requested, stop.signum) == (True, signal.SIGINT)
            with pytest.raises(StopNow) as now:
                signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
            assert str(now.value) == "second SIGTERM: stopped at once"
        assert signal.getsignal(signal.SIGTERM) is before
        assert signal.getsignal(signal.SIGINT) is interrupt
    finally:
        signal.signal(signal.SIGTERM, previous)
    with pytest.raises(NotImplementedError):
        StopSignalHandlers()._handle(signal.SIGTERM, None)


def test_outside_the_main_thread_no_handler_is_installed():
    seen, errors = [], []

    def in_a_thread() -> None:
        try:
            with StopSignal() as stop:
                seen.append(signal.getsignal(signal.SIGTERM) == stop._handle)
        except Exception as exc:  # noqa: BLE001 (reported to the test below)
            errors.append(exc)

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert errors == [] and seen == [False]


def test_any_rank_asks_every_process(glyphs, monkeypatch):
    s = make_session(glyphs)
    assert s._any_rank(1) is True and s._any_rank(0) is False
    votes = []
    monkeypatch.setattr(session_module, "gather_objects",
                        lambda flag, parallel: votes.append((flag, parallel)) or [flag, True])
    s.parallel = Parallel(0, 2)
    assert s._any_rank(0) is True
    assert votes == [(False, Parallel(0, 2))] and type(votes[0][0]) is bool


def test_cpu_state_is_a_copy_of_the_weights_and_extra_state():
    class WithExtra(torch.nn.Linear):
        def get_extra_state(self) -> Any:
            return self.extra

        def set_extra_state(self, state: Any) -> None:
            self.extra = state

    module = WithExtra(2, 2)
    module.extra = {"seen": [1, 2]}
    snapshot = _cpu_state(module)
    assert set(snapshot) == {"weight", "bias", "_extra_state"}
    weight = module.weight.detach().clone()
    with torch.no_grad():
        module.weight.add_(1.0)
    module.extra["seen"].append(3)
    assert torch.equal(snapshot["weight"], weight) and not snapshot["weight"].requires_grad
    assert snapshot["_extra_state"] == {"seen": [1, 2]}
