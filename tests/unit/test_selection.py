"""Model selection and early stopping in the training loop (bench.run.session.TrainSession), driven
by a scripted validation curve instead of real training: the end of each epoch reads
``validate()``, keeps the strictly best epoch (a tie keeps the earlier one) and its weights,
and stops after ``early_stop_patience`` epochs without a strictly better value or when the
budget's plateau rule says so; the validation episodes are the run seed's own."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bench.common.config import RunConfig, resolve_budget
from bench.run.train_and_test import draw_episodes
import bench.run.session as session_module
from bench.run.session import NonFiniteLossError, StopSignal, TrainSession
from bench.common.timing import SectionTimer
from bench.run.training import StepResult, build_training, stream_seed
from core.convergence import PlateauRule
from datasets import load_dataset


@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs")


def session(glyphs, seed: int = 0, **budget_changes) -> TrainSession:
    budget = replace(resolve_budget("smoke", "protonet", "glyphs", 1), **budget_changes)
    config = RunConfig("protonet", "glyphs", 5, 1, seed, budget, episodes=20)
    device = torch.device("cpu")
    return TrainSession(build_training(config, glyphs, device), glyphs, config, device)


def drive(s: TrainSession, curve: list[float]) -> list[int]:
    """Feed ``curve`` to the end-of-epoch logic until training is finished; before each epoch
    every weight is set to the epoch's number, so the kept weights tell which epoch they are.
    Returns the epochs that ran."""
    values = iter(curve)
    s.validate = lambda: next(values)
    timer, ran = SectionTimer("cpu"), []
    while not s.finished:
        epoch = s.outcome.epochs + 1
        with torch.no_grad():
            for p in s.method.parameters():
                p.fill_(float(epoch))
        s._end_epoch(timer, progress=False)
        ran.append(epoch)
    return ran


def kept_epoch(s: TrainSession) -> float:
    name, p = next(iter(s.method.named_parameters()))
    return float(s.outcome.best_state[name].flatten()[0])


def test_a_tie_keeps_the_earlier_epoch_and_counts_toward_patience(glyphs):
    s = session(glyphs, epochs=10, early_stop_patience=2, plateau_stop=None)
    # epoch 2 is best; epoch 3 ties it (not better), epoch 4 is worse: two epochs without
    # improvement, so training stops after epoch 4 with epoch 2's weights
    ran = drive(s, [50.0, 60.0, 60.0, 55.0, 70.0, 70.0])
    assert ran == [1, 2, 3, 4]
    assert (s.outcome.best_epoch, s.outcome.best_val) == (2, 60.0)
    assert kept_epoch(s) == 2.0
    assert s.outcome.val_curve == [50.0, 60.0, 60.0, 55.0] and s.since_best == 2


def test_an_improvement_resets_patience_and_the_budget_ends_training(glyphs):
    s = session(glyphs, epochs=5, early_stop_patience=2, plateau_stop=None)
    ran = drive(s, [50.0, 49.0, 51.0, 50.0, 52.0, 99.0])
    assert ran == [1, 2, 3, 4, 5]  # never two epochs in a row without a better value
    assert (s.outcome.best_epoch, s.outcome.best_val, kept_epoch(s)) == (5, 52.0, 5.0)
    assert s.outcome.epochs == 5


def test_the_plateau_rule_stops_at_its_epoch(glyphs):
    rule = PlateauRule(min_gain=0.5, window=0.25, min_epochs=3, min_window=1)
    s = session(glyphs, epochs=20, early_stop_patience=None, plateau_stop=rule)
    ran = drive(s, [50.0, 60.0, 70.0, 70.2, 80.0])  # after epoch 4 the window gains 0.2
    assert ran == [1, 2, 3, 4] and s.outcome.best_epoch == 4


def test_validation_draws_the_run_seeds_own_episodes(glyphs, monkeypatch):
    """``validate()`` evaluates the val stream of the run's seed (what ``bench eval --split
    val --seed S`` draws), so two seeds select on different episodes."""
    import bench.run.session as session_module

    seen = []

    def record(method, loader, episodes, **kwargs):
        seen.append(episodes.digest())
        return [50.0] * episodes.n_tasks

    monkeypatch.setattr(session_module, "evaluate_unified", record)
    digests = {}
    for seed in (0, 1):
        s = session(glyphs, seed=seed, val_episodes=4)
        assert s.validate() == 50.0
        expected = draw_episodes(glyphs.val, 5, 1, s.config.queries, 4, seed, stream="val")
        digests[seed] = seen[-1]
        assert seen[-1] == expected.digest()
    assert digests[0] != digests[1]


@pytest.mark.parametrize("purpose", ["train", "val", "test", "augment"])
def test_every_stream_depends_on_the_seed(purpose):
    seeds = [stream_seed(seed, purpose) for seed in range(4)]
    assert len(set(seeds)) == 4
    assert stream_seed(0, purpose) == stream_seed(0, purpose)  # and on nothing else


def test_two_seeds_draw_different_training_and_test_episodes(glyphs):
    device = torch.device("cpu")
    batches, digests = {}, {}
    for seed in (0, 1):
        config = RunConfig("protonet", "glyphs", 5, 1, seed,
                           resolve_budget("smoke", "protonet", "glyphs", 1), episodes=20)
        batches[seed] = build_training(config, glyphs, device).sampler.sample(2).digest()
        digests[seed] = draw_episodes(glyphs.test, 5, 1, 15, 20, seed).digest()
    assert digests[0] != digests[1]
    assert batches[0] != batches[1]


def _session_with(glyphs, **config_changes) -> TrainSession:
    budget = replace(resolve_budget("smoke", "protonet", "glyphs", 1), val_episodes=4)
    config = replace(RunConfig("protonet", "glyphs", 5, 1, 0, budget, episodes=20),
                     **config_changes)
    device = torch.device("cpu")
    return TrainSession(build_training(config, glyphs, device), glyphs, config, device)


@pytest.mark.parametrize("select_on", ["unified", "native"])
def test_validation_uses_the_runs_protocol_solver_c_and_precision(glyphs, monkeypatch,
                                                                 select_on):
    """Selection reads the run's own protocol: the unified head with the run's solver, C and
    precision, or (``--select-on native``) the method's adaptation as its reference
    validates it (``selection=True``)."""
    calls = []

    def evaluator(name):
        def record(method, loader, episodes, **kwargs):
            loader.load(episodes)  # the validation split's images, normalised
            calls.append((name, method, loader, episodes.n_tasks, kwargs))
            return [40.0, 60.0, 80.0, 100.0][:episodes.n_tasks]
        return record

    monkeypatch.setattr(session_module, "evaluate_unified", evaluator("unified"))
    monkeypatch.setattr(session_module, "evaluate_native", evaluator("native"))
    s = _session_with(glyphs, select_on=select_on, solver="batched", logreg_c=0.25,
                      precision="bf16")
    assert s.validate() == 70.0  # the mean over the 4 validation episodes
    (name, method, loader, n, kwargs), = calls
    assert (name, method, loader, n) == (select_on, s.method, s.val_loader, 4)
    assert kwargs == ({"solver": "batched", "C": 0.25, "precision": "bf16"}
                      if select_on == "unified" else {"precision": "bf16", "selection": True})


def test_each_epoch_is_timed_and_tested_every_n_epochs_in_neither_clock(glyphs):
    """The learning curve's points and the live log's numbers: cumulative training seconds
    (warm-up step included), training plus validation seconds, images, steps, the mean loss
    of the epoch's steps; ``--test-every 2`` tests after epochs 2 and 4, timed apart."""
    s = _session_with(glyphs, test_every=2, test_every_episodes=5)
    tested, logged = [], []
    s.test_along_the_way = lambda: tested.append(s.outcome.epochs + 1) or 33.0
    s.epoch_log = type("Log", (), {"log_epoch": lambda self, numbers: logged.append(numbers)})()
    curve = iter([50.0, 60.0, 55.0, 65.0])
    s.validate = lambda: next(curve)
    timer = SectionTimer("cpu")
    timer.seconds.update(train=3.0, first_step=1.0)  # seconds of training steps so far
    s.outcome.images_seen, s.outcome.steps = 120, 10
    for epoch in range(4):  # three steps' losses summed, or one step's
        s.epoch_loss, s.step_in_epoch = (6.0, 3) if epoch % 2 == 0 else (2.0, 1)
        s._end_epoch(timer, progress=False)
    assert tested == [2, 4]
    assert set(timer.seconds) == {"train", "first_step", "validation", "test_every"}
    points = s.outcome.curve
    assert [p["epoch"] for p in points] == [1, 2, 3, 4]
    assert [p.get("test_accuracy") for p in points] == [None, 33.0, None, 33.0]
    assert [p.get("test_episodes") for p in points] == [None, 5, None, 5]
    assert {k: points[0][k] for k in ("train_seconds", "images_seen", "steps", "val_accuracy")} \
        == {"train_seconds": 4.0, "images_seen": 120, "steps": 10, "val_accuracy": 50.0}
    # the run clock adds validation, never the test-along-the-way time
    assert points[-1]["run_seconds"] == 4.0 + timer.seconds["validation"]
    assert 4.0 < points[0]["run_seconds"] <= points[-1]["run_seconds"]
    assert [n.epoch for n in logged] == [1, 2, 3, 4]
    last = logged[-1]
    assert (last.train_loss, last.val_accuracy, last.steps, last.images_seen,
            last.test_accuracy) == (2.0, 65.0, 10, 120, 33.0)
    assert last.lr == s.optimizer.param_groups[0]["lr"] and logged[0].test_accuracy is None
    assert last.train_device_hours == 4.0 / 3600
    assert last.run_device_hours == points[-1]["run_seconds"] / 3600


