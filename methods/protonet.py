"""Prototypical Networks.

Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017. Each class
is represented by the mean of its support features; query logits are negative squared Euclidean
distances to the prototypes (:func:`methods.heads.prototype_logits`).

Choices, following MetaOptNet's ``ProtoNetHead`` (docs/references.md#metaoptnet-r2d2-protonet),
which the budgets' ResNet-12 setting comes from: the distance is divided by the feature
dimension D (``normalize_by_dim=True``; 16,000-d flattened ResNet-12 features otherwise give
logits in the thousands), and the logits are multiplied by a learnable scale initialised to 1.0.
Set ``normalize_by_dim=False, learn_scale=False`` for the original formulation (also what
learn2learn does, docs/references.md#bugs-avoided, B6).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from core.budget import TrainBudget
from core.hparams import HParam
from core.search import Range
from datasets import DatasetInfo
from methods import register_method
from methods.backbones import Backbone
from methods.heads import EpisodeHeadMethod, metaoptnet_recipe, prototype_logits, prototypes
from methods.taxonomy import OutsideTable1


@register_method("protonet", "proto")
class ProtoNet(EpisodeHeadMethod):
    """Nearest-prototype head with (scaled) negative squared Euclidean distances."""

    display_name = "ProtoNet"
    table1 = OutsideTable1("class prototypes, a closed form")
    citation = "Snell et al., Prototypical Networks for Few-shot Learning, NeurIPS 2017"
    hparam_spec = {
        "normalize_by_dim": HParam(True, bool, doc="divide squared distances by D (MetaOptNet)"),
        "learn_scale": HParam(True, bool, doc="learnable logit scale (MetaOptNet); false keeps "
                                              "it fixed"),
        "scale_init": HParam(1.0, float, doc="(initial) logit scale"),
    }
    # bench tune: the learnable logit scale's start (as MetaOptNet's)
    search_space = {"scale_init": Range(1.0, 30.0, log=True)}

    @classmethod
    def paper_budget(cls, dataset: DatasetInfo, shots: int) -> TrainBudget:
        """MetaOptNet's recipe (15 training shots), whose ProtoNet head this one follows."""
        return metaoptnet_recipe(dataset, 15, {})

    def __init__(self, backbone: Backbone, n_train_classes: int, ways: int,
                 hparams: Mapping[str, Any] | None = None) -> None:
        super().__init__(backbone, n_train_classes, ways, hparams)
        scale = torch.tensor(float(self.hparams["scale_init"]))
        if self.hparams["learn_scale"]:
            self.scale = nn.Parameter(scale)
        else:
            self.register_buffer("scale", scale)

    def fit_head(self, support: torch.Tensor, support_labels: torch.Tensor, ways: int,
                 training: bool) -> torch.Tensor:
        return prototypes(support, support_labels, ways)

    def head_logits(self, query: torch.Tensor, fitted: torch.Tensor) -> torch.Tensor:
        return self.scale * prototype_logits(query, fitted,
                                             bool(self.hparams["normalize_by_dim"]))
