"""Finite-width MTL and ANIL networks trained by full-batch gradient descent (paper Sec. 4.3).

This is where the inner-loop lambda * tau can really change test predictions: Lemma 1's
closed forms cancel it (see ``predictors.py``), but they describe infinitely wide networks
trained to convergence. Here real NTK-parameterised ReLU MLPs (``network.py``) are trained on
the Sec. 5.1 tasks with the squared loss ``1/2 sum ||f - y||^2`` of Sec. 4.3:

- MTL (eq. (2)): one head per training task and shared hidden layers, trained jointly.
- ANIL (eqs. (3)-(4)): one head ``w``; for each task the inner loop takes ``tau`` gradient steps
  of rate ``lambda`` on the head only, and the outer loss after adaptation is differentiated
  through the inner loop (second order) with respect to the hidden layers and ``w``.

Both start from the same draw ``theta_0`` (paired comparison); every MTL head and ANIL's head
start from the same initial head ``w_0``. Two choices bring the finite networks to the setting
Lemma 1 is proved in (Appendix B.3.1, after Arora et al. 2019, which assumes the initial output
is negligible):

- centred outputs: every head's output is ``f(x) - f_0(x)`` with ``f_0(x) = phi_0(x) w_0`` the
  fixed output of the initial network (Chizat, Oyallon & Bach 2019; Hu et al. 2020), so the
  initial output is exactly zero without changing any kernel;
- labels are divided by their root mean square on the training tasks while training and
  fine-tuning, and predictions are multiplied back, so the residuals are O(1) (closer to the
  lazy, kernel regime) and reported differences are in the paper's label units.

At test time a fresh head, equal to ``w_0`` (the head for which the appendix's cross-kernel,
eq. (62), is ``Theta - K``), is fine-tuned on each test support set for ``tau_hat`` steps of
rate ``lambda_hat`` and predicts the query points (Sec. 3.4, eqs. (6)-(9)). ``lambda * tau`` is split as ``inner_steps`` steps of rate
``lambda_tau / inner_steps``; the analytic formulas use gradient flow, ``exp(-lambda tau K)``.

The outer learning rate is ``lr_scale / sigma_max(Theta)`` with Theta the analytic NTK of the
training inputs, a stable step for the linearised dynamics of both methods.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from bench.theory.kernels import ReluNetConfig, relu_kernels
from bench.theory.network import HEAD, Params, features, head_output, init_params
from bench.theory.tasks import TaskSet


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings for the trained networks."""

    width: int = 256
    steps: int = 1000
    inner_steps: int = 10
    lr_scale: float = 1.0
    dtype: torch.dtype = torch.float32
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.width < 1 or self.steps < 1 or self.inner_steps < 1:
            raise ValueError(
                f"width, steps and inner_steps must be positive; got {self.width}, "
                f"{self.steps}, {self.inner_steps}"
            )
        if not 0 < self.lr_scale < 2:
            raise ValueError(
                f"lr_scale must lie in (0, 2) for stable gradient descent, got {self.lr_scale}"
            )


@dataclass
class TrainedNet:
    """A trained network, ready for test-time fine-tuning of a fresh head.

    ``hidden``: trained hidden layers; ``init_head``: ``w_0``, the fresh test head;
    ``offset_support``/``offset_query``: the initial output ``f_0`` on the test tasks' support
    ``[B, n']`` and query ``[B, m]`` points (subtracted from every output: centring);
    ``label_scale``: labels are divided by it; losses are in scaled units.
    """

    hidden: Params
    init_head: Tensor
    offset_support: Tensor
    offset_query: Tensor
    label_scale: float
    initial_loss: float
    final_loss: float


def head_gradient(phi: Tensor, head: Tensor, targets: Tensor, config: ReluNetConfig) -> Tensor:
    """Gradient of ``1/2 ||f - y||^2`` with respect to the head, for batched tasks.

    ``phi [B, n, h]``, ``head [B, h, 1]``, ``targets [B, n]``. Written out (the loss is quadratic
    in the head) so that it stays differentiable with respect to ``phi``: back-propagating
    through it gives ANIL's second-order outer gradient.
    """
    scale = config.w_std / math.sqrt(phi.shape[-1])
    residual = head_output(phi, head, config) - targets.unsqueeze(-1)
    return scale * phi.transpose(-1, -2) @ residual


