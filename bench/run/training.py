"""Everything one training step needs, built one way for ``bench run``, ``bench speed`` and
the tests: :func:`build_training` (method, optimiser, sampler, data path with augmentation), the
optimiser and learning-rate schedule factories, and the step itself
(:func:`parallel_train_step`).

Every method goes through the same step: the same sampler, data path, optimiser construction
and timing. Only ``method.loss`` differs, and what the step draws: episodes, or, for a method
that declares ``training_batches = "images"`` (supervised pre-training), plain mini-batches of
training images from :class:`datasets.batches.ImageBatchSampler`, in the index form of
one-image tasks, so loading, sharding, timing and the images-seen count are the same
(:func:`build_sampler`). Random draws happen in one fixed order: torch's
global generator is seeded with the run seed right before the method is built (model
initialisation, then dropout and DropBlock masks; seeded per rank in data-parallel runs), while
the episode sampler and the augmentation have generators of their own
(:func:`stream_seed`), so every method of a seed sees the same training episodes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch

from bench.common.config import RunConfig
from bench.run.distributed import (SINGLE, Parallel, all_reduce_gradients, check_meta_batch,
                               prepare_method, rank_seed, reconcile_running_stats,
                               running_stats, shard_batch, weighted_loss)
from bench.common.precision import autocast
from core.budget import DATASET_AUGMENTATION, TrainBudget
from datasets import DatasetInfo, FewShotDataset, registered_info
from datasets.augment import train_transform
from datasets.base import ClassSplit
from datasets.batches import ImageBatchSampler
from datasets.episodes import EpisodeLoader, EpisodeSampler
from methods.plugins import method_class
from methods.backbones import build_backbone
from methods.base import FewShotMethod

_STREAMS = {"train": 1, "val": 2, "test": 3, "augment": 4, "tune": 5}
"""Episode streams per run seed: ``tune`` is the validation split's stream that ``bench tune``'s
trials select on, apart from the runs' own ``val`` stream."""

TrainingSampler = EpisodeSampler | ImageBatchSampler
"""A run's training stream: ``sample(meta_batch)`` gives the indices of one step's batch."""


def stream_seed(seed: int, purpose: str) -> int:
    """Seed of the episode stream ``purpose`` (train/val/test/augment/tune) of run seed ``seed``.

    Depends on nothing but these two, so every method draws the same test episodes.
    """
    return int(np.random.SeedSequence([seed, _STREAMS[purpose]]).generate_state(1)[0])


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available; "
                         "use --device cpu (or auto)")
    return device


def build_method(config: RunConfig, dataset: FewShotDataset) -> FewShotMethod:
    return build_method_for(config, dataset.channels, dataset.image_size,
                            dataset.train.n_classes)


def build_method_for(config: RunConfig, channels: int, image_size: int,
                     n_train_classes: int) -> FewShotMethod:
    """The (untrained) method of run ``config`` for images of ``channels`` x ``image_size``
    px and ``n_train_classes`` training classes: what :func:`build_method` builds from a
    dataset, and :mod:`bench.store.model_files` from a model file's recorded facts."""
    budget = config.budget
    backbone = build_backbone(
        budget.backbone, in_channels=channels, image_size=image_size,
        feature_mode=budget.feature_mode,
        dropblock_size=5 if image_size >= 64 else 2,
        ramp_steps=budget.dropblock_ramp_steps,
    )
    cls = method_class(config.method, config.method_source)
    return cls(backbone, n_train_classes, config.ways, budget.hparams)


def prepare_for_device(method: FewShotMethod, config: RunConfig, device: torch.device
                       ) -> FewShotMethod:
    """Move to ``device``; channels_last weights (on CUDA by default) make the convolutions
    run channels_last; ``compile`` compiles the backbone in place (state-dict keys unchanged),
    so its compile time lands in the first timed training steps."""
    method = method.to(device)
    channels_last = config.channels_last if config.channels_last is not None \
        else device.type == "cuda"
    if channels_last:
        method.backbone.to(memory_format=torch.channels_last)
    if config.compile:
        method.backbone.compile()
    return method


@dataclass
class Training:
    """What a training step needs (:func:`build_training`)."""

    method: FewShotMethod
    optimizer: torch.optim.Optimizer
    sampler: TrainingSampler  # the run's training stream (episodes or image batches)
    loader: EpisodeLoader  # training split on the device, with the training transform
    augment: torch.Generator  # the augmentation's random generator (checkpointed)
    augmentation: str | None  # the training augmentation in use (None: normalisation only)


