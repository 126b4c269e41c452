"""Shared backbones: ResNet-12 (Lee et al. 2019; Tian et al. 2020) and Conv4 (Vinyals et al. 2016).

CONTRACT (used by every method and the runner):
- ``Backbone`` is an ``nn.Module`` mapping float images ``[B, C, H, W]`` to features ``[B, out_dim]``.
- ``advance_schedule()`` is called once per optimiser step (DropBlock's ramp counts optimiser
  steps, not forward calls: FACTS.md 8.11); ``schedule_step`` is that count and is saved in
  ``state_dict`` (extra state), so checkpoints resume the ramp.
- ``build_backbone(name, in_channels, image_size, feature_mode, drop_rate, dropblock_size)``.
"""
from __future__ import annotations

from torch import nn

BACKBONES = ("resnet12", "conv4-32", "conv4-64")
FEATURE_MODES = ("avg", "flatten")


class Backbone(nn.Module):
    """Base class: subclasses set ``out_dim`` and implement ``forward``."""

    out_dim: int

    def __init__(self) -> None:
        super().__init__()
        self.schedule_step = 0

    def advance_schedule(self, steps: int = 1) -> None:
        self.schedule_step += steps

    def get_extra_state(self) -> dict:
        return {"schedule_step": self.schedule_step}

    def set_extra_state(self, state: dict) -> None:
        self.schedule_step = int(state["schedule_step"])
