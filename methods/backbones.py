"""Shared backbones: ResNet-12 (Lee et al. 2019; Tian et al. 2020) and Conv4 (Vinyals et al. 2016).

CONTRACT (used by every method and the training step):
- ``Backbone`` is an ``nn.Module`` mapping float images ``[B, C, H, W]`` to features ``[B, out_dim]``.
- ``advance_schedule()`` is called once per optimiser step (DropBlock's ramp counts optimiser
  steps, not forward calls: docs/references.md#bugs-avoided, B4); ``schedule_step`` is that
  count and is saved in ``state_dict`` (extra state), so checkpoints resume the ramp. How many
  steps the ramp lasts is the budget's (``TrainBudget.dropblock_ramp_steps``), set so that it
  ends where the reference's forward-call ramp ends (docs/references.md#backbones).
- ``build_backbone(name, in_channels, image_size, feature_mode, drop_rate, dropblock_size,
  ramp_steps)``.

References:
- Lee, Maji, Ravichandran & Soatto, "Meta-Learning with Differentiable Convex Optimization"
  (MetaOptNet, CVPR 2019): the few-shot ResNet-12 (64-160-320-640, DropBlock in stages 3-4) and
  its flattened 16,000-d / 2,560-d features.
- Tian, Wang, Krishnan, Tenenbaum & Isola, "Rethinking Few-Shot Image Classification: a Good
  Embedding Is All You Need?" (RFS, ECCV 2020): the same network with adaptive average pooling
  (640-d), which the MTL paper (Wang, Zhao & Li, ICML 2021) reuses.
- Ghiasi, Lin & Le, "DropBlock: A regularization method for convolutional networks"
  (NeurIPS 2018): the structured dropout and its linear keep-probability ramp.
- Vinyals et al., "Matching Networks for One Shot Learning" (NeurIPS 2016) and Finn, Abbeel &
  Levine, "Model-Agnostic Meta-Learning" (ICML 2017): the four-block "CNN-4" (Conv4).

Every backbone is device-agnostic (no ``.cuda()``), has no host-device synchronisation in its
forward pass, and is ``channels_last``-friendly (features are taken with ``flatten``, never
``.view``).
"""
from __future__ import annotations

import difflib

import torch
import torch.nn.functional as F
from torch import nn

BACKBONES = ("resnet12", "conv4-32", "conv4-64")
FEATURE_MODES = ("avg", "flatten")

RESNET12_CHANNELS = (64, 160, 320, 640)
"""Stage widths of the few-shot ResNet-12 (Lee et al. 2019; docs/references.md#backbones)."""
DROPBLOCK_STAGES = (False, False, True, True)
"""Stages 1-2 use plain dropout, stages 3-4 DropBlock (docs/references.md#backbones)."""
DROPBLOCK_RAMP_STEPS = 40_000
"""Default number of optimiser steps over which DropBlock's drop probability ramps from 0 to
``drop_rate`` (the references' constant; budgets set their own)."""
LEAKY_SLOPE = 0.1
N_POOLS = 4
"""Both backbones halve the spatial size four times (one 2x2 max-pool per stage)."""
MIN_IMAGE_SIZE = 2 ** N_POOLS


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


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------

def pooled_size(image_size: int, n_pools: int = N_POOLS) -> int:
    """Spatial side after ``n_pools`` floor-mode 2x2 max-pools (84 -> 5, 32 -> 2, 28 -> 1)."""
    if image_size < 2 ** n_pools:
        raise ValueError(
            f"image_size={image_size} is too small: {n_pools} 2x2 max-pools need at least "
            f"{2 ** n_pools} pixels per side"
        )
    size = image_size
    for _ in range(n_pools):
        size //= 2
    return size


def default_dropblock_size(image_size: int) -> int:
    """DropBlock block size used upstream: 5 for 84 px (mini/tiered), 2 for 32 px (CIFAR-FS/FC100)."""
    return 5 if image_size >= 64 else 2


def dropblock_keep_rate(step: int, drop_rate: float,
                        ramp_steps: int | None = DROPBLOCK_RAMP_STEPS) -> float:
    """Keep probability after ``step`` optimiser steps: ``max(1 - drop_rate*t/ramp, 1 - drop_rate)``.

    The linear ramp of Ghiasi et al. (2018). Upstream counts forward calls over 40,000 counts;
    here ``t`` counts optimiser steps (docs/references.md#bugs-avoided, B4) over ``ramp_steps``
    (0: the full drop rate at once; None: the ramp never advances, keep rate 1, as in
    MetaOptNet's 4-GPU ``DataParallel`` runs, docs/references.md#backbones).
    """
    if ramp_steps is None:
        return 1.0
    if ramp_steps <= 0:
        return 1.0 - drop_rate
    return max(1.0 - drop_rate * step / ramp_steps, 1.0 - drop_rate)