def adapt_head(
    phi: Tensor, head: Tensor, targets: Tensor, lam: float, steps: int, config: ReluNetConfig
) -> Tensor:
    """``steps`` gradient steps of rate ``lam`` on the head (the inner loop, eq. (4))."""
    for _ in range(steps):
        head = head - lam * head_gradient(phi, head, targets, config)
    return head


def adapted_residual(
    phi: Tensor, head: Tensor, targets: Tensor, lam: float, steps: int, config: ReluNetConfig
) -> Tensor:
    """Residual ``f_{w_tau}(X) - Y`` ``[B, n]`` after the inner loop, in closed form.

    On the squared loss the head's gradient steps act on the residual linearly:
    ``r_tau = (I - lam K_hat)^steps r_0`` with ``K_hat = w_std^2 phi phi^T / width``, the empirical
    NNGP of each task. This equals the unrolled loop of :func:`adapt_head` exactly (and so does
    its gradient, which therefore is ANIL's second-order outer gradient) at the cost of a few
    ``n x n`` products.
    """
    residual = head_output(phi, head, config).squeeze(-1) - targets
    if steps == 0 or lam == 0:
        return residual
    k_hat = config.w_std**2 * (phi @ phi.transpose(-1, -2)) / phi.shape[-1]
    eye = torch.eye(k_hat.shape[-1], dtype=k_hat.dtype, device=k_hat.device)
    contraction = torch.linalg.matrix_power(eye - lam * k_hat, steps)
    return (contraction @ residual.unsqueeze(-1)).squeeze(-1)


def learning_rate(x_train: Tensor, depth: int, net: ReluNetConfig, lr_scale: float) -> float:
    """``lr_scale / sigma_max(Theta(calX, calX))`` from the analytic NTK (float64)."""
    points = x_train.reshape(-1, x_train.shape[-1]).to(torch.float64).cpu()
    ntk = relu_kernels(points, None, depth, net).ntk
    return lr_scale / float(torch.linalg.eigvalsh(ntk)[-1])


def _squared_loss(prediction: Tensor, targets: Tensor) -> Tensor:
    return 0.5 * ((prediction - targets) ** 2).sum()


def _gd_step(tensors: list[Tensor], grads: tuple[Tensor, ...], lr: float) -> None:
    with torch.no_grad():
        for tensor, grad in zip(tensors, grads):
            tensor.sub_(lr * grad)


@dataclass
class _Start:
    """Initial state shared by MTL and ANIL for one (seed, depth): a paired comparison."""

    hidden: Params
    head: Tensor
    x: Tensor
    y: Tensor
    offset_train: Tensor
    offset_support: Tensor
    offset_query: Tensor
    label_scale: float


def label_scale(y_train: Tensor) -> float:
    """Root mean square of the training labels."""
    return float(torch.sqrt((y_train.to(torch.float64) ** 2).mean()))


def _start(
    tasks: TaskSet, depth: int, seed: int, train: TrainConfig, net: ReluNetConfig
) -> _Start:
    """Draw ``theta_0`` and ``w_0`` from ``seed``; move data to the device; record ``f_0``."""
    generator = torch.Generator().manual_seed(seed)
    params = init_params(
        tasks.x_train.shape[-1], train.width, depth, generator, train.dtype, train.device, net
    )
    head = params.pop(HEAD)

    def to_device(t: Tensor) -> Tensor:
        return t.to(device=train.device, dtype=train.dtype)

    def initial_output(x: Tensor) -> Tensor:
        with torch.no_grad():
            return head_output(features(params, to_device(x), net), head, net).squeeze(-1)

    scale = label_scale(tasks.y_train)
    return _Start(
        hidden={name: p.clone().requires_grad_(True) for name, p in params.items()},
        head=head,
        x=to_device(tasks.x_train),
        y=to_device(tasks.y_train) / scale,
        offset_train=initial_output(tasks.x_train),
        offset_support=initial_output(tasks.x_support),
        offset_query=initial_output(tasks.x_query),
        label_scale=scale,
    )


def _finish(start: _Start, initial: float, final: float) -> TrainedNet:
    return TrainedNet(
        hidden={name: p.detach() for name, p in start.hidden.items()},
        init_head=start.head,
        offset_support=start.offset_support,
        offset_query=start.offset_query,
        label_scale=start.label_scale,
        initial_loss=initial,
        final_loss=final,
    )


