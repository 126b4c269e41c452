"""Pixel pipeline, batched on the device: uint8 -> float, optional augmentation, normalisation."""
from __future__ import annotations

from typing import Sequence

import torch


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
        return (images.float().div_(255.0) - mean) / std