def _validate_common(in_channels: int, image_size: int, feature_mode: str) -> None:
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1 (3 for RGB, 1 for grayscale), got {in_channels}")
    if feature_mode not in FEATURE_MODES:
        raise ValueError(
            f"unknown feature_mode {feature_mode!r}; valid feature modes: {', '.join(FEATURE_MODES)}"
        )
    pooled_size(image_size)


def _validate_drop_rate(drop_rate: float) -> None:
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")


class FeatureHead(nn.Module):
    """Turns the last feature map ``[B, C, s, s]`` into a vector.

    ``avg``: ``AdaptiveAvgPool2d(1)`` then flatten, ``C``-d at any input size (RFS / MTL).
    ``flatten``: ``C*s*s``-d, fixed by the ``image_size`` the backbone was built for (MetaOptNet).
    """

    def __init__(self, mode: str, channels: int, spatial: int) -> None:
        super().__init__()
        self.mode = mode
        self.spatial = spatial
        self.out_dim = channels if mode == "avg" else channels * spatial * spatial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "avg":
            return F.adaptive_avg_pool2d(x, 1).flatten(1)
        if tuple(x.shape[-2:]) != (self.spatial, self.spatial):
            raise ValueError(
                f"feature_mode='flatten' was built for a {self.spatial}x{self.spatial} final map "
                f"but got {x.shape[-2]}x{x.shape[-1]}: build the backbone with the image_size you "
                f"feed it, or use feature_mode='avg'"
            )
        return x.flatten(1)


# --------------------------------------------------------------------------------------------
# DropBlock
# --------------------------------------------------------------------------------------------

def dropblock_gamma(keep_rate: float, block_size: int, height: int, width: int) -> float:
    """Seed probability so that about ``1 - keep_rate`` of the map is dropped (Ghiasi et al. 2018, Eq. 1).

    ``gamma = (1-keep_rate)/bs^2 * (h*w) / ((h-bs+1)*(w-bs+1))``; for square maps this is the
    ``fs^2/(fs-bs+1)^2`` form of docs/references.md#backbones.
    """
    valid = (height - block_size + 1) * (width - block_size + 1)
    return (1.0 - keep_rate) / block_size ** 2 * (height * width) / valid


class DropBlock(nn.Module):
    """DropBlock (Ghiasi et al. 2018) as used by MetaOptNet and RFS, without their ``.cuda()``.

    In training mode, seeds are drawn with probability ``gamma`` on the ``(h-bs+1) x (w-bs+1)``
    positions where a whole ``bs x bs`` block fits (per sample and channel), each seed is grown
    into its block, the blocks are zeroed and the output is rescaled by
    ``numel / number_kept``. The block size is clamped to the map size, so tiny maps (a 1x1 map
    at 28 px) still work. In eval mode, or when ``keep_rate >= 1``, it is the identity.

    ``keep_rate`` is passed in by the owning backbone on every call (from its
    ``schedule_step``), so this module holds no counter of its own.
    """

    def __init__(self, block_size: int) -> None:
        super().__init__()
        if block_size < 1:
            raise ValueError(f"DropBlock block_size must be >= 1, got {block_size}")
        self.block_size = block_size

    def extra_repr(self) -> str:
        return f"block_size={self.block_size}"

    def forward(self, x: torch.Tensor, keep_rate: float | torch.Tensor) -> torch.Tensor:
        if not self.training or (isinstance(keep_rate, float) and keep_rate >= 1.0):
            return x  # a 0-d tensor keep rate (ResNet12's) yields gamma 0 and an all-ones mask
        mask = self.keep_mask(x, keep_rate)
        scale = mask.numel() / mask.sum().clamp_min(1.0)  # all dropped: output is 0, not NaN
        return x * (mask * scale).to(x.dtype)

    def keep_mask(self, x: torch.Tensor, keep_rate: float) -> torch.Tensor:
        """Float32 mask shaped like ``x``: 0 inside dropped blocks, 1 elsewhere."""
        batch, channels, height, width = x.shape
        bs = min(self.block_size, height, width)
        gamma = dropblock_gamma(keep_rate, bs, height, width)
        seed_shape = (batch, channels, height - bs + 1, width - bs + 1)
        seeds = (torch.rand(seed_shape, device=x.device) < gamma).float()
        return 1.0 - grow_blocks(seeds, bs)


