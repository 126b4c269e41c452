"""The contract every few-shot method implements (after easyfsl's ``FewShotClassifier``).

A method holds a backbone and only what makes it different: how a batch of training tasks
becomes a loss (:meth:`FewShotMethod.loss`) and, optionally, how it adapts natively to a test
task (:meth:`FewShotMethod.adapt`). Every method is also evaluated with the unified protocol of
Wang et al. (2021, Sec. 3.4): a fresh logistic-regression head on frozen, L2-normalised
features from :meth:`FewShotMethod.features`.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping

import torch
from torch import nn

from core.hparams import HParam, validate_hparams
from datasets.episodes import TaskBatch
from methods.backbones import Backbone

Predictor = Callable[[torch.Tensor], torch.Tensor]
"""Maps query images ``[T, Q, C, H, W]`` to logits ``[T, Q, ways]``."""


class FewShotMethod(nn.Module):
    """Base class. Subclasses set ``name``, ``hparam_spec``, ``paper`` and implement
    :meth:`loss`; those with a native test-time adaptation implement :meth:`adapt`.

    ``hparams`` may only contain keys of ``hparam_spec``, with values it accepts
    (:func:`core.hparams.validate_hparams`: typos and bad values are errors).
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    hparam_spec: ClassVar[Mapping[str, HParam]] = {}
    """The method's hyperparameters: default, type, valid range and meaning of each."""

    def __init__(self, backbone: Backbone, n_train_classes: int, ways: int,
                 hparams: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.n_train_classes = n_train_classes
        self.ways = ways
        self.hparams = self.resolve_hparams(hparams or {})

    @classmethod
    def resolve_hparams(cls, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults updated with ``overrides``, checked against :attr:`hparam_spec`
        (:class:`core.hparams.HParamError`, a ``ValueError``, otherwise). Needs no model."""
        return validate_hparams(f"method {cls.name!r}", cls.hparam_spec, overrides)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[B, D]`` of images ``[B, C, H, W]`` (what the unified protocol sees)."""
        return self.backbone(images)

    def task_features(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[T, S, D]`` of ``[T, S, C, H, W]``, all tasks in one forward."""
        t, s = images.shape[:2]
        return self.features(images.flatten(0, 1)).view(t, s, -1)

    def loss(self, batch: TaskBatch) -> torch.Tensor:
        """Mean training loss over the tasks of ``batch`` (a scalar with a graph)."""
        raise NotImplementedError

    @property
    def has_native_adaptation(self) -> bool:
        return type(self).adapt is not FewShotMethod.adapt

    def adapt(self, support: torch.Tensor, support_labels: torch.Tensor) -> Predictor:
        """The method's own test-time adaptation on support ``[T, S, C, H, W]``.

        Methods without one (MTL) do not override this; their native protocol is the unified one.
        """
        raise NotImplementedError(f"{self.name} has no native adaptation")

    def on_optimizer_step(self) -> None:
        """Called by the runner after every optimiser step (advances DropBlock's ramp)."""
        self.backbone.advance_schedule()
