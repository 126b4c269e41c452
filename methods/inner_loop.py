"""Inner-loop machinery shared by MAML and ANIL (gradient-based meta-learning).

Both methods adapt some tensors to a task's support set with a few steps of plain gradient
descent and score the adapted model on the query set (Finn, Abbeel & Levine, "Model-Agnostic
Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017, Alg. 2; Raghu, Raghu, Bengio &
Vinyals, "Rapid Learning or Feature Reuse?", ICLR 2020; Wang, Zhao & Li, ICML 2021, Eq. 3-4).
They differ only in *which* tensors adapt (all parameters vs. the linear head), so this module
holds the common parts:

- :func:`gradient_descent`: ``steps`` differentiable SGD steps on a dict of tensors, in one of
  three :class:`Order` modes (second-order meta-gradient, first-order approximation, or none at
  all for test-time adaptation);
- :func:`batch_statistics` / :func:`scratch_buffers`: batch norm that normalises with the
  current batch's statistics without touching the module's running statistics;
- :func:`linear_logits` / :func:`task_cross_entropy`: a linear head with one weight matrix per
  task, applied to all tasks at once with ``bmm``;
- :class:`InnerLoopMethod` / :func:`inner_loop_hparams`: the hyperparameters shared by MAML
  and ANIL.
"""
from __future__ import annotations

import contextlib
import enum
from typing import Any, Callable, ClassVar, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
# _BatchNorm is the base of every BatchNorm{1,2,3}d, their Lazy variants and SyncBatchNorm.
from torch.nn.modules.batchnorm import _BatchNorm

from core.budget import TrainBudget
from core.hparams import HParam
from datasets import DatasetInfo
from datasets.episodes import TaskBatch
from methods.backbones import Backbone
from methods.base import FewShotMethod, Predictor

Params = dict[str, torch.Tensor]
SupportLoss = Callable[[Params, int], torch.Tensor]
"""``loss_fn(params, step)``: the support loss of the (partly adapted) ``params`` at ``step``."""


class Order(enum.Enum):
    """How much of the inner loop the outer (meta-)gradient differentiates through."""

    SECOND = "second"
    """Exact meta-gradient: the inner gradients keep their graph (``create_graph=True``)."""
    FIRST = "first"
    """First-order MAML (Finn et al. 2017, Sec. 5.2): inner gradients are constants, so the
    meta-gradient is the query-loss gradient at the adapted parameters."""
    NONE = "none"
    """Test-time adaptation: start from detached copies, keep no graph between steps, and leave
    the initial tensors untouched and out of any graph."""


def gradient_descent(loss_fn: SupportLoss, params: Params, lr: float, steps: int,
                     order: Order) -> Params:
    """``steps`` steps of ``p <- p - lr * grad(loss_fn(p), p)`` on every tensor of ``params``.

    Runs under ``torch.enable_grad()``, so it also works when the caller is under ``no_grad``
    (the evaluator is). With :attr:`Order.SECOND` or :attr:`Order.FIRST` the returned tensors
    are functions of the given ones, so a loss on them back-propagates into the initial
    parameters; tensors that do not require grad (e.g. a frozen head initialisation) are
    turned into fresh leaves, so the inner loop can still differentiate w.r.t. them.
    """
    with torch.enable_grad():
        params = {name: _inner_leaf(p, order) for name, p in params.items()}
        for step in range(steps):
            params = sgd_step(loss_fn(params, step), params, lr, order)
    return params


def sgd_step(loss: torch.Tensor, params: Params, lr: float, order: Order) -> Params:
    """One gradient step on ``params``; graph kept only as far as ``order`` asks."""
    names = list(params)
    grads = torch.autograd.grad(loss, [params[n] for n in names],
                                create_graph=order is Order.SECOND, allow_unused=True)
    updated: Params = {}
    for name, grad in zip(names, grads):
        p = params[name]
        new = p if grad is None else p - lr * grad  # unused tensor: gradient zero, unchanged
        updated[name] = new.detach().requires_grad_() if order is Order.NONE else new
    return updated