def test_an_epoch_trains_the_budgets_steps_and_starts_the_next_afresh(glyphs, monkeypatch):
    """The loop's bookkeeping with a scripted step: every step of the budget runs, images and
    steps add up, the logged loss is the mean of the epoch's steps, the schedule reads the
    validation accuracy, and each epoch's loss starts from zero."""
    losses, args = iter([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]), []
    monkeypatch.setattr(session_module, "parallel_train_step",
                        lambda *a: args.append(a) or StepResult(next(losses), 7, False))
    budget = replace(resolve_budget("smoke", "protonet", "glyphs", 1), schedule="plateau",
                     plateau_patience=0, plateau_factor=0.5, early_stop_patience=None)
    config = RunConfig("protonet", "glyphs", 5, 1, 0, budget, episodes=20)
    s = TrainSession(build_training(config, glyphs, torch.device("cpu")), glyphs, config,
                     torch.device("cpu"))
    logged, seen = [], []
    s.epoch_log = type("Log", (), {"log_epoch": lambda self, numbers: logged.append(numbers)})()
    s.on_epoch = lambda epoch, val: seen.append((epoch, val))
    curve = iter([50.0, 40.0])
    s.validate = lambda: next(curve)
    lr = s.optimizer.param_groups[0]["lr"]
    timer = SectionTimer("cpu")
    for _ in range(2):
        assert not s._train_epoch(timer, False, StopSignal())
        s._end_epoch(timer, progress=False)
    assert (s.outcome.steps, s.outcome.images_seen) == (10, 70)  # 5 steps per epoch
    assert args[0] == (s.method, s.optimizer, s.train_loader, s.sampler, budget.meta_batch,
                       "fp32", s.parallel, False)
    assert {"first_step", "train"} <= set(timer.seconds)  # the first step timed apart
    assert [n.train_loss for n in logged] == [3.0, 8.0]
    assert seen == [(1, 50.0), (2, 40.0)]
    assert (s.step_in_epoch, s.epoch_loss) == (0, 0.0) and s.finished
    # plateau schedule, patience 0: epoch 2 did not improve, so its rate was halved after it
    assert s.optimizer.param_groups[0]["lr"] == pytest.approx(lr / 2)


