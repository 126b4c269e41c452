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
from bench.run.session import TrainSession
from bench.common.timing import SectionTimer
from bench.run.training import build_training, stream_seed
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