def _check_finite(loss: Tensor, method: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"{method} training diverged at step {step} (loss {loss.item()}); "
            "lower --lr-scale, or lower lambda * tau or raise --inner-steps so that each inner "
            "step's rate lambda stays below 2 / sigma_max(K) of a task"
        )


def _descend(
    loss_fn: Callable[[], Tensor], tensors: list[Tensor], lr: float, steps: int, method: str
) -> tuple[float, float]:
    """Full-batch gradient descent on ``loss_fn()``; returns the first and the final loss."""
    initial = None
    for step in range(steps):
        loss = loss_fn()
        _check_finite(loss, method, step)
        if initial is None:
            initial = float(loss.detach())
        _gd_step(tensors, torch.autograd.grad(loss, tensors), lr)
    final = loss_fn().detach()
    _check_finite(final, method, steps)
    return float(initial), float(final)


def train_mtl(
    tasks: TaskSet, depth: int, seed: int, train: TrainConfig, net: ReluNetConfig = ReluNetConfig()
) -> TrainedNet:
    """Multi-head MTL (eq. (2)): hidden layers and one head per task, joint gradient descent."""
    start = _start(tasks, depth, seed, train, net)
    heads = start.head.expand(start.x.shape[0], *start.head.shape).clone().requires_grad_(True)

    def loss_fn() -> Tensor:
        phi = features(start.hidden, start.x, net)
        return _squared_loss(head_output(phi, heads, net).squeeze(-1) - start.offset_train, start.y)

    lr = learning_rate(tasks.x_train, depth, net, train.lr_scale)
    initial, final = _descend(loss_fn, [*start.hidden.values(), heads], lr, train.steps, "MTL")
    return _finish(start, initial, final)


def train_anil(
    tasks: TaskSet, depth: int, seed: int, lam_tau: float, train: TrainConfig,
    net: ReluNetConfig = ReluNetConfig(),
) -> TrainedNet:
    """ANIL (eqs. (3)-(4)) with a second-order outer gradient through the head's inner loop."""
    if lam_tau < 0:
        raise ValueError(f"lam_tau must be non-negative, got {lam_tau}")
    start = _start(tasks, depth, seed, train, net)
    head = start.head.clone().requires_grad_(True)
    steps = train.inner_steps if lam_tau > 0 else 0
    lam = lam_tau / train.inner_steps
    # The inner loop fits the centred output: targets y - (-f_0) on the head's raw output.
    targets = start.y + start.offset_train

    def loss_fn() -> Tensor:
        phi = features(start.hidden, start.x, net)
        heads = head.expand(start.x.shape[0], *head.shape)
        return 0.5 * (adapted_residual(phi, heads, targets, lam, steps, net) ** 2).sum()

    lr = learning_rate(tasks.x_train, depth, net, train.lr_scale)
    initial, final = _descend(loss_fn, [*start.hidden.values(), head], lr, train.steps, "ANIL")
    return _finish(start, initial, final)


def query_predictions(
    trained: TrainedNet, tasks: TaskSet, lam_tau_hat: float, train: TrainConfig,
    net: ReluNetConfig = ReluNetConfig(),
) -> Tensor:
    """Query predictions ``[B, m]`` (label units) after fine-tuning the fresh head ``w_0``.

    The head starts from ``w_0`` on every test task and takes ``inner_steps`` steps of rate
    ``lam_tau_hat / inner_steps`` on the support set (none when ``lam_tau_hat`` is 0).
    """
    x_s = tasks.x_support.to(device=train.device, dtype=train.dtype)
    y_s = tasks.y_support.to(device=train.device, dtype=train.dtype) / trained.label_scale
    x_q = tasks.x_query.to(device=train.device, dtype=train.dtype)
    steps = train.inner_steps if lam_tau_hat > 0 else 0
    with torch.no_grad():
        phi_s, phi_q = features(trained.hidden, x_s, net), features(trained.hidden, x_q, net)
        start = trained.init_head.expand(x_s.shape[0], *trained.init_head.shape)
        targets = y_s + trained.offset_support
        head = adapt_head(phi_s, start, targets, lam_tau_hat / train.inner_steps, steps, net)
        centred = head_output(phi_q, head, net).squeeze(-1) - trained.offset_query
        return (centred * trained.label_scale).to(torch.float64).cpu()
