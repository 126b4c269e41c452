"""Check the analytic kernels against empirical kernels of finite-width networks.

For each depth and width, ``draws`` independent networks are initialised; the report gives the
relative Frobenius error ``||Theta_hat - Theta||_F / ||Theta||_F`` (and likewise for K) of the
average of the draws and the median error of a single draw. A single draw fluctuates by
O(sqrt(L / width)) (Hanin & Nica 2020, "Finite depth and width corrections to the neural
tangent kernel"); the draw average converges to the analytic kernel as the width grows. The
paper (Sec. 5.1) itself used empirical kernels of single width-512 networks.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import Tensor

from bench.theory.kernels import ReluNetConfig, relu_kernels
from bench.theory.network import empirical_kernels, init_params


@dataclass(frozen=True)
class ValidationRow:
    """One (depth, width) cell of the kernel check."""

    depth: int
    width: int
    draws: int
    points: int
    ntk_error_mean_kernel: float
    nngp_error_mean_kernel: float
    ntk_error_single_median: float
    nngp_error_single_median: float


def relative_error(estimate: Tensor, reference: Tensor) -> float:
    """``||estimate - reference||_F / ||reference||_F``."""
    return float(torch.linalg.norm(estimate - reference) / torch.linalg.norm(reference))


def validate_cell(
    points: Tensor, depth: int, width: int, draws: int, seed: int,
    net: ReluNetConfig = ReluNetConfig(), dtype: torch.dtype = torch.float64,
) -> ValidationRow:
    """Compare ``draws`` empirical kernels at one (depth, width) with the analytic ones."""
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    x = points.to(dtype)
    analytic = relu_kernels(points.to(torch.float64), None, depth, net)
    ntk_sum = torch.zeros_like(analytic.ntk)
    nngp_sum = torch.zeros_like(analytic.nngp)
    ntk_single, nngp_single = [], []
    for draw in range(draws):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + draw)
        params = init_params(x.shape[-1], width, depth, generator, dtype, "cpu", net)
        emp = empirical_kernels(params, x, x, net)
        ntk, nngp = emp.ntk.to(torch.float64), emp.nngp.to(torch.float64)
        ntk_single.append(relative_error(ntk, analytic.ntk))
        nngp_single.append(relative_error(nngp, analytic.nngp))
        ntk_sum += ntk
        nngp_sum += nngp
        del params
    return ValidationRow(
        depth=depth,
        width=width,
        draws=draws,
        points=points.shape[0],
        ntk_error_mean_kernel=relative_error(ntk_sum / draws, analytic.ntk),
        nngp_error_mean_kernel=relative_error(nngp_sum / draws, analytic.nngp),
        ntk_error_single_median=statistics.median(ntk_single),
        nngp_error_single_median=statistics.median(nngp_single),
    )


def validate_kernels(
    points: Tensor, depths: Iterable[int], widths: Iterable[int], draws: int, seed: int = 0,
    net: ReluNetConfig = ReluNetConfig(), dtype: torch.dtype = torch.float64,
    progress: Callable[[str], None] | None = None,
) -> list[ValidationRow]:
    """Every (depth, width) cell; ``progress`` is called after each with a short label."""
    rows = []
    for depth in depths:
        for width in widths:
            rows.append(validate_cell(points, depth, width, draws, seed, net, dtype))
            if progress is not None:
                progress(f"L={depth} width={width}")
    return rows
