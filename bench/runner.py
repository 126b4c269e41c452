"""Train one run, select on validation, test on shared episodes, write one result file.

Every method goes through the same loop: the same sampler, data path, optimiser construction,
timing rule, model-selection rule and evaluation. Only ``method.loss`` (and ``method.adapt``
for the native protocol) differ.
"""
from __future__ import annotations

import copy
import math
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from bench import provenance
from bench.config import RunConfig, TrainBudget
from bench.evaluate import evaluate_native, evaluate_unified
from bench.precision import autocast
from bench.results import SCHEMA, RunResult, is_finished, result_path, write_json_atomic
from bench.stats import episode_ci95
from bench.timing import SectionTimer, device_hours
from datasets import FewShotDataset
from datasets.augment import Normalizer, train_transform
from datasets.episodes import EpisodeLoader, EpisodeSampler
from methods import METHODS
from methods.backbones import build_backbone
from methods.base import FewShotMethod

_STREAMS = {"train": 1, "val": 2, "test": 3, "augment": 4}


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stops and records a failure."""


def stream_seed(seed: int, purpose: str) -> int:
    """Seed of the episode stream ``purpose`` (train/val/test) of run seed ``seed``.

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
    budget = config.budget
    backbone = build_backbone(
        budget.backbone, in_channels=dataset.channels, image_size=dataset.image_size,
        feature_mode=budget.feature_mode,
        dropblock_size=5 if dataset.image_size >= 64 else 2,
    )
    cls = METHODS.get(config.method)
    return cls(backbone, dataset.train.n_classes, config.ways, budget.hparams)


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


class EpochSchedule:
    """Learning-rate schedule stepped once per epoch (after validation)."""

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

            def factor(epoch: int) -> float:
                value = 1.0
                for boundary, f in zip(epochs, factors):
                    if epoch >= boundary:
                        value = f
                return value

            self.lambda_lr = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        elif self.kind != "constant":
            raise ValueError(f"unknown schedule {self.kind!r}; valid: plateau, step, constant")

    def step(self, val_accuracy: float) -> None:
        if self.plateau is not None:
            self.plateau.step(val_accuracy)
        elif self.lambda_lr is not None:
            self.lambda_lr.step()


@dataclass
class TrainOutcome:
    best_state: dict[str, Any]
    best_epoch: int
    best_val: float
    val_curve: list[float] = field(default_factory=list)
    steps: int = 0
    images_seen: int = 0
    epochs: int = 0


def _cpu_state(module: torch.nn.Module) -> dict[str, Any]:
    return {k: (v.detach().to("cpu", copy=True) if torch.is_tensor(v) else copy.deepcopy(v))
            for k, v in module.state_dict().items()}


def train_step(method: FewShotMethod, optimizer: torch.optim.Optimizer, loader: EpisodeLoader,
               sampler: EpisodeSampler, meta_batch: int, precision: str = "fp32"
               ) -> tuple[float, int]:
    """One optimiser step on ``meta_batch`` fresh tasks; returns (loss, images processed)."""
    batch = loader.load(sampler.sample(meta_batch))
    with autocast(loader.device, precision):
        loss = method.loss(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    method.on_optimizer_step()
    return float(loss.detach()), batch.n_images


def train(method: FewShotMethod, dataset: FewShotDataset, config: RunConfig,
          device: torch.device, timer: SectionTimer, progress: bool = True) -> TrainOutcome:
    """The timed training loop with validation-based model selection and early stopping."""
    budget = config.budget
    augment = torch.Generator(device=device).manual_seed(stream_seed(config.seed, "augment"))
    transform = train_transform(dataset.name, dataset.image_size, dataset.mean, dataset.std,
                                generator=augment)
    train_loader = EpisodeLoader(dataset.train, transform, device)
    val_loader = EpisodeLoader(dataset.val, Normalizer(dataset.mean, dataset.std), device)
    sampler = EpisodeSampler(dataset.train, config.ways, budget.train_shots,
                             budget.train_queries, stream_seed(config.seed, "train"))
    optimizer = build_optimizer(budget, method.parameters())
    schedule = EpochSchedule(budget, optimizer)
    val_shots = budget.val_shots or config.shots

    outcome = TrainOutcome(best_state=_cpu_state(method), best_epoch=0, best_val=-math.inf)
    since_best = 0
    for epoch in range(1, budget.epochs + 1):
        method.train()
        bar = tqdm(range(budget.steps_per_epoch), desc=f"{config.key} epoch {epoch}",
                   leave=False, disable=not progress)
        for _ in bar:
            section = "train" if outcome.steps else "first_step"  # warm-up/compile, apart
            with timer.section(section):
                value, n_images = train_step(method, optimizer, train_loader, sampler,
                                             budget.meta_batch, config.precision)
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"training loss became {value} at step {outcome.steps + 1} (epoch {epoch}); "
                    "try a lower learning rate or --precision fp32")
            outcome.steps += 1
            outcome.images_seen += n_images
            bar.set_postfix(loss=f"{value:.3f}")
        outcome.epochs = epoch

        with timer.section("validation"):
            val_sampler = EpisodeSampler(dataset.val, config.ways, val_shots, config.queries,
                                         stream_seed(config.seed, "val"))
            accs = evaluate_unified(method, val_loader, val_sampler.sample(budget.val_episodes),
                                    solver=config.solver, C=config.logreg_c,
                                    precision=config.precision)
        val = float(np.mean(accs))
        outcome.val_curve.append(val)
        schedule.step(val)
        if val > outcome.best_val:
            outcome.best_val, outcome.best_epoch, since_best = val, epoch, 0
            outcome.best_state = _cpu_state(method)
        else:
            since_best += 1
        if progress:
            tqdm.write(f"{config.key}: epoch {epoch} val {val:.2f}% "
                       f"(best {outcome.best_val:.2f}% at epoch {outcome.best_epoch})")
        if budget.early_stop_patience is not None and since_best >= budget.early_stop_patience:
            break
    return outcome