def test_the_end_of_an_epoch_says_what_it_selected_only_when_asked(glyphs, capsys):
    rule = PlateauRule(min_gain=0.5, window=0.25, min_epochs=3, min_window=1)
    quiet = session(glyphs, epochs=20, early_stop_patience=None, plateau_stop=rule)
    drive(quiet, [50.0, 60.0, 70.0, 70.2])
    assert capsys.readouterr().out == ""
    loud = session(glyphs, epochs=20, early_stop_patience=None, plateau_stop=rule)
    values = iter([50.0, 60.0, 70.0, 70.2])
    loud.validate = lambda: next(values)
    while not loud.finished:
        loud._end_epoch(SectionTimer("cpu"), progress=True)
    lines = capsys.readouterr().out.splitlines()
    key = loud.config.key
    assert lines[0] == f"{key}: epoch 1 val 50.00% (best 50.00% at epoch 1)"
    assert lines[3] == f"{key}: epoch 4 val 70.20% (best 70.20% at epoch 4)"
    assert lines[4] == f"{key}: validation has plateaued after epoch 4 ({rule.describe()})"


def test_testing_along_the_way_uses_the_first_test_episodes_and_the_runs_head(glyphs,
                                                                           monkeypatch):
    calls = []

    def unified(method, loader, episodes, **kwargs):
        loader.load(episodes)
        calls.append((method is s.method, episodes.digest(), kwargs))
        return [10.0, 30.0]

    monkeypatch.setattr(session_module, "evaluate_unified", unified)
    s = _session_with(glyphs, test_every=1, test_every_episodes=2, solver="batched",
                      logreg_c=0.5)
    assert s.test_along_the_way() == 20.0 and s.test_along_the_way() == 20.0
    two = draw_episodes(glyphs.test, 5, 1, s.config.queries, 2, 0).digest()
    assert calls[0][1] == calls[1][1] == two  # the run's test stream, the same each time
    assert calls[0][0]  # the session's model
    assert calls[0][2] == {"solver": "batched", "C": 0.5, "precision": "fp32"}


def test_an_epoch_resumes_at_its_step_stops_at_a_signal_and_refuses_a_non_finite_loss(
        glyphs, monkeypatch):
    losses = iter([1.0, 1.0, 1.0, 1.0, float("nan")])
    monkeypatch.setattr(session_module, "parallel_train_step",
                        lambda *a: StepResult(next(losses), 7, False))
    s = _session_with(glyphs)
    timer = SectionTimer("cpu")
    s.step_in_epoch = 3  # resumed after 3 of the epoch's 5 steps
    assert not s._train_epoch(timer, False, StopSignal())
    assert (s.outcome.steps, s.step_in_epoch) == (2, 5)
    s.step_in_epoch, s.outcome.epochs = 0, 1
    stop = StopSignal()
    stop.requested = True  # SIGTERM arrived: the step ends, then the epoch stops there
    assert s._train_epoch(timer, False, stop) and s.step_in_epoch == 1
    with pytest.raises(NonFiniteLossError) as refused:
        s._train_epoch(timer, False, StopSignal())
    assert str(refused.value) == ("training loss became nan at step 5 (epoch 2); try a lower "
                                  "learning rate or --precision fp32")
