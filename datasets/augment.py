"""Pixel pipeline, batched on the device: uint8 -> float, optional augmentation, normalisation.

:class:`Normalizer` is the evaluation transform (``ToTensor`` + ``Normalize``).
:class:`Lee2019Augment` is the training augmentation of MetaOptNet (Lee et al., CVPR 2019),
which RFS and the MTL paper (Wang, Zhao & Li, ICML 2021) reuse (docs/references.md#augmentation)::

    RandomCrop(size, padding=8 at 84 px / 4 at 32 px, zero fill)
    -> ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4)   (no hue)
    -> RandomHorizontalFlip(p=0.5) -> ToTensor -> Normalize(mean, std)

The reference applies it per image to PIL images. Here the whole batch is transformed at once
with tensor operations, reproducing PIL's arithmetic exactly: each jitter is PIL's
``Image.blend(degenerate, image, factor)`` in float32 truncated to uint8 (``ImageEnhance``),
with PIL's integer grey ``L = (19595 R + 38470 G + 7471 B + 2^15) >> 16`` for saturation and
the rounded mean grey level for contrast; the three jitters run in a random order per image
(torchvision draws ``randperm(4)`` and skips hue); the factors are uniform on [0.6, 1.4].
Given the same random draws the output equals torchvision's pixel for pixel (the flip is folded
into the crop's gather; the jitters commute with it exactly), so the two pipelines are equal in
distribution. Randomness comes from torch on the images' device (``generator`` optional).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "AugmentParams", "LEE2019_PADDING", "Lee2019Augment", "Normalizer", "augmentation_applies",
    "train_transform",
]

#: Crop padding of the Lee et al. 2019 pipeline by image size.
LEE2019_PADDING = {84: 8, 32: 4}
BRIGHTNESS, CONTRAST, SATURATION = 0, 1, 2
_GREY_WEIGHTS = (19595.0, 38470.0, 7471.0)  # PIL's ITU-R 601-2 luma, in 1/65536
_CPU_CHUNK_BYTES = 4 << 20  # float working set per chunk on a CPU


class Normalizer:
    """``(x/255 - mean) / std`` per channel for uint8 ``[..., C, H, W]`` tensors."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(f"expected uint8 images, got {images.dtype}")
        mean = self.mean.to(images.device)
        std = self.std.to(images.device)
        return images.float().div_(255.0).sub_(mean).div_(std)  # one allocation


@dataclass(frozen=True)
class AugmentParams:
    """The random draws for a batch of ``n`` images (all tensors on the images' device).

    ``top``/``left``: ``[n]`` int64 crop offsets into the padded image (0..2*padding);
    ``flip``: ``[n]`` bool; ``factors``: ``[n, 3]`` float32 brightness, contrast and saturation
    factors; ``order``: ``[n, 3]`` int64, the jitters (0 brightness, 1 contrast, 2 saturation)
    in the order they are applied.
    """

    top: torch.Tensor
    left: torch.Tensor
    flip: torch.Tensor
    factors: torch.Tensor
    order: torch.Tensor

    def __getitem__(self, rows: slice) -> "AugmentParams":
        return AugmentParams(self.top[rows], self.left[rows], self.flip[rows],
                             self.factors[rows], self.order[rows])