def build_training(config: RunConfig, dataset: FewShotDataset, device: torch.device,
                   parallel: Parallel = SINGLE, info: DatasetInfo | None = None) -> Training:
    """The method (seeded, on ``device``, ready for ``parallel``), its optimiser, the training
    sampler and the training data path of run ``config``.

    The augmentation is the budget's (``TrainBudget.augmentation``, resolved by
    :class:`~bench.common.config.RunConfig`). Only a budget left unresolved (its method's class was
    not found when the configuration was made) falls back to the method's policy applied to
    the dataset's declared augmentation; ``info`` then replaces the dataset's registry entry
    (``bench speed`` passes one for its synthetic images).
    """
    budget = config.budget
    check_meta_batch(budget.meta_batch, parallel)
    torch.manual_seed(config.seed)
    method = prepare_for_device(build_method(config, dataset), config, device)
    prepare_method(method, parallel)
    if parallel.enabled:  # independent dropout masks per process
        torch.manual_seed(rank_seed(config.seed, parallel.rank))
    augment = torch.Generator(device=device).manual_seed(stream_seed(config.seed, "augment"))
    augmentation = budget.augmentation
    if augmentation == DATASET_AUGMENTATION:
        augmentation = type(method).training_augmentation(
            info if info is not None else registered_info(dataset), budget)
    transform = train_transform(augmentation, dataset.image_size, dataset.mean, dataset.std,
                                generator=augment)
    loader = EpisodeLoader(dataset.train, transform, device)
    sampler = build_sampler(type(method), dataset.train, config)
    optimizer = build_optimizer(budget, method.parameters())
    return Training(method, optimizer, sampler, loader, augment, augmentation)


def build_sampler(cls: type[FewShotMethod], split: ClassSplit, config: RunConfig
                  ) -> TrainingSampler:
    """The training stream of run ``config`` on ``split``, seeded by the run seed alone:
    ``ways``-way episodes with the budget's shots and queries, or, for a method class that
    declares ``training_batches = "images"``, batches of ``meta_batch`` images (the budget
    must then say ``train_shots=1, train_queries=0``: one image per task)."""
    budget, seed = config.budget, stream_seed(config.seed, "train")
    if cls.training_batches == "images":
        if (budget.train_shots, budget.train_queries) != (1, 0):
            raise ValueError(
                f"method {cls.name!r} trains on image batches, one image per task, so its "
                f"budget needs train_shots=1 and train_queries=0, not {budget.train_shots} and "
                f"{budget.train_queries} (core.budget.as_image_batches converts an episodic "
                "budget)")
        return ImageBatchSampler(split, seed)
    return EpisodeSampler(split, config.ways, budget.train_shots, budget.train_queries, seed)


def images_per_task(cls: type[FewShotMethod], ways: int, budget: TrainBudget) -> int:
    """Images of one training task of ``cls`` under ``budget`` (1 for image batches)."""
    if cls.training_batches == "images":
        return 1
    return ways * (budget.train_shots + budget.train_queries)


def build_optimizer(budget: TrainBudget, params: Iterable[torch.nn.Parameter]
                    ) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if budget.optimizer == "radam":
        return torch.optim.RAdam(params, lr=budget.lr, weight_decay=budget.weight_decay)
    if budget.optimizer == "adam":
        return torch.optim.Adam(params, lr=budget.lr, weight_decay=budget.weight_decay)
    if budget.optimizer == "sgd":
        return torch.optim.SGD(params, lr=budget.lr, momentum=budget.momentum,
                               nesterov=budget.nesterov, weight_decay=budget.weight_decay)
    raise ValueError(f"unknown optimizer {budget.optimizer!r}; valid: radam, adam, sgd")


def step_factor(lr_epochs: tuple[int, ...], lr_factors: tuple[float, ...], epoch: int
                ) -> float:
    """The step schedule's learning-rate factor in 1-based epoch ``epoch``: the factor of the
    last boundary at or before it (1.0 before the first)."""
    value = 1.0
    for boundary, factor in zip(lr_epochs, lr_factors):
        if epoch >= boundary:
            value = factor
    return value


