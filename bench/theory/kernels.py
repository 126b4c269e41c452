"""Analytic NTK and NNGP kernels of deep fully connected ReLU networks (NTK parameterisation).

The network (Wang, Zhao & Li, ICML 2021, Sec. 3.1 and Appendix A.3) has ``depth`` = L dense
layers: L - 1 ReLU hidden layers and a linear read-out head without bias. In the NTK
parameterisation (Jacot et al. 2018; Lee et al. 2019, "Wide neural networks of any depth evolve
as linear models") every weight is drawn from N(0, 1) and each layer computes

    h^{l+1} = w_std / sqrt(fan_in) * z^l W^{l+1} + b_std * b^{l+1},   z^l = relu(h^l),

with w_std = sqrt(2) (He et al. 2015) and b_std = 0 by default (the head never has a bias). This
is the convention of Neural Tangents' ``stax.Dense(W_std, b_std, parameterization="ntk")``.

The infinite-width kernels follow the layer-by-layer recursion of Lee et al. (2019, App. C/E) and
Arora et al. (2019, "On exact computation with an infinitely wide neural net"), with the
arc-cosine expectations of Cho & Saul (2009) for ReLU:

    K^1(x, x')      = w_std^2 <x, x'> / d + b_std^2,            Theta^1 = K^1
    K^{l+1}(x, x')  = w_std^2 k1(K^l) + b_std^2
    Theta^{l+1}     = K^{l+1} + w_std^2 k0(K^l) Theta^l

where, with q, q' the variances of x and x' and cos(t) = K(x, x') / sqrt(q q'),

    k1 = E[relu(u) relu(v)]   = sqrt(q q') / (2 pi) * (sin t + (pi - t) cos t)
    k0 = E[relu'(u) relu'(v)] = (pi - t) / (2 pi).

``K`` returned for depth L is the NNGP kernel of the head's input (the kernel of the head's
gradient, paper eq. (56)); ``Theta`` is the NTK of all parameters (paper eq. (55)).
All computations run in the dtype of the inputs; pass float64 for the paper's formulas.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from bench.theory.options import HE_W_STD  # noqa: E402,F401  (defined without torch)


@dataclass(frozen=True)
class ReluNetConfig:
    """Architecture of the fully connected ReLU network whose kernels are computed.

    ``w_std`` and ``b_std`` are the NTK-parameterisation scales; the head never has a bias.
    """

    w_std: float = HE_W_STD
    b_std: float = 0.0

    def __post_init__(self) -> None:
        if not self.w_std > 0:
            raise ValueError(f"w_std must be positive, got {self.w_std}")
        if self.b_std < 0:
            raise ValueError(f"b_std must be non-negative, got {self.b_std}")


class Kernels(NamedTuple):
    """NTK ``ntk`` (Theta) and NNGP ``nngp`` (K), each of shape ``[..., n1, n2]``."""

    ntk: Tensor
    nngp: Tensor


def _check_inputs(x1: Tensor, x2: Tensor) -> None:
    if x1.dim() < 2 or x2.dim() < 2:
        raise ValueError(
            f"inputs must be [..., n, d]; got shapes {tuple(x1.shape)} and {tuple(x2.shape)}"
        )
    if x1.shape[-1] != x2.shape[-1]:
        raise ValueError(
            f"inputs disagree on the feature dimension: {x1.shape[-1]} vs {x2.shape[-1]}"
        )
    if x1.dtype != x2.dtype:
        raise ValueError(f"inputs disagree on dtype: {x1.dtype} vs {x2.dtype}")


def relu_expectations(cov: Tensor, var1: Tensor, var2: Tensor) -> tuple[Tensor, Tensor]:
    """Arc-cosine expectations ``(E[relu(u)relu(v)], E[relu'(u)relu'(v)])`` (Cho & Saul 2009).

    ``(u, v)`` is a centred Gaussian pair with covariance ``cov`` ``[..., n1, n2]`` and variances
    ``var1`` ``[..., n1]`` and ``var2`` ``[..., n2]``.
    """
    norms = torch.sqrt(var1.unsqueeze(-1) * var2.unsqueeze(-2))
    cos = torch.clamp(cov / norms, -1.0, 1.0)
    angle = torch.arccos(cos)
    sin = torch.sqrt(torch.clamp(1.0 - cos * cos, min=0.0))
    k1 = norms / (2.0 * math.pi) * (sin + (math.pi - angle) * cos)
    k0 = (math.pi - angle) / (2.0 * math.pi)
    return k1, k0


def relu_kernels_all_depths(
    x1: Tensor, x2: Tensor | None, max_depth: int, config: ReluNetConfig = ReluNetConfig()
) -> Kernels:
    """Theta and K of the depth-L ReLU network for every L = 1..``max_depth`` in one recursion.

    Returns tensors of shape ``[max_depth, ..., n1, n2]``; index ``L - 1`` holds depth L
    (L dense layers, L - 1 hidden ReLU layers, head without bias). ``x2=None`` means ``x2 = x1``.
    """
    if max_depth < 1:
        raise ValueError(f"max_depth must be at least 1, got {max_depth}")
    x2 = x1 if x2 is None else x2
    _check_inputs(x1, x2)
    dim = x1.shape[-1]
    w2, b2 = config.w_std**2, config.b_std**2
    # Hidden-layer pre-activation kernels (with bias) that feed the next ReLU.
    dot = x1 @ x2.transpose(-1, -2) / dim
    cov = w2 * dot + b2
    var1 = w2 * (x1 * x1).sum(-1) / dim + b2
    var2 = w2 * (x2 * x2).sum(-1) / dim + b2
    ntk = cov
    ntks, nngps = [w2 * dot], [w2 * dot]  # depth 1: a linear head without bias
    for _ in range(1, max_depth):
        k1, k0 = relu_expectations(cov, var1, var2)
        head_nngp = w2 * k1  # the head has no bias
        ntks.append(head_nngp + w2 * k0 * ntk)
        nngps.append(head_nngp)
        ntk = head_nngp + b2 + w2 * k0 * ntk
        cov = head_nngp + b2
        var1 = w2 * var1 / 2.0 + b2  # k1 on the diagonal (angle 0) is var / 2
        var2 = w2 * var2 / 2.0 + b2
    return Kernels(ntk=torch.stack(ntks), nngp=torch.stack(nngps))


def relu_kernels(
    x1: Tensor, x2: Tensor | None, depth: int, config: ReluNetConfig = ReluNetConfig()
) -> Kernels:
    """Theta and K ``[..., n1, n2]`` of the depth-``depth`` ReLU network (see module docstring)."""
    every = relu_kernels_all_depths(x1, x2, depth, config)
    return Kernels(ntk=every.ntk[depth - 1], nngp=every.nngp[depth - 1])
