"""Multi-task learning with one head per training class (Wang, Zhao & Li, ICML 2021, Sec. 3.2, 5.2).

One shared backbone and a weight matrix with one row per training class. A training task of
``ways`` classes gathers its rows (``heads[classes]``) and is scored with a bias-free linear
head; the loss is the cross-entropy over every sample of the task (no support/query split), and
the meta-batch loss is the mean over tasks (docs/references.md#mtl). Each episode's labels
``0..ways-1`` index its ``classes`` row, so the label -> head-row map is a lookup by
construction; the original code's in-place relabelling loop, which merged classes in about 15%
of tasks (docs/references.md#bugs-avoided, B1), has no counterpart here.

MTL has no native test-time adaptation: at test time it is evaluated with the unified protocol
(a fresh logistic-regression head on frozen, L2-normalised features, Sec. 3.4).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from core.budget import TrainBudget
from core.hparams import HParam
from datasets import DatasetInfo
from datasets.episodes import TaskBatch
from methods import register_method
from methods.backbones import Backbone
from methods.base import FewShotMethod


TASKS_PER_EPOCH = 1600  # [MTL] epoch_length


@register_method("mtl", "multi-task")
class MTL(FewShotMethod):
    """MTL (Wang et al. 2021); hyperparameters in :attr:`hparam_spec`."""

    display_name = "MTL"
    citation = "Wang, Zhao & Li 2021, Bridging Multi-Task Learning and Meta-Learning (ICML)"
    comparison_baseline = True  # the paper asks whether MTL matches the meta-learners
    hparam_spec = {
        "normalize_features": HParam(
            True, bool, doc="L2-normalise features before the heads, in training and at test "
            "(the paper's --norm_train_features; on for mini, tiered and CIFAR-FS, off for "
            "FC100)"),
        "scale_init": HParam(
            True, bool, doc="multiply the head init by sqrt(n_train_classes / ways), which "
            "compensates for the fan-in-based init of a matrix much larger than one task's "
            "head (docs/references.md#mtl)"),
    }

    @classmethod
    def paper_budget(cls, dataset: DatasetInfo, shots: int) -> TrainBudget:
        """[MTL] README commands (docs/references.md#mtl): RAdam 1e-3, plateau(0.1, 4), early
        stop 15,
        1600 training tasks per epoch; meta-batch, queries and feature normalisation per
        dataset and shots."""
        queries, meta_batch, train_shots, normalize = 5, 6, 5, True
        if dataset.benchmark == "mini-imagenet":
            meta_batch = 2 if shots == 5 else 6
        elif dataset.benchmark == "tiered-imagenet":
            queries, meta_batch = 35, (1 if shots == 5 else 2)
        elif dataset.benchmark == "cifar-fs" and shots == 1:
            queries, meta_batch = 15, 2
        elif dataset.benchmark == "fc100":
            normalize = False
            if shots == 1:
                train_shots, queries, meta_batch = 1, 4, 1
        return TrainBudget(
            name="paper", backbone="resnet12", feature_mode="avg", epochs=1000,
            steps_per_epoch=-(-TASKS_PER_EPOCH // meta_batch), meta_batch=meta_batch,
            train_shots=train_shots, train_queries=queries, optimizer="radam", lr=1e-3,
            schedule="plateau", plateau_factor=0.1, plateau_patience=4, early_stop_patience=15,
            val_episodes=400, hparams={"normalize_features": normalize},
        )

    def __init__(self, backbone: Backbone, n_train_classes: int, ways: int,
                 hparams: Mapping[str, Any] | None = None) -> None:
        super().__init__(backbone, n_train_classes, ways, hparams)
        heads = torch.empty(n_train_classes, backbone.out_dim)
        nn.init.kaiming_uniform_(heads, a=math.sqrt(5))  # nn.Linear's default: U(+-1/sqrt(fan_in))
        if self.hparams["scale_init"]:
            heads.mul_(math.sqrt(n_train_classes / ways))
        self.heads = nn.Parameter(heads)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        if self.hparams["normalize_features"]:
            features = F.normalize(features, dim=-1)
        return features

    def task_logits(self, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Logits ``[T, N, ways]`` of features ``[T, N, D]`` under each task's head rows."""
        weights = self.heads[classes]  # [T, ways, D]: row j of task t is class classes[t, j]
        return torch.bmm(features, weights.transpose(1, 2))

    def loss(self, batch: TaskBatch) -> torch.Tensor:
        logits = self.task_logits(self.task_features(batch.images), batch.classes)
        return F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten())
