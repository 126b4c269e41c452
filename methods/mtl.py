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

from datasets.episodes import TaskBatch
from methods import register_method
from methods.backbones import Backbone
from methods.base import FewShotMethod


@register_method("mtl", "multi-task")
class MTL(FewShotMethod):
    """MTL (Wang et al. 2021). Hyperparameters:

    - ``normalize_features``: L2-normalise features before the heads, in training and at test
      (the paper's ``--norm_train_features``; on for mini, tiered and CIFAR-FS, off for FC100).
    - ``scale_init``: multiply the head init by sqrt(n_train_classes / ways), which compensates
      for the fan-in-based init of a matrix much larger than one task's head (FACTS.md 4.1).

    Diagnostic knobs, outside the paper's recipe (defaults reproduce it exactly):

    - ``head_lr_scale``: the head is stored as ``heads / head_lr_scale`` and used times
      ``head_lr_scale``, so under Adam/RAdam (whose steps do not depend on the gradient's scale)
      the head matrix moves ``head_lr_scale`` times faster than the backbone (under SGD,
      ``head_lr_scale**2`` times).
    - ``logit_scale``: multiply the task logits by this factor (a temperature; with
      L2-normalised features and no bias, ``|logit| <= logit_scale * ||head row||``).
    - ``learn_logit_scale``: make that factor a learnable parameter (as MetaOptNet's and
      ProtoNet's heads do) instead of a constant.
    - ``freeze_absent_rows``: after each optimiser step, put back the head rows of the classes
      that were in none of the step's tasks, so only rows with a gradient move (no drift from
      Adam's stale first moment on absent rows).
    """

    paper = "Wang, Zhao & Li 2021, Bridging Multi-Task Learning and Meta-Learning (ICML)"
    default_hparams = {
        "normalize_features": True,
        "scale_init": True,
        "head_lr_scale": 1.0,
        "logit_scale": 1.0,
        "learn_logit_scale": False,
        "freeze_absent_rows": False,
    }

    def __init__(self, backbone: Backbone, n_train_classes: int, ways: int,
                 hparams: Mapping[str, Any] | None = None) -> None:
        super().__init__(backbone, n_train_classes, ways, hparams)
        self._check_hparams()
        heads = torch.empty(n_train_classes, backbone.out_dim)
        nn.init.kaiming_uniform_(heads, a=math.sqrt(5))  # nn.Linear's default: U(+-1/sqrt(fan_in))
        if self.hparams["scale_init"]:
            heads.mul_(math.sqrt(n_train_classes / ways))
        self.head_lr_scale = float(self.hparams["head_lr_scale"])
        self.heads = nn.Parameter(heads / self.head_lr_scale)
        # a constant scale is a plain float, so the state dict is the paper's unless learnable
        self.logit_scale: nn.Parameter | float = float(self.hparams["logit_scale"])
        if self.hparams["learn_logit_scale"]:
            self.logit_scale = nn.Parameter(torch.tensor(self.logit_scale))
        self._rows_before: torch.Tensor | None = None

    def _check_hparams(self) -> None:
        hp, problems = self.hparams, []
        for key in ("normalize_features", "scale_init", "learn_logit_scale",
                    "freeze_absent_rows"):
            if not isinstance(hp[key], bool):
                problems.append(f"{key} must be true or false, got {hp[key]!r}")
        for key in ("head_lr_scale", "logit_scale"):
            value = hp[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value <= 0:
                problems.append(f"{key} must be a positive number, got {value!r}")
        if problems:
            raise ValueError("mtl: " + "; ".join(problems))

    def head_weights(self) -> torch.Tensor:
        """The head matrix ``[n_train_classes, D]`` (one row per training class)."""
        if self.head_lr_scale == 1.0:
            return self.heads
        return self.heads * self.head_lr_scale

    def features(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        if self.hparams["normalize_features"]:
            features = F.normalize(features, dim=-1)
        return features

    def task_logits(self, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Logits ``[T, N, ways]`` of features ``[T, N, D]`` under each task's head rows."""
        weights = self.head_weights()[classes]  # [T, ways, D]: row j of task t is class classes[t, j]
        logits = torch.bmm(features, weights.transpose(1, 2))
        return logits if self.logit_scale == 1.0 and not self.hparams["learn_logit_scale"] \
            else self.logit_scale * logits

    def loss(self, batch: TaskBatch) -> torch.Tensor:
        if self.hparams["freeze_absent_rows"] and torch.is_grad_enabled():
            self._rows_before = self.heads.detach().clone()
        images = torch.cat([batch.support, batch.query], dim=1)
        labels = torch.cat([batch.support_labels, batch.query_labels], dim=1)
        logits = self.task_logits(self.task_features(images), batch.classes)
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten())

    def on_optimizer_step(self) -> None:
        super().on_optimizer_step()
        if self._rows_before is not None and self.heads.grad is not None:
            # rows with no gradient in this step (summed over every process's tasks) go back
            absent = self.heads.grad.abs().sum(1) == 0
            with torch.no_grad():
                self.heads[absent] = self._rows_before[absent]
            self._rows_before = None
