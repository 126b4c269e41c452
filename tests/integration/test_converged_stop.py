"""The training loop applies a budget's plateau rule (the ``converged`` budget's stop,
core.convergence): with smoke shapes and a rule that any curve satisfies from epoch 3 on
(a gain of 1000 points is never reached), a run of up to 8 epochs stops after epoch 3 and
records why its curve ended there."""
from dataclasses import replace

import pytest
import torch

from bench.common.config import RunConfig, resolve_budget
from bench.store.results import read_result, result_path
from bench.sweep.runs import run_sweep
from core.convergence import PlateauRule
from datasets import load_dataset


@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs")


def test_the_plateau_rule_ends_training(glyphs, tmp_path):
    rule = PlateauRule(min_gain=1000.0, window=0.25, min_epochs=3, min_window=1)
    budget = replace(resolve_budget("smoke", "protonet", "glyphs", 1), epochs=8,
                     early_stop_patience=None, plateau_stop=rule)
    config = RunConfig("protonet", "glyphs", 5, 1, 0, budget, episodes=20)
    run_sweep([config], {"glyphs": glyphs}, torch.device("cpu"), tmp_path, progress=False)
    result = read_result(result_path(tmp_path, config.key))
    assert result["timings"]["epochs"] == 3
    curve = result["selection"]["val_curve"]
    assert len(curve) == 3 and rule.has_plateaued(curve) and not rule.has_plateaued(curve[:2])
    assert result["config"]["budget"]["plateau_stop"] == {
        "min_gain": 1000.0, "window": 0.25, "min_epochs": 3, "min_window": 1}