def _grey(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``convert("L")`` of integer-valued float pixels ``[n, C, H, W]`` -> ``[n, 1, H, W]``
    (exact in float32: every intermediate is an integer below 2^24, so any summation order or
    fused multiply-add gives the same result)."""
    if x.shape[1] == 1:
        return x
    r, g, b = _GREY_WEIGHTS
    grey = x[:, 0:1] * r
    grey.add_(x[:, 1:2], alpha=g).add_(x[:, 2:3], alpha=b).add_(32768.0)
    return grey.mul_(1.0 / 65536.0).floor_()


def _rounded_mean(grey: torch.Tensor) -> torch.Tensor:
    """``int(mean + 0.5)`` of each grey image, as PIL's ``ImageEnhance.Contrast`` computes it
    (integer arithmetic: the sum of grey levels is exact)."""
    count = grey.shape[-1] * grey.shape[-2]
    total = grey.sum(dim=(1, 2, 3)).to(torch.int64)
    return torch.div(2 * total + count, 2 * count, rounding_mode="floor").to(grey.dtype)


def crop_flip(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor,
              padding: int) -> torch.Tensor:
    """Zero-pad by ``padding``, crop back to the input size at (``top``, ``left``), and mirror
    the images where ``flip``: one gather for the whole uint8 batch."""
    n, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    width = w + 2 * padding
    rows = top.view(n, 1) + torch.arange(h, device=images.device)
    cols = left.view(n, 1) + torch.arange(w, device=images.device)
    cols = torch.where(flip.view(n, 1), cols.flip(1), cols)
    index = (rows.view(n, h, 1) * width + cols.view(n, 1, w)).view(n, 1, h * w)
    out = padded.reshape(n, c, -1).gather(2, index.expand(n, c, h * w))
    return out.view(n, c, h, w)


def color_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """PIL's brightness/contrast/saturation enhancements on integer-valued float pixels
    ``[n, C, H, W]`` (modified in place) in the per-image ``order``; returns integer-valued
    floats in 0..255.

    Each step is ``floor(clamp(d + f * (x - d)))`` with the degenerate image ``d`` black
    (brightness), the rounded mean grey level (contrast) or the grey image (saturation).
    """
    n = x.shape[0]
    zero = x.new_zeros(())
    for step in range(order.shape[1]):
        op = order[:, step].view(n, 1, 1, 1)
        factor = factors.gather(1, order[:, step:step + 1]).view(n, 1, 1, 1)
        grey = _grey(x)
        mean = _rounded_mean(grey).view(n, 1, 1, 1)
        degenerate = torch.where(op == BRIGHTNESS, zero,
                                 torch.where(op == CONTRAST, mean, grey))
        x = x.sub_(degenerate).mul_(factor).add_(degenerate).floor_().clamp_(0.0, 255.0)
    return x


class Lee2019Augment:
    """The Lee et al. (2019) training augmentation for a uint8 ``[N, C, H, W]`` batch,
    followed by normalisation; see the module docstring for the exact semantics."""

    def __init__(self, padding: int, mean: Sequence[float], std: Sequence[float],
                 jitter: float = 0.4, flip_prob: float = 0.5,
                 generator: torch.Generator | None = None) -> None:
        if padding < 0 or not 0.0 <= jitter < 1.0 or not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"need padding >= 0, 0 <= jitter < 1 and 0 <= flip_prob <= 1; got "
                             f"{padding}, {jitter}, {flip_prob}")
        self.padding, self.jitter, self.flip_prob = padding, jitter, flip_prob
        std_t = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self._scale = 1.0 / (255.0 * std_t)  # (x/255 - mean)/std == x*scale - shift
        self._shift = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1) / std_t
        self.generator = generator

    def sample(self, n: int, device: torch.device | str) -> AugmentParams:
        """Draw the random parameters of ``n`` images, distributed as torchvision draws them:
        uniform integer crop offsets, Bernoulli flips, uniform factors on
        [1 - jitter, 1 + jitter] and a uniformly random order of the three jitters."""
        g = self.generator
        kw = {"device": device, "generator": g}
        span = 2 * self.padding + 1
        top = torch.randint(0, span, (n,), **kw)
        left = torch.randint(0, span, (n,), **kw)
        flip = torch.rand(n, **kw) < self.flip_prob
        factors = 1.0 - self.jitter + 2.0 * self.jitter * torch.rand(n, 3, **kw)
        order = torch.rand(n, 3, **kw).argsort(dim=1)
        return AugmentParams(top, left, flip, factors, order)

    def augment(self, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Crop, jitter and flip: float32 pixels with integer values 0..255 (before ToTensor's
        division), exactly what the PIL pipeline produces for the same ``params``."""
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise TypeError(f"expected uint8 [N, C, H, W] images, got {images.dtype} "
                            f"{tuple(images.shape)}")
        x = crop_flip(images, params.top, params.left, params.flip, self.padding)
        return color_jitter(x.float(), params.factors, params.order)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """ToTensor + Normalize of float pixels in 0..255 (in place)."""
        if self._scale.device != pixels.device:
            self._scale, self._shift = self._scale.to(pixels.device), self._shift.to(pixels.device)
        return pixels.mul_(self._scale).sub_(self._shift)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        params = self.sample(images.shape[0], images.device)
        if images.device.type != "cpu":
            return self.normalize(self.augment(images, params))
        # On a CPU, a few MB at a time stay in cache through the ~20 elementwise passes
        # (about twice as fast at 84 px); each image is transformed independently anyway.
        out = torch.empty(images.shape, dtype=torch.float32)
        step = max(1, _CPU_CHUNK_BYTES // (4 * max(1, images[0].numel())))
        for start in range(0, images.shape[0], step):
            rows = slice(start, start + step)
            out[rows] = self.normalize(self.augment(images[rows], params[rows]))
        return out


def augmentation_applies(augmentation: str | None, image_size: int) -> bool:
    """Whether ``augmentation`` (a dataset's declared training augmentation, None for none)
    is defined for images of ``image_size`` px (Lee et al. 2019: 84 and 32 px)."""
    return augmentation is None or image_size in LEE2019_PADDING


def train_transform(augmentation: str | None, image_size: int, mean: Sequence[float],
                    std: Sequence[float], generator: torch.Generator | None = None
                    ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The training transform (uint8 batch -> normalised float batch).

    ``augmentation``: what the dataset declares (:attr:`datasets.DatasetInfo.train_augmentation`,
    possibly overridden by the method's policy): ``"lee2019"`` (needs 84 or 32 px images) or
    None for plain normalisation.
    """
    if augmentation is None:
        return Normalizer(mean, std)
    if augmentation != "lee2019":
        raise ValueError(f"unknown training augmentation {augmentation!r}; valid: lee2019 "
                         "(or none)")
    if not augmentation_applies(augmentation, image_size):
        raise ValueError(f"the Lee et al. 2019 augmentation is defined for 84 and 32 px images "
                         f"(crop padding 8 and 4), not {image_size} px. Train without "
                         f"augmentation.")
    return Lee2019Augment(LEE2019_PADDING[image_size], mean, std, generator=generator)
