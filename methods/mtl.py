"""Multi-task learning with one head per training class (Wang, Zhao & Li, ICML 2021, Sec. 3.2, 5.2).

One shared backbone and a weight matrix with one row per training class. A training task of
``ways`` classes gathers its rows (``heads[classes]``) and is scored with a bias-free linear
head; the loss is the cross-entropy over every sample of the task (no support/query split), and
the meta-batch loss is the mean over tasks (FACTS.md 4.1, 8.19). Each episode's labels ``0..ways-1``
index its ``classes`` row, so the label -> head-row map is a lookup by construction; the
original code's in-place relabelling loop, which merged classes in about 15% of tasks
(FACTS.md 8.1), has no counterpart here.

MTL has no native test-time adaptation: at test time it is evaluated with the unified protocol
(a fresh logistic-regression head on frozen, L2-normalised features, Sec. 3.4).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from core.hparams import HParam
from datasets.episodes import TaskBatch
from methods import register_method
from methods.backbones import Backbone
from methods.base import FewShotMethod


@register_method("mtl", "multi-task")
class MTL(FewShotMethod):
    """MTL (Wang et al. 2021); hyperparameters in :attr:`hparam_spec`."""

    paper = "Wang, Zhao & Li 2021, Bridging Multi-Task Learning and Meta-Learning (ICML)"
    hparam_spec = {
        "normalize_features": HParam(
            True, bool, doc="L2-normalise features before the heads, in training and at test "
            "(the paper's --norm_train_features; on for mini, tiered and CIFAR-FS, off for "
            "FC100)"),
        "scale_init": HParam(
            True, bool, doc="multiply the head init by sqrt(n_train_classes / ways), which "
            "compensates for the fan-in-based init of a matrix much larger than one task's "
            "head (FACTS.md 4.1)"),
    }

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
        images = torch.cat([batch.support, batch.query], dim=1)
        labels = torch.cat([batch.support_labels, batch.query_labels], dim=1)
        logits = self.task_logits(self.task_features(images), batch.classes)
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten())