def _inner_leaf(p: torch.Tensor, order: Order) -> torch.Tensor:
    if order is Order.NONE or not p.requires_grad:
        return p.detach().requires_grad_()
    return p


def order_for(first_order: bool) -> Order:
    """The training-time order; :attr:`Order.NONE` when autograd is off (e.g. a validation
    loss under ``no_grad``: nothing will be back-propagated, so building graphs is waste)."""
    if not torch.is_grad_enabled():
        return Order.NONE
    return Order.FIRST if first_order else Order.SECOND


@contextlib.contextmanager
def batch_statistics(module: nn.Module) -> Iterator[None]:
    """Within the block, every batch-norm layer of ``module`` normalises with the statistics of
    the batch it sees, even in eval mode (other layers, e.g. dropout, keep their mode).

    Combine with :func:`scratch_buffers` so that the running statistics the layers update
    in training mode land on throw-away copies.
    """
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm)]
    modes = [m.training for m in norms]
    try:
        for m in norms:
            m.training = True
        yield
    finally:
        for m, mode in zip(norms, modes):
            m.training = mode


def scratch_buffers(module: nn.Module) -> Params:
    """Copies of every buffer of ``module`` (running means/variances, batch counters), to pass
    to :func:`torch.func.functional_call` so in-place updates do not reach the module."""
    return {name: b.clone() for name, b in module.named_buffers()}


def per_task_predictor(logits_fn: Callable[[Params, Params, torch.Tensor], torch.Tensor],
                       module: nn.Module, adapted: list[Params]) -> Predictor:
    """The predictor of tasks adapted one by one (native adaptation of MAML, ANIL and the
    proximal methods): task ``t``'s queries ``[T, Q, C, H, W]`` go through
    ``logits_fn(adapted[t], buffers, query[t])`` without gradients, each normalised with its
    own batch statistics (fresh scratch buffers of ``module``)."""

    def predict(query: torch.Tensor) -> torch.Tensor:
        if query.shape[0] != len(adapted):
            raise ValueError(f"the predictor was adapted to {len(adapted)} tasks but got "
                             f"queries for {query.shape[0]}; pass [T, Q, C, H, W] with the "
                             "same T as the support set")
        with torch.no_grad():
            return torch.stack([logits_fn(params, scratch_buffers(module), query[t])
                                for t, params in enumerate(adapted)])

    return predict


def linear_logits(features: torch.Tensor, head: Params) -> torch.Tensor:
    """Logits ``[T, N, ways]`` of features ``[T, N, D]`` under per-task heads
    ``head["weight"]`` ``[T, ways, D]`` and ``head["bias"]`` ``[T, ways]``."""
    return torch.baddbmm(head["bias"].unsqueeze(1), features, head["weight"].transpose(1, 2))


def task_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over tasks of each task's mean cross-entropy (``logits [T, N, ways]``,
    ``labels [T, N]``): the gradient w.r.t. task t's own tensors is that of its mean loss."""
    total = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum")
    return total / labels.shape[1]


def inner_loop_hparams(inner_lr: float, train_steps: int, test_steps: int
                       ) -> dict[str, HParam]:
    """The hyperparameters of every inner-loop method, with its paper's defaults."""
    return {
        "inner_lr": HParam(inner_lr, float, gt=0, doc="inner-loop learning rate in training"),
        "train_steps": HParam(train_steps, int, ge=1, doc="inner steps per task in training"),
        "test_steps": HParam(test_steps, int, ge=0, doc="inner steps per task at test time"),
        "test_inner_lr": HParam(None, float, gt=0, optional=True,
                                doc="test-time inner learning rate (null: inner_lr)"),
        "first_order": HParam(False, bool, doc="first-order approximation of the "
                                               "meta-gradient (Finn et al. 2017, Sec. 5.2)"),
    }


#: Finn et al.'s inner loops (``hparams``) by kind of dataset. ImageNet-like images (Finn, Abbeel
#: & Levine 2017, Sec. 5.2; cbfinn/maml ``main.py`` usage lines 16-20): 5 steps of 0.01 in
#: training, 10 at test. Small character images, their 5-way Omniglot setting (Sec. 5.2; usage
#: line 11: ``--update_lr=0.4 --num_updates=1 --meta_batch_size=32``): 1 step of 0.4 in training,
#: 3 at test (the paper's text; ``main.py:230`` evaluates with 10).
FINN_IMAGENET = {"inner_lr": 0.01, "train_steps": 5, "test_steps": 10}
FINN_OMNIGLOT = {"inner_lr": 0.4, "train_steps": 1, "test_steps": 3}


