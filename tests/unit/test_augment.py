"""The batched Lee et al. (2019) augmentation against torchvision's per-image PIL pipeline.

Two checks: (1) given the same random draws, the batched tensor version reproduces
torchvision's PIL operations pixel for pixel; (2) with their own random draws, batch statistics
of the two pipelines (brightness, contrast, saturation, padding, flips) have the same
distribution (two-sample Kolmogorov-Smirnov), while deliberately wrong settings are detected.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from scipy.stats import ks_2samp

from datasets import DATASETS
from datasets.augment import (LEE2019_PADDING, Lee2019Augment, Normalizer, augmentation_applies,
                              train_transform)
from datasets.base import ClassSplit
from datasets.episodes import EpisodeLoader, EpisodeSampler

_JITTERS = {0: TF.adjust_brightness, 1: TF.adjust_contrast, 2: TF.adjust_saturation}


def natural_images(n: int, size: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """Smooth colourful patterns plus noise, uint8 ``[n, size, size, channels]``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for i in range(n):
        base = np.stack([128 + 100 * np.sin(6 * xx + i), 128 + 90 * np.cos(5 * yy - i),
                         60 + 150 * xx * yy], -1)[..., :channels]
        out.append(np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8))
    return np.stack(out)


def pil_reference(images: np.ndarray, aug: Lee2019Augment, params) -> np.ndarray:
    """torchvision's PIL operations with the given draws: pad+crop, jitters in order, flip."""
    size = images.shape[1]
    out = []
    for i, pixels in enumerate(images):
        img = Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels)
        img = TF.crop(TF.pad(img, aug.padding), int(params.top[i]), int(params.left[i]),
                      size, size)
        for op in params.order[i].tolist():
            img = _JITTERS[op](img, float(params.factors[i, op]))
        if params.flip[i]:
            img = TF.hflip(img)
        out.append(np.asarray(img).reshape(size, size, -1))
    return np.stack(out)


@pytest.mark.parametrize("size, channels, n", [(32, 3, 64), (84, 3, 16), (32, 1, 32)])
def test_equals_torchvision_pixel_for_pixel_given_the_same_draws(size, channels, n):
    images = natural_images(n, size, seed=size, channels=channels)
    aug = Lee2019Augment(LEE2019_PADDING[size], (0.5,) * channels, (0.25,) * channels,
                         generator=torch.Generator().manual_seed(size))
    params = aug.sample(n, "cpu")
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    ours = aug.augment(batch, params)
    assert ours.dtype == torch.float32 and torch.equal(ours, ours.round())
    ours = ours.to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(ours, pil_reference(images, aug, params))
    # the draws covered every kind of case
    assert params.flip.any() and not params.flip.all()
    assert len({tuple(o) for o in params.order.tolist()}) == 6 or n < 32
    assert (params.top == 0).any() or (params.top == 2 * aug.padding).any() or n < 32


def test_drawn_parameters_have_torchvision_ranges():
    aug = Lee2019Augment(8, (0.5,) * 3, (0.25,) * 3, generator=torch.Generator().manual_seed(0))
    p = aug.sample(20000, "cpu")
    assert int(p.top.min()) == 0 and int(p.top.max()) == 16 and int(p.left.max()) == 16
    counts = torch.bincount(p.top, minlength=17).double() / 20000
    assert (counts - 1 / 17).abs().max() < 0.01
    assert 0.6 <= float(p.factors.min()) and float(p.factors.max()) <= 1.4
    assert abs(float(p.factors.mean()) - 1.0) < 0.01
    assert abs(float(p.flip.double().mean()) - 0.5) < 0.02
    orders = torch.unique(p.order, dim=0, return_counts=True)[1].double() / 20000
    assert len(orders) == 6 and (orders - 1 / 6).abs().max() < 0.015


