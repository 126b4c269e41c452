"""A trained model's own image preprocessing, for any images with its channel count.

Training and ``bench run`` feed a method uint8 images of its dataset's size through
:class:`datasets.augment.Normalizer` (``x/255``, then ``(x - mean) / std`` per channel with the
training dataset's constants). :class:`ModelPreprocess` does exactly that (the very same
operations) for uint8 images of the model's size, and otherwise first converts (float images
are taken to lie in [0, 1]) and resizes them to the model's size on their own device:
bilinear with antialiasing (``torch.nn.functional.interpolate``), every image to
``image_size`` x ``image_size`` (the aspect ratio is not kept). ``bench eval`` (also across
datasets) and :func:`bench.api.load_model` use it.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from datasets.augment import Normalizer

RESIZE_MODE = "bilinear, antialiased (torch interpolate), on the device"


class ImageShapeError(ValueError):
    """Images a model cannot take (wrong rank, channel count or dtype)."""


class ModelPreprocess:
    """uint8 (0..255) or float (0..1) images ``[N, C, H, W]`` -> normalised float32
    ``[N, C, S, S]`` on the images' device, ``S`` the model's image size."""

    def __init__(self, channels: int, image_size: int, mean: Sequence[float],
                 std: Sequence[float]) -> None:
        self.channels, self.image_size = int(channels), int(image_size)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self._normalize = Normalizer(self.mean, self.std)

    def check(self, images: torch.Tensor, what: str = "images") -> None:
        """:class:`ImageShapeError` unless ``images`` is ``[N, C, H, W]`` with the model's
        ``C`` and a uint8 or floating dtype."""
        if images.dim() != 4:
            raise ImageShapeError(f"{what} must be [N, C, H, W], got shape "
                                  f"{tuple(images.shape)}")
        if images.shape[1] != self.channels:
            raise ImageShapeError(f"{what} have {images.shape[1]} channel(s) but the model "
                                  f"takes {self.channels}-channel images")
        if images.dtype != torch.uint8 and not images.dtype.is_floating_point:
            raise ImageShapeError(f"{what} must be uint8 (0..255) or float (0..1), got "
                                  f"{images.dtype}")

    def resizes(self, height: int, width: int) -> bool:
        return (height, width) != (self.image_size, self.image_size)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.check(images)
        if images.dtype == torch.uint8 and not self.resizes(*images.shape[-2:]):
            return self._normalize(images)  # bit for bit what bench run feeds the model
        if images.dtype == torch.uint8:
            x = images.float().div_(255.0)
        else:
            x = images.to(torch.float32, copy=True)
        if self.resizes(*x.shape[-2:]):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              antialias=True, align_corners=False)
        mean = self._normalize.mean.to(x.device)
        std = self._normalize.std.to(x.device)
        return x.sub_(mean).div_(std)
