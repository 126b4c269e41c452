"""How a run is trained: :class:`TrainBudget`, one dataclass for every method.

It lives in the neutral layer so a method class can build its own paper budget
(:meth:`methods.base.FewShotMethod.paper_budget`) without importing ``bench``; the named presets
(``smoke``, ``quick``, ``paper``) are resolved by :func:`bench.common.config.resolve_budget`.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from core.convergence import PlateauRule
from core.hparams import HParam, HParamError, unknown_names

#: The named budget presets, resolved by :func:`bench.common.config.resolve_budget`; here, in the
#: neutral layer, so the command line lists them without importing torch.
BUDGETS = ("smoke", "quick", "converged", "long", "paper")

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
    # epochs) | constant; see bench.run.training.EpochSchedule
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
    :class:`bench.common.config.RunConfig` resolves, so a run's configuration records what it used."""
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


#: The budget fields ``bench run --set FIELD=VALUE`` (and ``bench tune``'s search) may change,
#: each with what it accepts (:class:`core.hparams.HParam`'s types and ranges; the default shown
#: is :class:`TrainBudget`'s, a named budget sets its own). The two list fields,
#: :data:`SETTABLE_LISTS`, are checked apart.
SETTABLE_FIELDS: Mapping[str, HParam] = {
    "optimizer": HParam("radam", str, choices=("radam", "adam", "sgd"), doc="optimiser"),
    "lr": HParam(1e-3, float, gt=0, doc="learning rate"),
    "weight_decay": HParam(0.0, float, ge=0, doc="L2 penalty of the optimiser"),
    "momentum": HParam(0.9, float, ge=0, lt=1, doc="SGD momentum"),
    "nesterov": HParam(False, bool, doc="SGD with Nesterov momentum"),
    "schedule": HParam("plateau", str, choices=("plateau", "step", "linear", "constant"),
                       doc="learning-rate schedule"),
    "plateau_factor": HParam(0.1, float, gt=0, lt=1, doc="plateau schedule's cut factor"),
    "plateau_patience": HParam(4, int, ge=0, doc="plateau schedule's patience (epochs)"),
    "epochs": HParam(8, int, ge=1, doc="(maximum) epochs"),
    "steps_per_epoch": HParam(50, int, ge=1, doc="optimiser steps per epoch"),
    "meta_batch": HParam(2, int, ge=1, doc="tasks (or images) per step"),
    "train_shots": HParam(5, int, ge=1, doc="support images per class of training tasks"),
    "train_queries": HParam(5, int, ge=0, doc="query images per class of training tasks"),
    "early_stop_patience": HParam(None, int, ge=1, optional=True,
                                  doc="epochs without validation gain before stopping; null: "
                                      "never"),
    "val_episodes": HParam(400, int, ge=1, doc="validation episodes per epoch"),
}
#: List fields of ``--set`` (``lr_epochs=26,36`` or ``[26,36]``): element type and what
#: each element accepts.
SETTABLE_LISTS: Mapping[str, HParam] = {
    "lr_epochs": HParam(2, int, ge=2, doc="step schedule: 1-based epochs from which each "
                                          "factor applies"),
    "lr_factors": HParam(0.1, float, gt=0, doc="step schedule: the factor from each of "
                                                "lr_epochs on"),
}


def _settable_description() -> str:
    scalars = [f"{name} ({hp.accepted()})" for name, hp in SETTABLE_FIELDS.items()]
    lists = [f"{name} (a list of {_plural(hp)})" for name, hp in SETTABLE_LISTS.items()]
    return "; ".join(scalars + lists)


def _plural(spec: HParam) -> str:
    """What each element of a list field accepts, in the plural ("integers >= 2")."""
    return spec.accepted().replace("an integer", "integers").replace("a number", "numbers")


def _as_list(value: Any) -> Any:
    """A list field's value as a list: ``26,36`` arrives from the command line as the string
    ``"26,36"`` (not JSON), a single number as that number."""
    if isinstance(value, str):
        try:
            return [json.loads(part) for part in value.split(",") if part.strip()]
        except json.JSONDecodeError:
            return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    if isinstance(value, tuple):  # already checked once (a TrainBudget's own)
        return list(value)
    return value


def validate_budget_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` (``--set`` pairs, values JSON-decoded as ``--hparam``'s) checked field by
    field, as :func:`core.hparams.validate_hparams` checks hyperparameters and with messages of
    the same form; list fields become tuples and a whole number given for a float field a
    float, so one setting has one spelling in a run's identity. Raises
    :class:`core.hparams.HParamError` (a ``ValueError``)."""
    known = {**SETTABLE_FIELDS, **SETTABLE_LISTS}
    unknown = [key for key in settings if key not in known]
    if unknown:
        raise HParamError(f"--set: the budget has no field {unknown_names(unknown, known)}. "
                          f"Valid: {_settable_description()}")
    problems, out = [], {}
    for key, value in settings.items():
        if key in SETTABLE_LISTS:
            spec, items = SETTABLE_LISTS[key], _as_list(value)
            bad = not isinstance(items, list) or not items or any(
                spec.problem(item) is not None for item in items)
            if bad:
                problems.append(f"{key} must be a non-empty list of {_plural(spec)}, got "
                                f"{json.dumps(value)}")
                continue
            out[key] = tuple(float(v) if spec.type is float else v for v in items)
            continue
        spec = SETTABLE_FIELDS[key]
        problem = spec.problem(value)
        if problem is not None:
            problems.append(f"{key} {problem}, got {json.dumps(value)}")
            continue
        out[key] = float(value) if spec.type is float and value is not None else value
    if problems:
        raise HParamError("--set: field " + "; ".join(problems))
    return out


def with_settings(budget: TrainBudget, settings: Mapping[str, Any]) -> TrainBudget:
    """``budget`` with ``--set``'s fields (:func:`validate_budget_settings`) replaced."""
    return dataclasses.replace(budget, **validate_budget_settings(settings)) if settings \
        else budget


def schedule_problems(budget: TrainBudget) -> list[str]:
    """What is inconsistent in ``budget``'s schedule (a step schedule whose boundaries and
    factors do not pair up, are not increasing, or lie past its last epoch)."""
    if budget.schedule != "step":
        return []
    epochs, factors = tuple(budget.lr_epochs), tuple(budget.lr_factors)
    where = f"budget {budget.name!r}"
    if len(epochs) != len(factors):
        return [f"{where}: the step schedule needs one factor per boundary; lr_epochs has "
                f"{len(epochs)} ({list(epochs)}), lr_factors {len(factors)} ({list(factors)})"]
    problems = []
    if list(epochs) != sorted(set(epochs)):
        problems.append(f"{where}: lr_epochs must be strictly increasing, got {list(epochs)}")
    late = [e for e in epochs if e > budget.epochs]
    if late:
        problems.append(f"{where}: lr_epochs {late} lie past the last epoch ({budget.epochs}); "
                        "the rate would never be cut there (set epochs or lr_epochs)")
    return problems
