"""Supervised pre-training, the RFS baseline (Tian, Wang, Krishnan, Tenenbaum & Isola,
"Rethinking Few-Shot Image Classification: a Good Embedding Is All You Need?", ECCV 2020).

The backbone and one linear classifier over **all** training classes (``nn.Linear(D,
n_train_classes)``, with bias, as RFS's ``classifier``) are trained with the cross-entropy of
plain mini-batches of training images: no episodes, no support/query split, no inner loop. The
class declares ``training_batches = "images"``, so a run draws its steps from
:class:`datasets.batches.ImageBatchSampler` (one shuffled pass over the training split after
another, each batch a set of one-image tasks); the step, timing rule and images-seen count are
every method's (:mod:`bench.run.training`). Where MTL (Wang et al. 2021) gives each training task the
head rows of its own classes, RFS classifies every image among all training classes at once:
the comparison the harness makes possible is whether MTL's per-task heads matter.

At test time RFS fits a logistic regression on frozen, L2-normalised features of each episode's
support set; that is the unified protocol (Wang et al. adopt it from RFS, Sec. 3.4), so RFS has
no native adaptation of its own and its native protocol is the unified one. The differences
between RFS's ``eval/meta_eval.py`` and the unified protocol (its ``C = 1`` against the
paper's ``C = 3``, its five augmented copies of each support image, its default of the
classifier's logits rather than the penultimate features) are the paper's choices, applied to
every method here (docs/references.md#rfs).

The paper budget is RFS's ``train_supervised.py`` (:meth:`RFS.paper_budget`,
docs/references.md#rfs).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from core.budget import TrainBudget
from datasets import DatasetInfo
from datasets.episodes import TaskBatch
from methods import register_method
from methods.backbones import Backbone
from methods.base import FewShotMethod
from methods.taxonomy import OutsideTable1

BATCH_SIZE = 64  # [RFS] train_supervised.py --batch_size
TRAIN_IMAGES = {"mini-imagenet": 38_400, "tiered-imagenet": 448_695, "cifar-fs": 38_400,
                "fc100": 36_000}
"""Training-split images of the benchmarks RFS trains on (docs/references.md#datasets): an
RFS epoch is one pass over them in batches of 64, the last incomplete batch dropped
(``DataLoader(shuffle=True, drop_last=True)``)."""


@register_method("rfs")
class RFS(FewShotMethod):
    """Supervised pre-training on all training classes (see the module docstring); no
    hyperparameters of its own."""

    display_name = "RFS"
    citation = ("Tian, Wang, Krishnan, Tenenbaum & Isola 2020, Rethinking Few-Shot Image "
                "Classification: a Good Embedding Is All You Need? (ECCV)")
    # CPU seconds per glyphs quick run, mean of 1/5-shot: 90 vs MTL's 81 (performance.md)
    relative_cost = 1.1
    training_batches = "images"
    table1 = OutsideTable1("supervised pre-training on all training classes")

    @classmethod
    def paper_budget(cls, dataset: DatasetInfo, shots: int) -> TrainBudget:
        """[RFS] ``train_supervised.py`` defaults, the same for every dataset and shots:
        ResNet-12 with average-pooled 640-d features, SGD (momentum 0.9, weight decay 5e-4,
        not Nesterov) at 0.05, times 0.1 after epoch 60 and 0.01 after epoch 80 (its
        ``adjust_learning_rate`` runs at the start of 1-based epoch ``e`` with
        ``sum(e > [60, 80])`` decays: from epochs 61 and 81 on, as ``lr_epochs`` counts),
        100 epochs of batches of 64 training images with the training augmentation, no early stopping.
        An epoch is one pass over the training split (:data:`TRAIN_IMAGES`); on a dataset RFS
        does not train on, mini-ImageNet's 600 steps. RFS selects no model (it keeps the last
        epoch's); the harness selects on 600 validation episodes, the number RFS meta-validates
        with after training."""
        images = TRAIN_IMAGES.get(dataset.benchmark, TRAIN_IMAGES["mini-imagenet"])
        return TrainBudget(
            name="paper", backbone="resnet12", feature_mode="avg", epochs=100,
            steps_per_epoch=images // BATCH_SIZE, meta_batch=BATCH_SIZE, train_shots=1,
            train_queries=0, optimizer="sgd", lr=0.05, weight_decay=5e-4, momentum=0.9,
            nesterov=False, schedule="step", lr_epochs=(61, 81), lr_factors=(0.1, 0.01),
            early_stop_patience=None, val_episodes=600,
        )

    def __init__(self, backbone: Backbone, n_train_classes: int, ways: int,
                 hparams: Mapping[str, Any] | None = None) -> None:
        super().__init__(backbone, n_train_classes, ways, hparams)
        self.classifier = nn.Linear(backbone.out_dim, n_train_classes)

    def loss(self, batch: TaskBatch) -> torch.Tensor:
        """Mean cross-entropy over every image of ``batch`` among all training classes (an
        image's class is ``classes[t, label]``; for image batches, ``classes[t, 0]``)."""
        targets = batch.classes.gather(1, batch.labels).flatten()
        logits = self.classifier(self.backbone(batch.images.flatten(0, 1)))
        return F.cross_entropy(logits, targets)