def grow_blocks(seeds: torch.Tensor, block_size: int) -> torch.Tensor:
    """Grow each seed of a 0/1 map ``[B, C, h-bs+1, w-bs+1]`` into a ``bs x bs`` block.

    A seed at (i, j) marks rows i..i+bs-1 and columns j..j+bs-1 of the ``[B, C, h, w]`` result,
    so every block lies fully inside the map. This is upstream's geometry (seed map padded by
    left=(bs-1)//2, right=bs//2, each seed grown by offsets 0..bs-1), written as one max-pool of
    width ``bs`` over the seed map zero-padded by ``bs-1`` on every side.
    """
    padded = F.pad(seeds, (block_size - 1,) * 4)
    return F.max_pool2d(padded, kernel_size=block_size, stride=1)


# --------------------------------------------------------------------------------------------
# ResNet-12
# --------------------------------------------------------------------------------------------

def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)


class ResNet12Block(nn.Module):
    """One ResNet-12 stage (Lee et al. 2019; Tian et al. 2020; docs/references.md#backbones).

    3 x (conv3x3 -> BN), LeakyReLU(0.1) between them, plus a 1x1-conv+BN shortcut, then
    LeakyReLU(0.1), ``MaxPool2d(2)`` and either dropout (``dropblock_size=None``) or DropBlock.
    """

    def __init__(self, in_channels: int, out_channels: int, drop_rate: float,
                 dropblock_size: int | None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv3 = _conv3x3(out_channels, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.pool = nn.MaxPool2d(2)
        self.drop_rate = drop_rate
        self.dropblock = DropBlock(dropblock_size) if dropblock_size is not None else None

    def forward(self, x: torch.Tensor, keep_rate: float | torch.Tensor = 1.0) -> torch.Tensor:
        out = F.leaky_relu(self.bn1(self.conv1(x)), LEAKY_SLOPE)
        out = F.leaky_relu(self.bn2(self.conv2(out)), LEAKY_SLOPE)
        out = self.bn3(self.conv3(out))
        out = self.pool(F.leaky_relu(out + self.shortcut(x), LEAKY_SLOPE))
        return self.regularise(out, keep_rate)

    def regularise(self, out: torch.Tensor, keep_rate: float | torch.Tensor) -> torch.Tensor:
        """Dropout (stages 1-2) or DropBlock at ``keep_rate`` (stages 3-4); identity in eval."""
        if self.dropblock is not None:
            return self.dropblock(out, keep_rate)
        if self.drop_rate > 0.0:
            return F.dropout(out, p=self.drop_rate, training=self.training)
        return out


def _init_resnet12(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, leaky_relu, a=0) convs; BN weight 1, bias 0
    (docs/references.md#backbones)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNet12(Backbone):
    """The few-shot ResNet-12 of MetaOptNet (Lee et al. 2019) and RFS (Tian et al. 2020).

    Four stages of one block, widths 64-160-320-640, 12,424,320 parameters. Dropout at
    ``drop_rate`` after stages 1-2; DropBlock (Ghiasi et al. 2018) with ``dropblock_size`` after
    stages 3-4, whose keep rate ramps with ``schedule_step`` (optimiser steps) over
    ``ramp_steps``. Features: 640-d (``avg``) or ``640*s*s`` (``flatten``: 16,000 at 84 px,
    2,560 at 32 px, 640 at 28 px).
    """

    def __init__(self, in_channels: int = 3, image_size: int = 84, feature_mode: str = "avg",
                 drop_rate: float = 0.1, dropblock_size: int | None = None,
                 ramp_steps: int | None = DROPBLOCK_RAMP_STEPS) -> None:
        super().__init__()
        _validate_common(in_channels, image_size, feature_mode)
        _validate_drop_rate(drop_rate)
        self.in_channels = in_channels
        self.image_size = image_size
        self.feature_mode = feature_mode
        self.drop_rate = drop_rate
        self.ramp_steps = ramp_steps
        self.dropblock_size = (default_dropblock_size(image_size)
                               if dropblock_size is None else dropblock_size)
        self.blocks = nn.ModuleList(self._make_blocks())
        self.head = FeatureHead(feature_mode, RESNET12_CHANNELS[-1], pooled_size(image_size))
        self.out_dim = self.head.out_dim
        self.register_buffer("_keep_rate", torch.ones(()), persistent=False)
        self._sync_keep_rate()
        _init_resnet12(self)

    def _make_blocks(self) -> list[ResNet12Block]:
        widths = (self.in_channels, *RESNET12_CHANNELS)
        return [
            ResNet12Block(widths[i], widths[i + 1], self.drop_rate,
                          self.dropblock_size if DROPBLOCK_STAGES[i] else None)
            for i in range(len(RESNET12_CHANNELS))
        ]

    @property
    def keep_rate(self) -> float:
        """DropBlock keep probability at the current ``schedule_step``."""
        return dropblock_keep_rate(self.schedule_step, self.drop_rate, self.ramp_steps)

    def advance_schedule(self, steps: int = 1) -> None:
        super().advance_schedule(steps)
        self._sync_keep_rate()

    def set_extra_state(self, state: dict) -> None:
        super().set_extra_state(state)
        self._sync_keep_rate()

    def _sync_keep_rate(self) -> None:
        """Mirror the keep rate into a 0-d buffer. ``forward`` reads the buffer, not the int
        step, so ``torch.compile`` does not specialise on (and recompile at) every step."""
        self._keep_rate.fill_(self.keep_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, self._keep_rate)
        return self.head(x)


# --------------------------------------------------------------------------------------------
# Conv4
# --------------------------------------------------------------------------------------------

class Conv4(Backbone):
    """The four-block "CNN-4" of Vinyals et al. (2016) and Finn et al. (2017).

    Each block: conv3x3 (padding 1, with bias) -> BatchNorm -> ReLU -> MaxPool2d(2). Convs use
    Xavier-uniform weights and zero bias, as in Finn et al.'s MAML code; BN weight 1, bias 0.
    Features: ``filters``-d (``avg``) or ``filters*s*s`` (``flatten``: 800 for 32 filters at
    84 px, 64 for 64 filters at 28 px).
    """

    def __init__(self, filters: int = 64, in_channels: int = 3, image_size: int = 84,
                 feature_mode: str = "avg") -> None:
        super().__init__()
        _validate_common(in_channels, image_size, feature_mode)
        if filters < 1:
            raise ValueError(f"Conv4 filters must be >= 1, got {filters}")
        self.filters = filters
        self.in_channels = in_channels
        self.image_size = image_size
        self.feature_mode = feature_mode
        widths = (in_channels,) + (filters,) * N_POOLS
        self.blocks = nn.Sequential(*(self._block(widths[i], widths[i + 1]) for i in range(N_POOLS)))
        self.head = FeatureHead(feature_mode, filters, pooled_size(image_size))
        self.out_dim = self.head.out_dim
        self._init_weights()

    @staticmethod
    def _block(in_channels: int, out_channels: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=True),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------

def _unknown_backbone(name: str) -> ValueError:
    close = difflib.get_close_matches(name.strip().lower(), BACKBONES, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown backbone {name!r}.{hint} Valid backbones: {', '.join(BACKBONES)}.")


def build_backbone(name: str, in_channels: int = 3, image_size: int = 84,
                   feature_mode: str = "avg", drop_rate: float = 0.1,
                   dropblock_size: int | None = None,
                   ramp_steps: int | None = DROPBLOCK_RAMP_STEPS) -> Backbone:
    """Build a backbone by name (one of :data:`BACKBONES`).

    ``drop_rate``, ``dropblock_size`` and ``ramp_steps`` (DropBlock's ramp in optimiser steps,
    None: never advances) apply to ResNet-12 only (Conv4 has no dropout);
    ``dropblock_size=None`` picks 5 for images of 64 px or more, else 2
    (docs/references.md#backbones).
    Raises ``ValueError`` listing the valid choices for a bad name or feature mode.
    """
    key = name.strip().lower()
    if key not in BACKBONES:
        raise _unknown_backbone(name)
    if feature_mode not in FEATURE_MODES:
        raise ValueError(
            f"unknown feature_mode {feature_mode!r}; valid feature modes: {', '.join(FEATURE_MODES)}"
        )
    if key == "resnet12":
        return ResNet12(in_channels, image_size, feature_mode, drop_rate, dropblock_size,
                        ramp_steps)
    filters = int(key.split("-")[1])
    return Conv4(filters, in_channels, image_size, feature_mode)