def evaluate_test_split(method: FewShotMethod, dataset: FewShotDataset, config: RunConfig,
         device: torch.device, progress: bool = True) -> tuple[dict[str, Any], str]:
    """Both protocols on the run's test episodes; returns (results, episode hash)."""
    loader = EpisodeLoader(dataset.test, Normalizer(dataset.mean, dataset.std), device)
    sampler = EpisodeSampler(dataset.test, config.ways, config.shots, config.queries,
                             stream_seed(config.seed, "test"))
    episodes = sampler.sample(config.episodes)
    results: dict[str, Any] = {}
    timer = SectionTimer(device)
    with timer.section("unified"):
        unified = evaluate_unified(method, loader, episodes, solver=config.solver,
                                   C=config.logreg_c, precision=config.precision,
                                   progress=progress)
    results["unified"] = _protocol(unified, timer.total("unified"))
    if method.has_native_adaptation:
        with timer.section("native"):
            native = evaluate_native(method, loader, episodes, precision=config.precision,
                                     progress=progress)
        results["native"] = _protocol(native, timer.total("native"))
    else:
        results["native"] = results["unified"]
    return results, episodes.digest()


def _protocol(accuracies: list[float], seconds: float) -> dict[str, Any]:
    return {"accuracies": [round(a, 4) for a in accuracies],
            "mean": float(np.mean(accuracies)), "ci95": episode_ci95(accuracies),
            "seconds": seconds}


def run_one(config: RunConfig, dataset: FewShotDataset, device: torch.device,
            progress: bool = True) -> RunResult:
    """Train and test one run; returns the result record (status "ok")."""
    started = provenance.collect(device)
    torch.manual_seed(config.seed)
    method = prepare_for_device(build_method(config, dataset), config, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timer = SectionTimer(device)
    outcome = train(method, dataset, config, device, timer, progress)
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    method.load_state_dict(outcome.best_state)
    with timer.section("eval"):
        test_results, digest = evaluate_test_split(method, dataset, config, device, progress)
    first_step = timer.total("first_step")
    train_seconds = timer.total("train") + first_step
    return {
        "schema": SCHEMA,
        "status": "ok",
        "key": config.key,
        "config": config.to_dict(),
        "n_train_classes": dataset.train.n_classes,
        "provenance": started,
        "timings": {
            "train_seconds": train_seconds,
            "device_hours": device_hours(train_seconds, 1),
            "device_hours_unit": "GPU-hours" if device.type == "cuda" else "CPU-hours",
            "first_step_seconds": first_step,
            "validation_seconds": timer.total("validation"),
            "eval_seconds": timer.total("eval"),
            "peak_memory_bytes": peak,
            "steps": outcome.steps,
            "images_seen": outcome.images_seen,
            "epochs": outcome.epochs,
        },
        "selection": {
            "protocol": "unified",
            "best_epoch": outcome.best_epoch,
            "best_val_accuracy": outcome.best_val,
            "val_curve": outcome.val_curve,
        },
        "test": test_results,
        "native_is_unified": not method.has_native_adaptation,
        "episode_hash": digest,
    }


def failure_record(config: RunConfig, device: torch.device, error: BaseException) -> RunResult:
    tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return {
        "schema": SCHEMA,
        "status": "failed",
        "key": config.key,
        "config": config.to_dict(),
        "provenance": provenance.collect(device),
        "error": f"{type(error).__name__}: {error}",
        "traceback": tb[-4000:],
    }


@dataclass
class SweepSummary:
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def run_sweep(configs: list[RunConfig], datasets: dict[str, FewShotDataset],
              device: torch.device, out_dir: Path, force: bool = False,
              progress: bool = True) -> SweepSummary:
    """Run every config; an existing finished result is skipped unless ``force``. A failing
    run writes a failure record and the sweep goes on."""
    summary = SweepSummary()
    for config in configs:
        path = result_path(out_dir, config.key)
        if not force and is_finished(path):
            tqdm.write(f"skip {config.key}: finished result exists at {path} (--force reruns)")
            summary.skipped.append(config.key)
            continue
        try:
            record = run_one(config, datasets[config.dataset], device, progress)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:  # one failure costs one row, not the sweep
            write_json_atomic(path, failure_record(config, device, error))
            tqdm.write(f"FAILED {config.key}: {type(error).__name__}: {error} "
                       f"(failure record written to {path})")
            summary.failed.append(config.key)
            continue
        write_json_atomic(path, record)
        unified = record["test"]["unified"]
        native = record["test"]["native"]
        tqdm.write(f"done {config.key}: unified {unified['mean']:.2f} ± {unified['ci95']:.2f}%, "
                   f"native {native['mean']:.2f} ± {native['ci95']:.2f}%, "
                   f"{record['timings']['device_hours'] * 3600:.1f} s training -> {path}")
        summary.finished.append(config.key)
    return summary
