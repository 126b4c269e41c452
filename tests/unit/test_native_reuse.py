"""Native evaluation from per-image features (``native_reuses_features``): the same logits and
accuracies as adapting every episode on its own images, to float tolerance."""
import pytest
import torch

from bench.common.config import RunConfig, resolve_budget
from bench.run.evaluate import distinct_image_features, evaluate_native
from bench.run.training import build_training, stream_seed, train_step
from datasets import load_dataset
from datasets.augment import Normalizer
from datasets.episodes import EpisodeLoader, EpisodeSampler
from methods import METHODS

REUSING = [name for name in METHODS.names() if METHODS.get(name).native_reuses_features]


@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs")


def test_the_feature_head_methods_declare_it_and_the_inner_loop_ones_do_not():
    assert REUSING == ["metaoptnet", "protonet", "r2d2"]
    # MAML normalises each task's images with their own batch statistics; MTL has no native
    # adaptation of its own (native is the unified protocol).
    assert not METHODS.get("maml").native_reuses_features
    assert not METHODS.get("mtl").native_reuses_features


@pytest.mark.parametrize("name", REUSING)
def test_reused_features_give_the_per_episode_numbers(name, glyphs, monkeypatch):
    cpu = torch.device("cpu")
    config = RunConfig(name, "glyphs", 5, 5, 0, resolve_budget("smoke", name, "glyphs", 5))
    training = build_training(config, glyphs, cpu)
    for _ in range(3):  # running statistics away from their initial values
        train_step(training.method, training.optimizer, training.loader, training.sampler, 2)
    method = training.method.eval()
    loader = EpisodeLoader(glyphs.test, Normalizer(glyphs.mean, glyphs.std), cpu)
    episodes = EpisodeSampler(glyphs.test, 5, 5, 15, stream_seed(0, "test")).sample(24)

    with torch.no_grad():
        batch = loader.load(episodes.slice(0, 16))
        direct = method.adapt(batch.support, batch.support_labels)(batch.query)
        feats, rows = distinct_image_features(method, loader, episodes.slice(0, 16))
        both = feats[rows]
        reused = method.adapt_features(both[:, :25], batch.support_labels)(both[:, 25:])
    torch.testing.assert_close(reused, direct, rtol=1e-4, atol=1e-4)

    per_episode = evaluate_native(method, loader, episodes, reuse_features=False)
    # validation-based selection adapts as in training (adapt_for_selection)
    selecting = evaluate_native(method, loader, episodes, selection=True, reuse_features=False)
    monkeypatch.setattr(loader, "load", lambda *a: pytest.fail("images loaded per episode"))
    assert evaluate_native(method, loader, episodes) == per_episode  # the declared fast path
    assert evaluate_native(method, loader, episodes, selection=True) == selecting