def maml_recipe(dataset: DatasetInfo, shots: int) -> TrainBudget:
    """Finn et al. 2017's setting, the paper budget of MAML and of ANIL (Raghu et al. 2020
    build ANIL on Finn's code with its hyperparameters): Adam 1e-3, 60,000 meta-iterations
    (60 epochs x 1000 steps), constant rate, no augmentation (Finn's and Raghu's code read the
    images as they are). Batch norm on each batch's own statistics is the methods' own
    (cbfinn/maml ``utils.py:41``: ``tf_layers.batch_norm`` is always in training mode).

    - ImageNet-like images: Conv4-32 (``--num_filters=32``), meta-batch 4 (1-shot) or 2
      (5-shot, the paper's Sec. 5.2; the repository's usage line 20 writes 4), 15 queries per
      class (``main.py:247``), :data:`FINN_IMAGENET`.
    - Small character images (Omniglot-like): Conv4-64, meta-batch 32, as many queries as
      shots (``main.py:251``: ``update_batch_size*2`` images per class), :data:`FINN_OMNIGLOT`.
    """
    if dataset.small_images:
        backbone, meta_batch, queries, hparams = "conv4-64", 32, shots, FINN_OMNIGLOT
    else:
        backbone, meta_batch, queries, hparams = ("conv4-32", 4 if shots == 1 else 2, 15,
                                                  FINN_IMAGENET)
    return TrainBudget(
        name="paper", backbone=backbone, feature_mode="flatten", epochs=60,
        steps_per_epoch=1000, meta_batch=meta_batch, train_shots=shots,
        train_queries=queries, optimizer="adam", lr=1e-3, schedule="constant",
        early_stop_patience=None, val_episodes=600, hparams=dict(hparams), augmentation=None,
    )


class AllLayersNetwork:
    """The network of the methods whose inner loop adapts every layer (MAML, iMAML,
    Meta-MinibatchProx): ``backbone`` then a linear ``head``, and the same network as a
    function of its parameters. Mixed into a :class:`FewShotMethod` that sets both modules."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, ways]`` of the (unadapted) network on images ``[B, C, H, W]``."""
        return self.head(self.backbone(images))

    def functional_logits(self, params: Params, buffers: Params,
                          images: torch.Tensor) -> torch.Tensor:
        """Logits of the network with ``params`` (and ``buffers``, if any are given, else the
        module's own), batch norm on batch statistics."""
        with batch_statistics(self):
            return functional_call(self, {**params, **buffers}, (images,))


class InnerLoopMethod(FewShotMethod):
    """Shared base of MAML and ANIL: the inner-loop hyperparameters
    (:func:`inner_loop_hparams`; each subclass sets its paper's defaults) and a linear head
    ``nn.Linear(backbone.out_dim, ways)``."""

    native_ways_fixed: ClassVar[bool] = True
    """The head the inner loop adapts has one output per class of a training episode."""

    def __init__(self, backbone: Backbone, n_train_classes: int, ways: int,
                 hparams: Mapping[str, Any] | None = None) -> None:
        super().__init__(backbone, n_train_classes, ways, hparams)
        self.head = nn.Linear(backbone.out_dim, ways)

    @property
    def test_lr(self) -> float:
        lr = self.hparams["test_inner_lr"]
        return self.hparams["inner_lr"] if lr is None else lr

    def training_order(self) -> Order:
        return order_for(self.hparams["first_order"])

    def check_training_batch(self, batch: TaskBatch) -> None:
        """The outer loss lives on the query set: refuse episodes without queries."""
        if batch.query.shape[1] == 0:
            raise ValueError(f"{self.name} adapts on the support set and computes its training "
                             "loss on the query set, but the batch has no queries; sample "
                             "training episodes with queries >= 1")
