"""Every registered method trains on glyphs: loss falls over 20 smoke steps, and the quick
budget beats chance (20% at 5-way) by at least 15 points at a fixed seed, under both protocols."""
import numpy as np
import pytest
import torch

from bench.config import RunConfig, resolve_budget
from bench.runner import build_method, build_optimizer, run_one, stream_seed, train_step
from datasets import load_dataset
from datasets.augment import Normalizer
from datasets.episodes import EpisodeLoader, EpisodeSampler
from methods import METHODS

ALL_METHODS = METHODS.names()


@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs")


def test_all_six_methods_are_registered():
    assert ALL_METHODS == ["anil", "maml", "metaoptnet", "mtl", "protonet", "r2d2"]


@pytest.mark.parametrize("method", ALL_METHODS)
def test_training_loss_falls_over_20_smoke_steps(method, glyphs):
    budget = resolve_budget("smoke", method, glyphs.name, 5)
    config = RunConfig(method, "glyphs", 5, 5, 0, budget)
    torch.manual_seed(0)
    model = build_method(config, glyphs)
    optimizer = build_optimizer(budget, model.parameters())
    loader = EpisodeLoader(glyphs.train, Normalizer(glyphs.mean, glyphs.std), "cpu")
    sampler = EpisodeSampler(glyphs.train, 5, budget.train_shots, budget.train_queries,
                             stream_seed(0, "train"))
    model.train()
    losses = [train_step(model, optimizer, loader, sampler, budget.meta_batch)[0]
              for _ in range(20)]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses


@pytest.mark.slow
@pytest.mark.parametrize("method", ALL_METHODS)
def test_quick_budget_beats_chance_by_15_points(method, glyphs):
    config = RunConfig(method, "glyphs", 5, 5, 0, resolve_budget("quick", method, "glyphs", 5),
                       episodes=200)
    result = run_one(config, glyphs, torch.device("cpu"), progress=False)
    unified, native = result["test"]["unified"]["mean"], result["test"]["native"]["mean"]
    print(f"{method}: unified {unified:.1f}%, native {native:.1f}%, "
          f"{result['timings']['train_seconds']:.0f} s training")
    assert unified >= 35.0 and native >= 35.0
