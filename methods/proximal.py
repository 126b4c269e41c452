"""The proximal inner problem shared by iMAML and Meta-MinibatchProx (the "all layers, L2
regulariser" cell of Wang, Zhao & Li, ICML 2021, Table 1).

Both methods adapt every parameter of the network to a task by approximately solving

    phi*(theta) = argmin_phi  L_task(phi) + (lam / 2) ||phi - theta||^2

(Rajeswaran, Finn, Kakade & Levine, "Meta-Learning with Implicit Gradients", NeurIPS 2019,
Eq. 4; Zhou, Yuan, Xu, Yan & Feng, "Efficient Meta Learning via Minibatch Proximal Update",
NeurIPS 2019) with ``steps`` steps of plain gradient descent from ``theta``
(:func:`proximal_descent`). Neither differentiates through those steps: iMAML uses the implicit
function theorem at the solution, Meta-MinibatchProx a first-order update towards it. So the
inner loop keeps no graph at all (:attr:`methods.inner_loop.Order.NONE`), and its memory does
not grow with ``steps``.

This module holds the maths that does not depend on a network (:func:`proximal_descent`,
:func:`proximal_term`, :func:`conjugate_gradient`, flattening helpers) and
:class:`ProximalMethod`, the base of both method classes: a linear head on the backbone, the
hyperparameters both share, the per-task inner solve on a network, and native adaptation.

Batch norm, as in MAML (:mod:`methods.maml`) and iMAML's reference code (imaml_dev's Omniglot
network has ``track_running_stats=False``): every forward of the inner loop, of the query set
and of test-time adaptation normalises with the statistics of its own batch (one task's
support or query set), in training and at test time, so the native protocol is transductive
over a task's queries and a task never sees another task's statistics (*task-local* batch
norm: data-parallel training must not synchronise these layers). The module's running
statistics matter only for the unified protocol; they are updated only by the first inner
step of a training step (the initial parameters on the task's data, as a plain forward of the
initial network would), every other forward writes into scratch copies.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from core.hparams import HParam
from methods.backbones import Backbone
from methods.base import FewShotMethod, Predictor
from methods.inner_loop import (AllLayersNetwork, Order, Params, SupportLoss, gradient_descent,
                                per_task_predictor, scratch_buffers)

MatVec = Callable[[torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------ maths on parameter dicts

def proximal_term(params: Params, anchor: Params, lam: float) -> torch.Tensor:
    """``(lam / 2) * sum_p ||params[p] - anchor[p]||^2`` over the names of ``anchor``."""
    return 0.5 * lam * sum(((params[n] - a) ** 2).sum() for n, a in anchor.items())


def proximal_descent(loss_fn: SupportLoss, anchor: Params, lam: float, lr: float,
                     steps: int) -> Params:
    """``steps`` gradient steps of size ``lr`` on ``loss_fn(phi) + proximal_term(phi, anchor)``
    from ``phi = anchor``, keeping no graph: the result is a dict of fresh leaves (requiring
    grad, so callers can differentiate losses at the solution), and ``anchor`` is untouched."""
    anchor = {name: a.detach() for name, a in anchor.items()}

    def objective(params: Params, step: int) -> torch.Tensor:
        return loss_fn(params, step) + proximal_term(params, anchor, lam)

    return gradient_descent(objective, anchor, lr, steps, Order.NONE)


def flatten(tensors: Params | list[torch.Tensor]) -> torch.Tensor:
    """One 1-D tensor of every tensor (dict values in order)."""
    values = tensors.values() if isinstance(tensors, dict) else tensors
    return torch.cat([t.reshape(-1) for t in values])


def unflatten(flat: torch.Tensor, like: Params) -> Params:
    """The inverse of :func:`flatten` for tensors shaped like ``like``."""
    out, offset = {}, 0
    for name, t in like.items():
        out[name] = flat[offset:offset + t.numel()].view_as(t)
        offset += t.numel()
    return out


CG_RTOL = 1e-10
"""Conjugate gradient stops early once ``||residual|| <= CG_RTOL * ||b||`` (converged)."""


def conjugate_gradient(matvec: MatVec, b: torch.Tensor, steps: int,
                       rtol: float = CG_RTOL) -> torch.Tensor:
    """At most ``steps`` iterations of conjugate gradient for ``A x = b`` from ``x = 0``
    (Hestenes & Stiefel 1952; the template of imaml_dev's ``utils.cg_solve``).

    ``A`` (given as ``matvec``) must be symmetric positive definite; iMAML's ``I + H / lam`` is
    at an exact inner solution (``H + lam I`` is then the Hessian of a problem at its minimum)
    but need not be at an approximate one. If a search direction has non-positive curvature,
    the iteration stops and returns the current iterate (truncated CG). Stops early when the
    residual is ``rtol``-small.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = torch.dot(r, r)
    b_norm = float(rs.sqrt())
    for _ in range(steps):
        if float(rs.sqrt()) <= rtol * b_norm:
            break
        ap = matvec(p)
        curvature = torch.dot(p, ap)
        if float(curvature) <= 0.0:
            break
        alpha = rs / curvature
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = torch.dot(r, r)
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x


# ------------------------------------------------------------------ hyperparameters

def proximal_hparams(lam: float, inner_lr: float, train_steps: int, test_steps: int
                     ) -> dict[str, HParam]:
    """The hyperparameters both proximal methods share, with a method's defaults."""
    return {
        "lam": HParam(lam, float, gt=0, doc="strength of the proximal term "
                                             "(lam/2)||phi - theta||^2 in training"),
        "inner_lr": HParam(inner_lr, float, gt=0, doc="gradient-descent step size of the inner "
                                                       "solve in training"),
        "train_steps": HParam(train_steps, int, ge=1, doc="inner gradient steps per task in "
                                                          "training"),
        "test_steps": HParam(test_steps, int, ge=0, doc="inner gradient steps of native "
                                                        "test-time adaptation"),
        "test_inner_lr": HParam(None, float, gt=0, optional=True,
                                doc="step size of test-time adaptation (null: inner_lr)"),
        "test_lam": HParam(None, float, ge=0, optional=True,
                           doc="proximal strength at test time (null: lam; 0: plain "
                               "fine-tuning from theta, as imaml_dev's measure_accuracy.py "
                               "--lam 0.0)"),
    }


# ------------------------------------------------------------------ the shared base class

class ProximalMethod(AllLayersNetwork, FewShotMethod):
    """Base of iMAML and Meta-MinibatchProx: all parameters (backbone and the linear head
    ``nn.Linear(backbone.out_dim, ways)``) adapt by the proximal inner problem.

    Shared hyperparameters (:func:`proximal_hparams`; each subclass's ``hparam_spec`` holds
    them with its paper's defaults): ``lam``, ``inner_lr``, ``train_steps``, ``test_steps``,
    ``test_inner_lr`` and ``test_lam``.
    """

    task_local_batch_norm: ClassVar[bool] = True
    """Every training forward normalises with one task's statistics (module docstring)."""
    native_ways_fixed: ClassVar[bool] = True
    """The head the proximal problem adapts has one output per class of a training episode."""

    def __init__(self, backbone: Backbone, n_train_classes: int, ways: int,
                 hparams: Mapping[str, Any] | None = None) -> None:
        super().__init__(backbone, n_train_classes, ways, hparams)
        self.head = nn.Linear(backbone.out_dim, ways)

    # -------------------------------------------------------------- the network as a function
    # (forward and functional_logits: AllLayersNetwork)

    def task_loss(self, params: Params, buffers: Params, images: torch.Tensor,
                  labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the network with ``params`` on one task's images."""
        return F.cross_entropy(self.functional_logits(params, buffers, images), labels)

    def meta_parameters(self) -> Params:
        """theta: every trainable parameter, by name."""
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    # -------------------------------------------------------------- the inner problem

    def solve_inner(self, images: torch.Tensor, labels: torch.Tensor, scratch: Params,
                    lam: float, lr: float, steps: int, update_running_stats: bool) -> Params:
        """phi: ``steps`` gradient steps on one task's proximal problem (``images``
        ``[N, C, H, W]``), from the current parameters; detached leaves requiring grad.

        With ``update_running_stats`` the first step's forward (the initial parameters) writes
        the module's running statistics; every other forward writes into ``scratch``.
        """

        def loss(params: Params, step: int) -> torch.Tensor:
            buffers = {} if (step == 0 and update_running_stats) else scratch
            return self.task_loss(params, buffers, images, labels)

        return proximal_descent(loss, self.meta_parameters(), lam, lr, steps)

    def updates_running_stats(self) -> bool:
        """Whether this forward is a real training step (training mode, autograd on)."""
        return self.training and torch.is_grad_enabled()

    # -------------------------------------------------------------- native adaptation

    def adapt(self, support: torch.Tensor, support_labels: torch.Tensor) -> Predictor:
        """Per task, ``test_steps`` steps of ``test_inner_lr`` on the proximal problem with
        ``test_lam`` around the meta-learned parameters, on the support set (no graph; the
        method's parameters and buffers stay as they are). The predictor normalises each
        task's queries with their own batch statistics."""
        h = self.hparams
        lam = h["lam"] if h["test_lam"] is None else h["test_lam"]
        lr = h["inner_lr"] if h["test_inner_lr"] is None else h["test_inner_lr"]
        adapted = [self.solve_inner(support[t], support_labels[t], scratch_buffers(self), lam,
                                    lr, h["test_steps"], update_running_stats=False)
                   for t in range(support.shape[0])]

        return per_task_predictor(self.functional_logits, self, adapted)
