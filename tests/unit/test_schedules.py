"""Learning-rate schedules stepped once per epoch (bench.run.training.EpochSchedule)."""
import pytest
import torch
from torch import nn

from bench.run.training import EpochSchedule, build_optimizer
from core.budget import TrainBudget


def rates_per_epoch(budget: TrainBudget) -> list[float]:
    """The learning rate each epoch of ``budget`` trains with (schedule stepped after each)."""
    optimizer = build_optimizer(budget, [nn.Parameter(torch.zeros(1))])
    schedule = EpochSchedule(budget, optimizer)
    rates = []
    for _ in range(budget.epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradient: changes nothing, but keeps torch's order of calls
        schedule.step(0.0)
    return rates


def test_linear_anneals_the_rate_towards_zero_over_the_epochs():
    budget = TrainBudget("t", "conv4-32", "avg", epochs=4, steps_per_epoch=1, meta_batch=1,
                         train_shots=1, train_queries=0, optimizer="sgd", lr=10.0,
                         momentum=0.0, schedule="linear")
    assert rates_per_epoch(budget) == pytest.approx([10.0, 7.5, 5.0, 2.5])


def test_an_unknown_schedule_is_refused_with_the_valid_ones():
    budget = TrainBudget("t", "conv4-32", "avg", 1, 1, 1, 1, 0, schedule="cosine")
    with pytest.raises(ValueError, match="plateau, step, linear, constant"):
        EpochSchedule(budget, build_optimizer(budget, [nn.Parameter(torch.zeros(1))]))
