"""Every registered method trains on glyphs: loss falls over 20 smoke steps, and the quick
budget beats chance (20% at 5-way) by at least 15 points at a fixed seed, under both protocols."""
import numpy as np
import pytest
import torch

from bench.common.config import RunConfig, resolve_budget
from bench.run.train_and_test import evaluate_test_split, run_one
from bench.run.training import build_method, build_training, train_step
from datasets import load_dataset
from methods import METHODS

ALL_METHODS = METHODS.names()


@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs")


def test_all_nine_methods_are_registered():
    assert ALL_METHODS == ["anil", "imaml", "maml", "metaoptnet", "minibatchprox", "mtl",
                           "protonet", "r2d2", "rfs"]


@pytest.mark.parametrize("method", ALL_METHODS)
def test_training_loss_falls_over_20_smoke_steps(method, glyphs):
    budget = resolve_budget("smoke", method, glyphs.name, 5)
    config = RunConfig(method, "glyphs", 5, 5, 0, budget)
    training = build_training(config, glyphs, torch.device("cpu"))  # what a run's steps use
    assert training.augmentation is None  # glyphs declares none
    losses = [train_step(training.method, training.optimizer, training.loader,
                         training.sampler, budget.meta_batch)[0] for _ in range(20)]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses


@pytest.mark.slow
@pytest.mark.parametrize("method", ALL_METHODS)
def test_quick_budget_beats_chance_by_15_points(method, glyphs):
    """Issue 3: every method beats chance by 15 points. Issue 2: quick MTL beats the untrained
    backbone (same seed, same episodes) by at least 10 points."""
    config = RunConfig(method, "glyphs", 5, 5, 0, resolve_budget("quick", method, "glyphs", 5),
                       episodes=100)
    torch.manual_seed(config.seed)
    untrained = None
    if method == "mtl":  # only MTL's check needs it (and MTL has no native protocol to pay for)
        untrained = evaluate_test_split(build_method(config, glyphs), glyphs, config,
                                        torch.device("cpu"), progress=False)[0]["unified"]["mean"]
    result = run_one(config, glyphs, torch.device("cpu"), progress=False)
    unified, native = result["test"]["unified"]["mean"], result["test"]["native"]["mean"]
    print(f"{method}: untrained {untrained}% -> unified {unified:.1f}%, native "
          f"{native:.1f}%, {result['timings']['train_seconds']:.0f} s training")
    assert unified >= 35.0 and native >= 35.0
    if untrained is not None:
        assert unified >= untrained + 10.0