def _statistics(batch: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image statistics of float images ``[n, 3, H, W]`` in 0..1 that each component of
    the augmentation moves: brightness, contrast, saturation, padding, flip."""
    grey = batch.mean(axis=1)
    width = batch.shape[-1]
    return {
        "brightness": batch.mean(axis=(1, 2, 3)),
        "contrast": grey.std(axis=(1, 2)),
        "saturation": np.abs(batch - grey[:, None]).mean(axis=(1, 2, 3)),
        "padding": (batch == 0).all(axis=1).mean(axis=(1, 2)),
        "flip": grey[:, :, : width // 2].mean(axis=(1, 2)) - grey[:, :, width // 2:].mean(
            axis=(1, 2)),
    }


def _torchvision_batch(source: np.ndarray, draws: int, size: int) -> np.ndarray:
    torch.manual_seed(1)
    pipeline = T.Compose([T.RandomCrop(size, padding=LEE2019_PADDING[size]),
                          T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4),
                          T.RandomHorizontalFlip(), T.ToTensor()])
    images = [Image.fromarray(source[i % len(source)]) for i in range(draws)]
    return torch.stack([pipeline(img) for img in images]).numpy()


def _batched(source: np.ndarray, draws: int, aug: Lee2019Augment) -> np.ndarray:
    batch = torch.from_numpy(source).permute(0, 3, 1, 2).repeat(draws // len(source), 1, 1, 1)
    return aug(batch.contiguous()).numpy()


def _ks_pvalues(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    sa, sb = _statistics(a), _statistics(b)
    return {k: float(ks_2samp(sa[k], sb[k]).pvalue) for k in sa}


@pytest.mark.parametrize("size, draws", [(32, 1200), (84, 240)])
def test_batch_statistics_match_the_pil_pipeline(size, draws):
    source = natural_images(4, size, seed=3)
    # a bright left edge and a dark right one, so flips move the statistics
    source[:, :, : size // 4] = np.clip(source[:, :, : size // 4].astype(int) + 60, 0, 255)
    reference = _torchvision_batch(source, draws, size)

    def ours(padding: int = LEE2019_PADDING[size], **kw) -> np.ndarray:
        # mean 0 and std 1, so the outputs stay in 0..1 like ToTensor's
        aug = Lee2019Augment(padding, (0.0,) * 3, (1.0,) * 3,
                             generator=torch.Generator().manual_seed(2), **kw)
        return _batched(source, draws, aug)

    same = _ks_pvalues(ours(), reference)
    assert min(same.values()) > 1e-3, same
    # the comparison has teeth: each wrong setting is caught by its statistic
    assert _ks_pvalues(ours(padding=LEE2019_PADDING[size] + 3), reference)["padding"] < 1e-4
    if size == 32:
        assert _ks_pvalues(ours(jitter=0.15), reference)["contrast"] < 1e-6
        assert _ks_pvalues(ours(flip_prob=0.0), reference)["flip"] < 1e-6


def test_normalisation_matches_the_normalizer():
    mean, std = (0.47, 0.45, 0.41), (0.28, 0.27, 0.28)
    aug = Lee2019Augment(4, mean, std)
    pixels = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    expected = Normalizer(mean, std)(pixels)
    assert torch.allclose(aug.normalize(pixels.float()), expected, atol=1e-5)


def test_datasets_declare_the_reference_augmentation():
    declared = {name: DATASETS.get(name).train_augmentation for name in DATASETS.names()}
    assert declared == {"mini": "lee2019", "tiered": "lee2019", "cifar-fs": "lee2019",
                        "fc100": "lee2019", "glyphs": None, "omniglot": None}
    for name in DATASETS.names():
        info = DATASETS.get(name)
        assert augmentation_applies(info.train_augmentation, info.image_size)


def test_train_transform_builds_what_is_declared():
    mean, std = (0.5,) * 3, (0.25,) * 3
    for size, padding in ((84, 8), (32, 4)):
        transform = train_transform("lee2019", size, mean, std)
        assert isinstance(transform, Lee2019Augment) and transform.padding == padding
    assert isinstance(train_transform(None, 28, (0.1,), (0.3,)), Normalizer)
    assert not augmentation_applies("lee2019", 28)
    with pytest.raises(ValueError, match="84 and 32 px"):
        train_transform("lee2019", 28, (0.1,), (0.3,))
    with pytest.raises(ValueError, match="unknown training augmentation 'rfs-b'"):
        train_transform("rfs-b", 84, mean, std)


def test_transform_is_seedable_and_keeps_shape_and_device():
    images = torch.from_numpy(natural_images(6, 32)).permute(0, 3, 1, 2).contiguous()
    make = lambda: train_transform("lee2019", 32, (0.5,) * 3, (0.25,) * 3,  # noqa: E731
                                   generator=torch.Generator().manual_seed(5))
    a, b = make()(images), make()(images)
    assert a.shape == images.shape and a.dtype == torch.float32 and a.device == images.device
    assert torch.equal(a, b)
    assert not torch.equal(a, Normalizer((0.5,) * 3, (0.25,) * 3)(images))
    with pytest.raises(TypeError, match="uint8"):
        make()(images.float())


def test_episode_loader_applies_it_to_every_image_of_a_batch():
    n_classes, per_class = 8, 6
    images = torch.from_numpy(natural_images(n_classes * per_class, 32)).permute(0, 3, 1, 2)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    split = ClassSplit("train", images.contiguous(), labels,
                       tuple(f"c{i}" for i in range(n_classes)))
    transform = train_transform("lee2019", 32, (0.5,) * 3, (0.25,) * 3,
                                generator=torch.Generator().manual_seed(0))
    loader = EpisodeLoader(split, transform, "cpu")
    episodes = EpisodeSampler(split, ways=5, shots=1, queries=2, seed=0).sample(3)
    batch = loader.load(episodes)
    assert batch.support.shape == (3, 5, 3, 32, 32) and batch.query.shape == (3, 10, 3, 32, 32)
    plain = EpisodeLoader(split, Normalizer((0.5,) * 3, (0.25,) * 3), "cpu").load(episodes)
    changed = (batch.support != plain.support).flatten(2).any(-1)
    assert changed.float().mean() > 0.9  # (almost) every image was augmented


def test_cpu_chunking_does_not_change_the_result():
    images = torch.from_numpy(natural_images(120, 84)).permute(0, 3, 1, 2).contiguous()
    chunked = Lee2019Augment(8, (0.5,) * 3, (0.25,) * 3,
                             generator=torch.Generator().manual_seed(3))(images)
    whole = Lee2019Augment(8, (0.5,) * 3, (0.25,) * 3, generator=torch.Generator().manual_seed(3))
    params = whole.sample(120, "cpu")
    assert torch.equal(chunked, whole.normalize(whole.augment(images, params)))
