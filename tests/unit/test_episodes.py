"""Episode sampler properties."""
import hashlib

import numpy as np
import pytest
import torch

from datasets.base import ClassSplit
from datasets.episodes import EpisodeLoader, EpisodeSampler


def _split(n_classes=12, per_class=10, name="test"):
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    images = torch.arange(len(labels), dtype=torch.int64).remainder(256).to(torch.uint8)
    images = images.view(-1, 1, 1, 1).expand(-1, 1, 4, 4).contiguous()
    return ClassSplit(name, images, labels, tuple(f"c{i}" for i in range(n_classes)))


def test_same_seed_gives_identical_episodes_and_digest():
    split = _split()
    a = EpisodeSampler(split, 5, 2, 3, seed=7).sample(50)
    b = EpisodeSampler(split, 5, 2, 3, seed=7).sample(50)
    c = EpisodeSampler(split, 5, 2, 3, seed=8).sample(50)
    assert torch.equal(a.support, b.support) and torch.equal(a.query, b.query)
    assert a.digest() == b.digest() != c.digest()


def test_sampler_ignores_torch_global_rng():
    split = _split()
    torch.manual_seed(0)
    a = EpisodeSampler(split, 5, 1, 2, seed=3).sample(10)
    torch.manual_seed(123)
    torch.rand(100)
    b = EpisodeSampler(split, 5, 1, 2, seed=3).sample(10)
    assert a.digest() == b.digest()


def test_episode_structure():
    split = _split(n_classes=12, per_class=10)
    ep = EpisodeSampler(split, ways=5, shots=2, queries=3, seed=0).sample(200)
    assert ep.support.shape == (200, 10) and ep.query.shape == (200, 15)
    for t in range(200):
        assert len(set(ep.classes[t].tolist())) == 5  # distinct classes
        s, q = set(ep.support[t].tolist()), set(ep.query[t].tolist())
        assert not s & q  # support and query never share an image
        assert len(s) == 10 and len(q) == 15
        # labels index classes: every image of label j belongs to class classes[t, j]
        for idx, lab in zip(ep.support[t], ep.support_labels[t]):
            assert split.labels[idx] == ep.classes[t, lab]
        for idx, lab in zip(ep.query[t], ep.query_labels[t]):
            assert split.labels[idx] == ep.classes[t, lab]


def test_sampler_covers_classes_uniformly():
    split = _split(n_classes=12, per_class=10)
    ep = EpisodeSampler(split, 5, 1, 1, seed=0).sample(1200)
    counts = np.bincount(ep.classes.flatten().numpy(), minlength=12)
    assert counts.min() > 0.8 * counts.mean()


def test_state_dict_resumes_stream():
    split = _split()
    s = EpisodeSampler(split, 5, 1, 1, seed=0)
    s.sample(3)
    state = s.state_dict()
    expected = s.sample(4)
    s2 = EpisodeSampler(split, 5, 1, 1, seed=99)
    s2.load_state_dict(state)
    assert s2.sample(4).digest() == expected.digest()


@pytest.mark.parametrize("kwargs, match", [
    (dict(ways=20, shots=1, queries=1), "20 classes"),
    (dict(ways=5, shots=6, queries=5), "at least 11 images"),
    (dict(ways=1, shots=1, queries=1), "at least 2"),
])
def test_sampler_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EpisodeSampler(_split(), seed=0, **kwargs)


def test_loader_gathers_the_indexed_images():
    split = _split()
    ep = EpisodeSampler(split, 5, 2, 3, seed=1).sample(4)
    batch = EpisodeLoader(split, lambda x: x.float(), "cpu").load(ep)
    assert batch.support.shape == (4, 10, 1, 4, 4)
    assert torch.equal(batch.support[2, 3, 0, 0, 0], split.images[ep.support[2, 3], 0, 0, 0].float())
    assert batch.n_images == 4 * 25


