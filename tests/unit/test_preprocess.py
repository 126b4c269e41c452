"""A model's preprocessing: what bench run feeds the model, bit for bit, at its own size;
resized (on the images' device) and normalised otherwise; never changes the caller's images."""
import pytest
import torch

from bench.api.preprocess import ImageShapeError, ModelPreprocess
from datasets.augment import Normalizer

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def images(size, n=4):
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(0),
                         dtype=torch.uint8)


def test_own_size_uint8_is_exactly_the_run_s_normalisation():
    x = images(32)
    assert torch.equal(ModelPreprocess(3, 32, MEAN, STD)(x), Normalizer(MEAN, STD)(x))


def test_float_images_in_0_1_are_normalised_the_same_and_left_untouched():
    x = images(32)
    floats = x.float() / 255.0
    copy = floats.clone()
    out = ModelPreprocess(3, 32, MEAN, STD)(floats)
    assert torch.allclose(out, Normalizer(MEAN, STD)(x), atol=1e-6)
    assert torch.equal(floats, copy)


def test_other_sizes_are_resized_then_normalised():
    prep = ModelPreprocess(3, 32, MEAN, STD)
    out = prep(images(50))
    assert out.shape == (4, 3, 32, 32) and prep.resizes(50, 50) and not prep.resizes(32, 32)
    flat = torch.full((2, 3, 64, 48), 128, dtype=torch.uint8)  # constant: resize keeps it
    expected = (128 / 255 - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    assert torch.allclose(prep(flat), expected.expand(2, 3, 32, 32), atol=1e-5)


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(2, 1, 32, 32, dtype=torch.uint8), "have 1 channel"),
    (torch.zeros(3, 32, 32, dtype=torch.uint8), r"must be \[N, C, H, W\]"),
    (torch.zeros(2, 3, 32, 32, dtype=torch.int64), "must be uint8"),
])
def test_bad_images_are_refused(bad, match):
    with pytest.raises(ImageShapeError, match=match):
        ModelPreprocess(3, 32, MEAN, STD)(bad)
