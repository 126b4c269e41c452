"""bench.api.load_model: embed gives the unified protocol's very features, predict reproduces
the run's per-episode accuracy under both protocols, other sizes are resized, bad input is a
clear error."""
import pytest
import torch

from bench.api import load_model
from bench.run.evaluate import episode_features
from bench.api.preprocess import ImageShapeError
from bench.run.train_and_test import draw_episodes
from bench.store.results import read_result, result_path
from datasets import load_dataset
from datasets.augment import Normalizer
from datasets.episodes import EpisodeLoader

from smoke_model_runs import KEYS  # beside this file (pytest puts it on sys.path)


@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs")


@pytest.fixture(scope="module")
def episodes(glyphs):
    """The smoke runs' own test episodes (5-way 1-shot, 15 queries, 20 episodes, seed 0)."""
    return draw_episodes(glyphs.test, 5, 1, 15, 20, 0)


def test_embed_equals_the_features_the_unified_protocol_used(smoke_models, glyphs, episodes):
    model = load_model(smoke_models / "models" / f"{KEYS[0]}.pt")
    loader = EpisodeLoader(glyphs.test, Normalizer(glyphs.mean, glyphs.std), "cpu")
    support, query = episode_features(model.method, loader, episodes)
    unique, inverse = torch.unique(episodes.images, return_inverse=True)
    feats = model.embed(glyphs.test.images[unique])[inverse]
    assert torch.equal(feats[:, :5], support) and torch.equal(feats[:, 5:], query)
    assert not feats.requires_grad and not model.method.training
    floats = model.embed(glyphs.test.images[unique[:50]].float() / 255.0)
    assert torch.allclose(floats, model.embed(glyphs.test.images[unique[:50]]), atol=1e-6)


@pytest.mark.parametrize("key, protocol", [(KEYS[0], "unified"), (KEYS[1], "unified"),
                                           (KEYS[1], "native")])
def test_predict_reproduces_the_runs_episode_accuracies(smoke_models, glyphs, episodes, key,
                                                        protocol):
    model = load_model(smoke_models / "models" / f"{key}.pt")
    run = read_result(result_path(smoke_models, key))["test"][protocol]["accuracies"]
    images = glyphs.test.images
    labels = episodes.support_labels * 7 + 3  # any integers name the classes
    for t in (0, 7):
        predicted = model.predict(images[episodes.support[t]], labels[t],
                                  images[episodes.query[t]], protocol=protocol)
        correct = (predicted == episodes.query_labels[t] * 7 + 3).double().mean() * 100
        assert round(float(correct), 4) == run[t]
    batch = model.predict(images[episodes.support[:3]], labels[:3], images[episodes.query[:3]],
                          protocol=protocol)
    assert batch.shape == (3, 75)


def test_images_of_another_size_are_resized(smoke_models, glyphs):
    model = load_model(smoke_models / "models" / f"{KEYS[0]}.pt")
    small = glyphs.test.images[:8]
    large = small.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # 56 px
    feats = model.embed(large)
    assert feats.shape == (8, model.method.backbone.out_dim) and torch.isfinite(feats).all()
    cosine = (feats * model.embed(small)).sum(1)  # unit vectors
    assert cosine.min() > 0.9


def test_bad_input_is_a_clear_error(smoke_models, glyphs):
    model = load_model(smoke_models / "models" / f"{KEYS[0]}.pt")
    colour = torch.zeros(4, 3, 28, 28, dtype=torch.uint8)
    with pytest.raises(ImageShapeError, match="have 3 channel.* the model takes 1-channel"):
        model.embed(colour)
    with pytest.raises(ImageShapeError, match=r"must be \[N, C, H, W\]"):
        model.embed(torch.zeros(28, 28))
    images = glyphs.test.images
    support, query = images[:10], images[10:20]
    labels = torch.arange(5).repeat_interleave(2)
    for C in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=rf"C must be a .*number > 0.*got {C!r}"):
            model.predict(support, labels, query, C=C)
    with pytest.raises(ValueError, match="protocol must be one of unified, native"):
        model.predict(support, labels, query, protocol="ridge")


def test_a_label_count_mismatch_names_the_shapes_passed(smoke_models, glyphs):
    """Issue 27 item 7: the shapes as the caller passed them (not with the episode dimension
    the API adds for one episode)."""
    model = load_model(smoke_models / "models" / f"{KEYS[0]}.pt")
    images = glyphs.test.images
    support, query = images[:10], images[10:20]
    with pytest.raises(ValueError) as caught:
        model.predict(support, torch.arange(5).repeat_interleave(2)[:9], query)
    assert ("got support (10, 1, 28, 28), support_labels (9,) and query (10, 1, 28, 28)"
            in str(caught.value)), caught.value