def test_large_splits_are_gathered_on_the_host(monkeypatch):
    split = _split()
    monkeypatch.setattr(EpisodeLoader, "RESIDENT_LIMIT_BYTES", 10)
    loader = EpisodeLoader(split, lambda x: x.float(), "meta")  # a device that is not the CPU
    assert not loader.resident and loader.images.device.type == "cpu"
    assert EpisodeLoader(split, lambda x: x.float(), "cpu").resident


def test_slices_of_episodes_and_batches_keep_their_tasks():
    split = _split()
    episodes = EpisodeSampler(split, ways=3, shots=2, queries=1, seed=4).sample(5)
    part = episodes.slice(1, 4)
    assert part.n_tasks == 3 and (part.ways, part.shots, part.queries) == (3, 2, 1)
    assert torch.equal(part.support, episodes.support[1:4])
    assert torch.equal(part.classes, episodes.classes[1:4])
    assert torch.equal(episodes.images, torch.cat([episodes.support, episodes.query], 1))
    batch = EpisodeLoader(split, lambda x: x.float(), "cpu").load(episodes)
    sub = batch.slice(1, 4)
    assert torch.equal(sub.query, batch.query[1:4]) and torch.equal(sub.classes, part.classes)
    assert torch.equal(batch.images[:, :6], batch.support)
    assert torch.equal(batch.labels[:, 6:], batch.query_labels)
    assert batch.images.shape[1] == batch.labels.shape[1] == 9


def test_the_edges_of_valid_episodes_are_accepted():
    split = _split()  # 12 classes of 10 images
    sampler = EpisodeSampler(split, ways=2, shots=5, queries=5, seed=7)  # exactly 10 per class
    assert sampler.split is split and sampler.seed == 7
    assert sampler.sample(1).query.shape == (1, 10)
    assert EpisodeSampler(split, ways=12, shots=1, queries=0, seed=0).sample(1).classes.shape \
        == (1, 12)  # every class, no query
    uneven = ClassSplit("u", split.images[:115], split.labels[:115], split.class_names)
    EpisodeSampler(uneven, ways=11, shots=5, queries=5, seed=0)  # 11 classes have 10 images
    with pytest.raises(ValueError, match="only 11 classes have at least 10 images"):
        EpisodeSampler(uneven, ways=12, shots=5, queries=5, seed=0)
    with pytest.raises(ValueError, match=r"^need shots >= 1 and queries >= 0, got 0 and 5$"):
        EpisodeSampler(split, ways=2, shots=0, queries=5, seed=0)
    with pytest.raises(ValueError, match=r"^need shots >= 1 and queries >= 0, got 1 and -1$"):
        EpisodeSampler(split, ways=2, shots=1, queries=-1, seed=0)


def test_the_digest_is_the_sha256_of_the_int64_indices():
    episodes = EpisodeSampler(_split(), ways=3, shots=2, queries=1, seed=4).sample(2)
    h = hashlib.sha256(b"3,2,1;")
    for t in (episodes.support, episodes.query, episodes.classes):
        h.update(np.ascontiguousarray(t.numpy(), dtype="<i8").tobytes())
    assert episodes.digest() == h.hexdigest()


def test_host_gathering_gives_the_same_images():
    split = _split()
    episodes = EpisodeSampler(split, 5, 2, 3, seed=1).sample(3)
    resident = EpisodeLoader(split, lambda x: x.float(), "cpu")
    host = EpisodeLoader(split, lambda x: x.float(), "cpu")
    host.resident = False  # the path of splits too large for the device
    assert torch.equal(host.gather(episodes.images), resident.gather(episodes.images))


def test_slices_keep_every_field():
    split = _split()
    episodes = EpisodeSampler(split, ways=3, shots=2, queries=1, seed=4).sample(5)
    part = episodes.slice(1, 4)
    assert torch.equal(part.query, episodes.query[1:4])
    batch = EpisodeLoader(split, lambda x: x.float(), "cpu").load(episodes)
    sub = batch.slice(1, 4)
    for name in ("support", "support_labels", "query", "query_labels", "classes"):
        assert torch.equal(getattr(sub, name), getattr(batch, name)[1:4]), name
