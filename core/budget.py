"""How a run is trained: :class:`TrainBudget`, one dataclass for every method.

It lives in the neutral layer so a method class can build its own paper budget
(:meth:`methods.base.FewShotMethod.paper_budget`) without importing ``bench``; the named presets
(``smoke``, ``quick``, ``paper``) are resolved by :func:`bench.config.resolve_budget`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from core.convergence import PlateauRule

#: The references' DropBlock ramp: the keep rate falls linearly over this many counts
#: (``20*2000`` in [MON] ``models/ResNet12_embedding.py:62`` and [MTL] ``models/resnet.py:161``;
#: ``40000`` in [L2L]). Upstream a count is one forward call of a block (training and
#: validation alike); here the ramp counts optimiser steps, and each budget says over how many
#: (:attr:`TrainBudget.dropblock_ramp_steps`, :func:`ramp_steps_ending_at_epoch`).
REFERENCE_RAMP_COUNT = 40_000
#: :attr:`TrainBudget.augmentation` value that stands for the dataset's declared training
#: augmentation (under the method's policy); resolved when a run is configured.
DATASET_AUGMENTATION = "dataset"


def ramp_steps_ending_at_epoch(forwards_per_epoch: int, steps_per_epoch: int) -> int:
    """The optimiser-step ramp that ends where a reference's forward-call ramp ends.

    A reference whose blocks see ``forwards_per_epoch`` forward calls per epoch (training and
    validation together) reaches :data:`REFERENCE_RAMP_COUNT` after
    ``REFERENCE_RAMP_COUNT / forwards_per_epoch`` epochs; with ``steps_per_epoch`` optimiser
    steps per epoch here, that is this many steps (rounded up)."""
    if forwards_per_epoch < 1 or steps_per_epoch < 1:
        raise ValueError("forwards_per_epoch and steps_per_epoch must be positive")
    return -(-REFERENCE_RAMP_COUNT * steps_per_epoch // forwards_per_epoch)


@dataclass(frozen=True)
class TrainBudget:
    """Everything that decides how a method is trained (one place for every method)."""

    name: str
    backbone: str
    feature_mode: str
    epochs: int  # maximum number of epochs; early stopping may end training sooner
    steps_per_epoch: int  # optimiser steps per epoch
    meta_batch: int  # tasks per optimiser step (images, for a method trained on image batches)
    train_shots: int  # support images per class in training tasks
    train_queries: int  # query images per class in training tasks
    optimizer: str = "radam"  # radam | adam | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    # plateau (on val accuracy) | step (lr_factors at lr_epochs) | linear (to 0 over the
    # epochs) | constant; see bench.training.EpochSchedule
    schedule: str = "plateau"
    plateau_factor: float = 0.1
    plateau_patience: int = 4
    lr_epochs: tuple[int, ...] = ()  # for "step": 1-based epochs from which each factor applies
    lr_factors: tuple[float, ...] = ()  # for "step": factor from each of lr_epochs on
    early_stop_patience: int | None = 15  # epochs without val improvement; None = never
    val_episodes: int = 400
    val_shots: int | None = None  # None = the run's test shots
    hparams: dict[str, Any] = field(default_factory=dict)  # method hyperparameters
    augmentation: str | None = DATASET_AUGMENTATION
    """Training augmentation: ``"lee2019"`` (:mod:`datasets.augment`), None (normalisation
    only), or :data:`DATASET_AUGMENTATION`: the dataset's declared one under the method's
    policy (:meth:`methods.base.FewShotMethod.training_augmentation`), which
    :class:`bench.config.RunConfig` resolves, so a run's configuration records what it used."""
    dropblock_ramp_steps: int | None = REFERENCE_RAMP_COUNT
    """Optimiser steps over which ResNet-12's DropBlock keep rate falls from 1 to
    1 - drop rate (0: the full drop rate from the first step; None: the ramp never advances,
    so DropBlock stays inactive). Backbones without DropBlock ignore it."""
    plateau_stop: PlateauRule | None = None
    """Stop training once the validation curve has plateaued by this rule
    (:mod:`core.convergence`), in addition to ``early_stop_patience``; None: no such rule.
    Stored only when set, so results written before it existed keep their identity."""

    def __post_init__(self) -> None:
        ramp = self.dropblock_ramp_steps
        if ramp is not None and (isinstance(ramp, bool) or not isinstance(ramp, int)
                                 or ramp < 0):
            raise ValueError(f"dropblock_ramp_steps must be an integer >= 0 or None (never), "
                             f"got {ramp!r}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["plateau_stop"] is None:
            del data["plateau_stop"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainBudget":
        """Inverse of :meth:`to_dict` (also after a JSON round trip: lists become tuples)."""
        data = dict(data)
        for name in ("lr_epochs", "lr_factors"):
            data[name] = tuple(data[name])
        if isinstance(data.get("plateau_stop"), dict):
            data["plateau_stop"] = PlateauRule(**data["plateau_stop"])
        return cls(**data)


def as_image_batches(budget: TrainBudget, ways: int = 5) -> TrainBudget:
    """``budget`` for a method that trains on plain mini-batches of images
    (``training_batches = "images"``, :mod:`datasets.batches`): each step draws as many images
    as one step of ``budget``'s ``ways``-way episodes holds (``meta_batch x ways x
    (train_shots + train_queries)``), each image a one-image task (``meta_batch`` images,
    ``train_shots`` 1, ``train_queries`` 0). So the CPU budgets, defined in episodes, give
    every method the same number of images per step and steps per run."""
    images = budget.meta_batch * ways * (budget.train_shots + budget.train_queries)
    return dataclasses.replace(budget, meta_batch=images, train_shots=1, train_queries=0)