class EpochSchedule:
    """Learning-rate schedule stepped once per epoch (after validation).

    Kinds: ``plateau`` (ReduceLROnPlateau on validation accuracy), ``step`` (the rate times
    ``lr_factors[i]`` from epoch ``lr_epochs[i]`` on), ``linear`` (the rate times
    ``1 - e / epochs`` in epoch ``e + 1``: linear annealing towards 0, held constant within an
    epoch; Reptile's per-iteration meta-step annealing, which Meta-MinibatchProx trains with,
    differs from it by at most ``1 / epochs`` of the initial rate) and ``constant``.

    ``step``: ``lr_factors[i]`` applies from the 1-based epoch ``lr_epochs[i]`` on, as in
    MetaOptNet's ``train.py`` (lines 170-180), which steps its ``LambdaLR`` at the *start* of
    every epoch: its epoch ``e`` (counting from 1) runs at ``lambda(e)``, so with boundaries
    20, 40, 50 its 20th epoch already runs at 0.06 (docs/references.md#metaoptnet-r2d2-protonet).
    """

    def __init__(self, budget: TrainBudget, optimizer: torch.optim.Optimizer) -> None:
        self.kind = budget.schedule
        self.plateau = None
        self.lambda_lr = None
        if self.kind == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=budget.plateau_factor,
                patience=budget.plateau_patience)
        elif self.kind == "step":
            epochs, factors = budget.lr_epochs, budget.lr_factors

            self.lambda_lr = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda done: step_factor(epochs, factors, done + 1))
        elif self.kind == "linear":
            total = budget.epochs
            self.lambda_lr = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda epoch: max(0.0, 1.0 - epoch / total))
        elif self.kind != "constant":
            raise ValueError(f"unknown schedule {self.kind!r}; valid: plateau, step, linear, "
                             "constant")

    def step(self, val_accuracy: float) -> None:
        if self.plateau is not None:
            self.plateau.step(val_accuracy)
        elif self.lambda_lr is not None:
            self.lambda_lr.step()

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind,
                "plateau": self.plateau.state_dict() if self.plateau is not None else None,
                "lambda_lr": self.lambda_lr.state_dict() if self.lambda_lr is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["kind"] != self.kind:
            raise ValueError(f"schedule state is for {state['kind']!r}, this is {self.kind!r}")
        if self.plateau is not None:
            self.plateau.load_state_dict(state["plateau"])
        if self.lambda_lr is not None:
            self.lambda_lr.load_state_dict(state["lambda_lr"])


@dataclass(frozen=True)
class StepResult:
    loss: float  # mean training loss over every task of the meta-batch
    n_images: int  # images of the whole meta-batch (support + query of every task)
    stop: bool  # some process was asked to stop (SIGTERM) before this step ended


def parallel_train_step(method: FewShotMethod, optimizer: torch.optim.Optimizer,
                        loader: EpisodeLoader, sampler: TrainingSampler, meta_batch: int,
                        precision: str = "fp32", parallel: Parallel = SINGLE,
                        stop_requested: bool = False) -> StepResult:
    """One optimiser step on ``meta_batch`` fresh tasks (images, for image batches),
    data-parallel when ``parallel`` is.

    Every process draws and loads the same meta-batch and keeps its shard of the tasks; the
    gradients (and the loss and the stop votes) are summed over the processes before the
    optimiser step (:mod:`bench.run.distributed`). With one process this is the plain step.
    """
    batch = loader.load(sampler.sample(meta_batch))
    mine = shard_batch(batch, parallel)
    task_local = parallel.enabled and method.task_local_batch_norm
    before = running_stats(method) if task_local else []
    with autocast(loader.device, precision):
        loss = method.loss(mine)
    weighted = weighted_loss(loss, mine.n_tasks, batch.n_tasks, parallel)
    optimizer.zero_grad(set_to_none=True)
    weighted.backward()
    value, stop = float(loss.detach()), stop_requested
    if parallel.enabled:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        value, votes = all_reduce_gradients(params, [float(weighted.detach()),
                                                     float(stop_requested)], parallel)
        stop = votes > 0
        reconcile_running_stats(before, parallel)
    optimizer.step()
    method.on_optimizer_step()
    return StepResult(value, batch.n_images, stop)


def train_step(method: FewShotMethod, optimizer: torch.optim.Optimizer, loader: EpisodeLoader,
               sampler: TrainingSampler, meta_batch: int, precision: str = "fp32"
               ) -> tuple[float, int]:
    """One optimiser step on ``meta_batch`` fresh tasks; returns (loss, images processed)."""
    result = parallel_train_step(method, optimizer, loader, sampler, meta_batch, precision)
    return result.loss, result.n_images
