"""ANIL: Almost No Inner Loop (Raghu, Raghu, Bengio & Vinyals, ICLR 2020), as written in Wang,
Zhao & Li (ICML 2021, Eq. 3-5).

Only the linear head adapts in the inner loop (Eq. 4: ``train_steps`` gradient steps of size
``inner_lr`` on the support loss); the backbone is trained by the outer loop alone, through the
query loss of the adapted head (Eq. 3). Features of every image of the meta-batch come from one
backbone forward (:meth:`FewShotMethod.embed_episode`), and the head inner loops of all tasks
run together: task t's head is a ``[ways, D]`` slice of a ``[T, ways, D]`` tensor, applied with
``bmm``. The features are not detached, so the meta-gradient reaches the backbone both through
the query features and (second order) through the support features that shaped the adapted
head; the head's initialisation is meta-learned too, unless ``freeze_head_init`` keeps it fixed
at zero (Eq. 5; Lin et al. 2021 report no loss in accuracy), in which case it is no parameter
of the optimiser's at all (``requires_grad=False``, zeros in the state dict).

Batch norm uses each batch's own statistics, as in MAML (:mod:`methods.maml`) and in the code
ANIL comes from (Raghu et al. build on Finn et al.'s MAML code, whose batch norm is always in
training mode; learn2learn's ANIL likewise): in training, one forward over the support and query
images of all tasks normalises with the statistics of that whole batch (and updates the running
statistics, as a plain forward does); in the native adaptation (:meth:`ANIL.adapt`) each task's
support set and each task's query set are normalised with their own statistics, in eval mode
too, through scratch copies of the buffers, so the running statistics never change there. The
running statistics serve the unified protocol only, which embeds images in eval mode. (Until
issue 10 the native protocol used the running statistics instead.) Defaults follow
learn2learn's ``anil-mi`` setting (docs/references.md#maml-anil): inner lr 0.1, 5 steps in
training and at test; the paper budget is Raghu et al.'s (:meth:`ANIL.paper_budget`).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from core.budget import TrainBudget
from core.hparams import HParam
from core.search import Range
from datasets import DatasetInfo
from datasets.episodes import TaskBatch
from methods import register_method
from methods.backbones import Backbone
from methods.base import Predictor
from methods.inner_loop import (InnerLoopMethod, Order, Params, batch_statistics,
                                gradient_descent, inner_loop_hparams, linear_logits,
                                maml_recipe, scratch_buffers, task_cross_entropy)
from methods.taxonomy import Table1Cell


@register_method("anil")
class ANIL(InnerLoopMethod):
    """ANIL (see the module docstring). Hyperparameters: those of
    :class:`methods.inner_loop.InnerLoopMethod` plus ``freeze_head_init`` (Eq. 5: the head
    starts every inner loop from zero and is not meta-learned)."""

    display_name = "ANIL"
    table1 = Table1Cell("last layer", "early stopping")
    citation = ("Raghu, Raghu, Bengio & Vinyals 2020, Rapid Learning or Feature Reuse? (ICLR); "
                "Wang, Zhao & Li 2021, Eq. 3-5")
    hparam_spec = {
        **inner_loop_hparams(inner_lr=0.1, train_steps=5, test_steps=5),
        "freeze_head_init": HParam(False, bool, doc="Eq. 5: the head starts every inner loop "
                                                    "from zero and is not meta-learned"),
    }
    # bench tune: the inner loop's rate and length in training (Finn's 0.4 on Omniglot,
    # learn2learn's 0.1 on mini-ImageNet lie inside)
    search_space = {"inner_lr": Range(0.01, 1.0, log=True),
                    "train_steps": Range(1, 5, integer=True)}

    @classmethod
    def paper_budget(cls, dataset: DatasetInfo, shots: int) -> TrainBudget:
        """Raghu et al. 2020's setting: ANIL is built on Finn et al.'s MAML code and trained
        with its hyperparameters (:func:`methods.inner_loop.maml_recipe`): on ImageNet-like
        images Conv4-32, 5 inner steps of 0.01 in training and 10 at test; on small character
        images Finn's Omniglot setting (1 step of 0.4, 3 at test, Conv4-64). (The class's own
        defaults, learn2learn's ``anil-mi`` 0.1 x 5/5, are what smoke and quick use.)"""
        return maml_recipe(dataset, shots)

    def __init__(self, backbone: Backbone, n_train_classes: int, ways: int,
                 hparams: Mapping[str, Any] | None = None) -> None:
        super().__init__(backbone, n_train_classes, ways, hparams)
        if self.hparams["freeze_head_init"]:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
            self.head.requires_grad_(False)

    def initial_head(self, n_tasks: int) -> Params:
        """The head initialisation, one (shared, broadcast) copy per task."""
        return {"weight": self.head.weight.expand(n_tasks, -1, -1),
                "bias": self.head.bias.expand(n_tasks, -1)}

    def adapted_head(self, support_features: torch.Tensor, support_labels: torch.Tensor,
                     lr: float, steps: int, order: Order) -> Params:
        """Per-task heads after ``steps`` inner steps on support features ``[T, S, D]``."""

        def support_loss(head: Params, step: int) -> torch.Tensor:
            return task_cross_entropy(linear_logits(support_features, head), support_labels)

        return gradient_descent(support_loss, self.initial_head(support_features.shape[0]),
                                lr, steps, order)

    def loss(self, batch: TaskBatch) -> torch.Tensor:
        """Eq. 3 (or 5): mean query cross-entropy of the adapted heads over the tasks."""
        self.check_training_batch(batch)
        support, query = self.embed_episode(batch)
        head = self.adapted_head(support, batch.support_labels, self.hparams["inner_lr"],
                                 self.hparams["train_steps"], self.training_order())
        logits = linear_logits(query, head)
        return F.cross_entropy(logits.flatten(0, 1), batch.query_labels.flatten())

    def batch_norm_features(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``[T, N, D]`` of images ``[T, N, C, H, W]``, each task's ``N`` images
        normalised with their own batch statistics (in any mode; dropout keeps the module's
        mode), without a graph; the module's running statistics are not touched."""
        with torch.no_grad(), batch_statistics(self.backbone):
            return torch.stack([functional_call(self.backbone, scratch_buffers(self.backbone),
                                                (images[t],))
                                for t in range(images.shape[0])])

    def adapt(self, support: torch.Tensor, support_labels: torch.Tensor) -> Predictor:
        """Support features once (no graph; each task's support set on its own batch
        statistics, :meth:`batch_norm_features`), then ``test_steps`` steps of
        ``test_inner_lr`` on every task's head at once; the predictor embeds each task's
        queries on their own batch statistics. The method's parameters and buffers are not
        touched."""
        features = self.batch_norm_features(support)
        head = self.adapted_head(features, support_labels, self.test_lr,
                                 self.hparams["test_steps"], Order.NONE)
        head = {name: t.detach() for name, t in head.items()}

        def predict(query: torch.Tensor) -> torch.Tensor:
            if query.shape[0] != head["weight"].shape[0]:
                raise ValueError(f"the predictor was adapted to {head['weight'].shape[0]} tasks "
                                 f"but got queries for {query.shape[0]}; pass [T, Q, C, H, W] "
                                 "with the same T as the support set")
            with torch.no_grad():
                return linear_logits(self.batch_norm_features(query), head)

        return predict
