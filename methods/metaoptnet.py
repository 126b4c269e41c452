"""MetaOptNet-SVM: a multi-class linear SVM as a differentiable base learner.

Lee, Maji, Ravichandran & Soatto, "Meta-Learning with Differentiable Convex Optimization",
CVPR 2019. Each episode's head is the Crammer-Singer SVM fitted on the support features by
solving its dual QP with qpth for all tasks at once (:func:`methods.heads.svm_dual_coefficients`);
query logits are ``scale · Σ_i α_i^m ⟨x_i, q⟩``.

Settings follow MetaOptNet's final "SVM-CS" head and ``train.py``/``test.py`` (FACTS.md 4.2):
C = 0.1, the ``+1.0·I`` term on the QP's quadratic form, at most 15 interior-point iterations
in training (and MetaOptNet's validation) and 3 at test time (:meth:`adapt`), a learnable logit
scale initialised to 1.0, optional label smoothing (``--eps``; 0.1 for mini-ImageNet), float32
unless ``double_precision``. Features are whatever the backbone returns; MetaOptNet's own
setting is the flattened ResNet-12 map (16,000-d at 84 px, 2,560-d at 32 px).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from methods import register_method
from methods.backbones import Backbone
from methods.heads import (EpisodeHeadMethod, linear_logits, svm_dual_coefficients,
                           svm_weights)


@register_method("metaoptnet", "metaoptnet-svm", "svm")
class MetaOptNet(EpisodeHeadMethod):
    """Crammer-Singer SVM head solved by a differentiable batched QP."""

    paper = ("Lee et al., Meta-Learning with Differentiable Convex Optimization, CVPR 2019")
    default_hparams = {
        "c_reg": 0.1,  # SVM C: upper bound of α_i^{y_i}
        "dual_ridge": 1.0,  # the +1.0·I MetaOptNet adds to the QP's quadratic form
        "train_max_iter": 15,  # qpth iterations inside loss()
        "test_max_iter": 3,  # qpth iterations inside adapt()
        "double_precision": False,  # solve the QP in float64
        "scale_init": 1.0,  # initial learnable logit scale
        "label_smoothing": 0.0,  # eps: target 1-eps on the true class, eps/(W-1) elsewhere
    }

    def __init__(self, backbone: Backbone, n_train_classes: int, ways: int,
                 hparams: Mapping[str, Any] | None = None) -> None:
        super().__init__(backbone, n_train_classes, ways, hparams)
        self._check_hparams()
        self.scale = nn.Parameter(torch.tensor(float(self.hparams["scale_init"])))

    def _check_hparams(self) -> None:
        hp = self.hparams
        problems = []
        if float(hp["c_reg"]) <= 0:
            problems.append(f"c_reg must be positive, got {hp['c_reg']}")
        if float(hp["dual_ridge"]) <= 0:
            problems.append(f"dual_ridge must be positive (it keeps the QP strictly convex), "
                            f"got {hp['dual_ridge']}")
        for key in ("train_max_iter", "test_max_iter"):
            if int(hp[key]) < 1:
                problems.append(f"{key} must be at least 1, got {hp[key]}")
        if not 0.0 <= float(hp["label_smoothing"]) < 1.0:
            problems.append(f"label_smoothing must be in [0, 1), got {hp['label_smoothing']}")
        if problems:
            raise ValueError("metaoptnet: " + "; ".join(problems))

    def fit_head(self, support: torch.Tensor, support_labels: torch.Tensor, ways: int,
                 training: bool) -> torch.Tensor:
        hp = self.hparams
        alpha = svm_dual_coefficients(
            support, support_labels, ways,
            c_reg=float(hp["c_reg"]),
            max_iter=int(hp["train_max_iter"] if training else hp["test_max_iter"]),
            dual_ridge=float(hp["dual_ridge"]),
            double_precision=bool(hp["double_precision"]),
        )
        return svm_weights(support, alpha)

    def head_logits(self, query: torch.Tensor, fitted: torch.Tensor) -> torch.Tensor:
        return self.scale * linear_logits(query, fitted)
