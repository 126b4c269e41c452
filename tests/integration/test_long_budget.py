"""The ``long`` budget's run trains at its reduced rates before it stops (issue 22, item 2):
the training loop itself, on glyphs, with the schedule shrunk to three short epochs."""
from __future__ import annotations

import pytest
import torch

from bench.common.config import RunConfig, resolve_budget
from bench.run.session import TrainSession
from bench.common.timing import SectionTimer
from bench.run.training import build_training
from core.budget import with_settings
from datasets import load_dataset


def test_a_long_run_takes_optimiser_steps_at_every_reduced_rate_before_it_stops():
    budget = with_settings(resolve_budget("long", "protonet", "glyphs", 1),
                           {"epochs": 3, "steps_per_epoch": 2, "val_episodes": 3,
                            "lr_epochs": [2, 3]})
    config = RunConfig("protonet", "glyphs", 5, 1, 0, budget)
    dataset = load_dataset("glyphs")
    training = build_training(config, dataset, torch.device("cpu"))
    rates: list[float] = []  # the rate of every optimiser step, read as it is taken
    training.optimizer.register_step_pre_hook(
        lambda optimizer, args, kwargs: rates.append(optimizer.param_groups[0]["lr"]))
    epochs_seen: list[int] = []
    session = TrainSession(training, dataset, config, torch.device("cpu"),
                           on_epoch=lambda epoch, val: epochs_seen.append(epoch))
    outcome = session.run(SectionTimer(), progress=False)
    lr = budget.lr
    assert rates == pytest.approx([lr, lr, lr * 0.1, lr * 0.1, lr * 0.01, lr * 0.01])
    assert epochs_seen == [1, 2, 3] and outcome.epochs == 3 and session.finished
    assert 1 <= outcome.best_epoch <= 3  # the best validation epoch is what gets tested
