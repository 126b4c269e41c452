"""Finite-width fully connected ReLU networks in the NTK parameterisation, and their kernels.

The network matches ``kernels.py`` (Wang, Zhao & Li, ICML 2021, Appendix A.3; Lee et al. 2019):
weights and biases are N(0, 1) parameters, layer l computes
``w_std / sqrt(fan_in) * z W + b_std * b``, hidden layers use ReLU and the read-out head has no
bias. Parameters are kept as a plain dict of tensors so that ``torch.func`` can differentiate the
network as a pure function of them.

Empirical kernels (Lee et al. 2019, eqs. (55)-(56) of the paper):
- NTK ``Theta_hat(x, x') = J(x) J(x')^T`` over all parameters, computed with ``torch.func``
  without materialising a Jacobian (Novak et al. 2022, "Fast finite width neural tangent
  kernel"): by per-layer Jacobian contraction (:func:`empirical_ntk`, fast) or by NTK-vector
  products, one ``vjp`` and one ``jvp`` per column (:func:`empirical_ntk_products`, a check).
- NNGP ``K_hat(x, x') = grad_w f(x) grad_w f(x')^T`` over the head ``w`` only, i.e.
  ``w_std^2 phi(x) phi(x')^T / width``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.func import jvp, vjp

from bench.theory.kernels import Kernels, ReluNetConfig

Params = dict[str, Tensor]
HEAD = "head"


def layer_names(depth: int) -> list[str]:
    """Names of the hidden layers' weights, in order (``depth - 1`` of them)."""
    return [f"w{layer}" for layer in range(1, depth)]


def layer_names_in(params: Params) -> list[str]:
    """Hidden-layer weight names present in ``params``, in order."""
    names, layer = [], 1
    while f"w{layer}" in params:
        names.append(f"w{layer}")
        layer += 1
    return names


def init_params(
    in_dim: int,
    width: int,
    depth: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    config: ReluNetConfig = ReluNetConfig(),
) -> Params:
    """Draw NTK-parameterised parameters ~ N(0, 1): weights ``w1..w{L-1}``, biases ``b1..``
    and the head ``[width, 1]``.

    Biases are created only when ``config.b_std > 0``. ``depth`` counts dense layers (>= 2).
    """
    if depth < 2:
        raise ValueError(f"a network needs at least one hidden layer (depth >= 2), got {depth}")
    if width < 1:
        raise ValueError(f"width must be positive, got {width}")
    params: Params = {}
    fan_in = in_dim
    for name in layer_names(depth):
        params[name] = torch.randn(fan_in, width, generator=generator, dtype=dtype).to(device)
        if config.b_std > 0:
            params["b" + name[1:]] = torch.randn(width, generator=generator, dtype=dtype).to(device)
        fan_in = width
    params[HEAD] = torch.randn(width, 1, generator=generator, dtype=dtype).to(device)
    return params


def _hidden_pass(
    params: Params, x: Tensor, config: ReluNetConfig, taps: list[Tensor] | None = None
) -> tuple[Tensor, list[Tensor]]:
    """Hidden layers: returns phi(x) and every hidden layer's input ``z_{l-1}``.

    ``taps[l - 1]``, when given, is added to layer l's pre-activation, so that the gradient of
    the output with respect to it is the back-propagated signal ``df/dh_l``.
    """
    z, inputs = x, []
    for layer, name in enumerate(layer_names_in(params), start=1):
        weight = params[name]
        inputs.append(z)
        h = config.w_std / math.sqrt(weight.shape[0]) * (z @ weight)
        bias = params.get(f"b{layer}")
        if bias is not None:
            h = h + config.b_std * bias
        if taps is not None:
            h = h + taps[layer - 1]
        z = torch.relu(h)
    return z, inputs


def features(params: Params, x: Tensor, config: ReluNetConfig = ReluNetConfig()) -> Tensor:
    """Last hidden layer's post-activations phi(x) ``[..., width]``."""
    return _hidden_pass(params, x, config)[0]


def head_output(phi: Tensor, head: Tensor, config: ReluNetConfig = ReluNetConfig()) -> Tensor:
    """Read-out ``w_std / sqrt(width) * phi @ head``; ``head`` is ``[width, k]`` or batched."""
    return config.w_std / math.sqrt(phi.shape[-1]) * (phi @ head)


def forward(params: Params, x: Tensor, config: ReluNetConfig = ReluNetConfig()) -> Tensor:
    """Network output f(x) ``[..., n]`` for a single-output head (``k = 1``)."""
    return head_output(features(params, x, config), params[HEAD], config).squeeze(-1)


def _layer_signals(
    params: Params, x: Tensor, config: ReluNetConfig
) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """Per hidden layer: inputs ``z_{l-1}`` ``[n, fan_in]`` and signals ``df/dh_l``
    ``[n, width]``; and phi(x)."""
    width = params[HEAD].shape[0]
    taps = [
        torch.zeros(x.shape[0], width, dtype=x.dtype, device=x.device)
        for _ in layer_names_in(params)
    ]

    def output(t: list[Tensor]) -> tuple[Tensor, tuple[list[Tensor], Tensor]]:
        phi, inputs = _hidden_pass(params, x, config, t)
        return head_output(phi, params[HEAD], config).squeeze(-1), (inputs, phi)

    _, pullback, (inputs, phi) = vjp(output, taps, has_aux=True)
    # Each output f(x_a) depends only on row a of every tap, so one pullback of ones
    # returns every row's own signal.
    (signals,) = pullback(torch.ones(x.shape[0], dtype=x.dtype, device=x.device))
    return inputs, list(signals), phi


def empirical_ntk(
    params: Params, x1: Tensor, x2: Tensor, config: ReluNetConfig = ReluNetConfig()
) -> Tensor:
    """Finite-width NTK ``J(x1) J(x2)^T`` ``[n1, n2]`` by per-layer Jacobian contraction.

    ``torch.func.vjp`` gives each hidden layer's back-propagated signal ``delta_l = df/dh_l``;
    a dense layer's Jacobian is the outer product of its input and that signal, so its block of
    the NTK is ``(w_std^2 / fan_in * Z Z'^T + b_std^2 [bias]) * (Delta Delta'^T)`` (elementwise),
    and the head contributes the empirical NNGP. This is the "structured derivatives" contraction
    of Novak et al. (2022) and costs one forward and backward pass per input set.
    """
    if x1.dim() != 2 or x2.dim() != 2:
        raise ValueError("empirical_ntk takes unbatched inputs [n, d]")
    in1, sig1, phi1 = _layer_signals(params, x1, config)
    in2, sig2, phi2 = _layer_signals(params, x2, config)
    ntk = config.w_std**2 * (phi1 @ phi2.T) / phi1.shape[-1]
    for layer, (z1, z2, d1, d2) in enumerate(zip(in1, in2, sig1, sig2), start=1):
        inputs_kernel = config.w_std**2 * (z1 @ z2.T) / z1.shape[-1]
        if f"b{layer}" in params:
            inputs_kernel = inputs_kernel + config.b_std**2
        ntk = ntk + inputs_kernel * (d1 @ d2.T)
    return ntk


def empirical_ntk_products(
    params: Params, x1: Tensor, x2: Tensor, config: ReluNetConfig = ReluNetConfig()
) -> Tensor:
    """Finite-width NTK by NTK-vector products: ``vjp`` at ``x2`` then ``jvp`` at ``x1`` per column.

    Slower than :func:`empirical_ntk` but structure-agnostic; kept as an independent check.
    """
    if x1.dim() != 2 or x2.dim() != 2:
        raise ValueError("empirical_ntk_products takes unbatched inputs [n, d]")
    _, pullback = vjp(lambda p: forward(p, x2, config), params)
    columns = []
    for j in range(x2.shape[0]):
        cotangent = torch.zeros(x2.shape[0], dtype=x2.dtype, device=x2.device)
        cotangent[j] = 1.0
        (tangent,) = pullback(cotangent)  # J(x2)^T e_j, a parameter-shaped dict
        _, column = jvp(lambda p: forward(p, x1, config), (params,), (tangent,))
        columns.append(column)
    return torch.stack(columns, dim=-1)


def empirical_nngp(
    params: Params, x1: Tensor, x2: Tensor, config: ReluNetConfig = ReluNetConfig()
) -> Tensor:
    """Finite-width NNGP ``grad_w f(x1) grad_w f(x2)^T`` over the head ``w`` ``[n1, n2]``."""
    phi1, phi2 = features(params, x1, config), features(params, x2, config)
    return config.w_std**2 * (phi1 @ phi2.transpose(-1, -2)) / phi1.shape[-1]


def empirical_kernels(
    params: Params, x1: Tensor, x2: Tensor, config: ReluNetConfig = ReluNetConfig()
) -> Kernels:
    """Both finite-width kernels of one network draw."""
    return Kernels(
        ntk=empirical_ntk(params, x1, x2, config), nngp=empirical_nngp(params, x1, x2, config)
    )
