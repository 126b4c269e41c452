"""Train one run, select on validation, test on shared episodes, write one result file.

Every method goes through the same loop: the same sampler, data path, optimiser construction,
timing rule, model-selection rule and evaluation. Only ``method.loss`` (and ``method.adapt``
for the native protocol) differ.

Runs survive interruptions: the loop's whole state (:class:`TrainSession`) is checkpointed
atomically after every epoch and, on SIGTERM, at the next step boundary
(:mod:`bench.checkpoint`); rerunning the same sweep resumes each unfinished run from its
checkpoint and reaches the same result as an uninterrupted run. Several processes can share a
results folder (:mod:`bench.locks`), and a run can be data-parallel over ``torchrun`` processes
(:mod:`bench.distributed`).
"""
from __future__ import annotations

import contextlib
import copy
import errno
import datetime as _dt
import math
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from bench import provenance
from bench.checkpoint import (CheckpointError, StorageError, capture_rng, check_compatible,
                              checkpoint_path, dataset_identity, describe_write_failure,
                              ensure_writable, load_checkpoint, normalized_config, restore_rng,
                              save_checkpoint)
from bench.config import RunConfig
from core.budget import TrainBudget
from bench.distributed import (SINGLE, Parallel, all_reduce_gradients,
                               broadcast_object, check_meta_batch, gather_objects,
                               max_over_ranks, prepare_method, rank_seed,
                               reconcile_running_stats, running_stats, shard_batch,
                               sharded_map, weighted_loss)
from bench.evaluate import evaluate_native, evaluate_unified
from bench.locks import ClaimBoard
from bench.precision import autocast
from bench.results import SCHEMA, RunResult, is_finished, result_path
from core.atomic import write_json_atomic
from bench.stats import episode_ci95
from bench.timing import SectionTimer, device_hours
from datasets import FewShotDataset, registered_info
from datasets.augment import Normalizer, train_transform
from datasets.episodes import EpisodeLoader, EpisodeSampler
from methods import METHODS
from methods.backbones import build_backbone
from methods.base import FewShotMethod

_STREAMS = {"train": 1, "val": 2, "test": 3, "augment": 4}


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stops and records a failure."""


class Preempted(RuntimeError):
    """SIGTERM arrived: a checkpoint was saved at a step boundary and the sweep stops;
    rerunning the same command resumes."""


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


@dataclass
class TrainOutcome:
    best_state: dict[str, Any]
    best_epoch: int
    best_val: float
    val_curve: list[float] = field(default_factory=list)
    steps: int = 0
    images_seen: int = 0
    epochs: int = 0  # completed epochs (training steps and validation)
    resumes: int = 0  # times training continued from a checkpoint


def _cpu_state(module: torch.nn.Module) -> dict[str, Any]:
    return {k: (v.detach().to("cpu", copy=True) if torch.is_tensor(v) else copy.deepcopy(v))
            for k, v in module.state_dict().items()}


@dataclass(frozen=True)
class StepResult:
    loss: float  # mean training loss over every task of the meta-batch
    n_images: int  # images of the whole meta-batch (support + query of every task)
    stop: bool  # some process was asked to stop (SIGTERM) before this step ended


def parallel_train_step(method: FewShotMethod, optimizer: torch.optim.Optimizer,
                        loader: EpisodeLoader, sampler: EpisodeSampler, meta_batch: int,
                        precision: str = "fp32", parallel: Parallel = SINGLE,
                        stop_requested: bool = False) -> StepResult:
    """One optimiser step on ``meta_batch`` fresh tasks, data-parallel when ``parallel`` is.

    Every process draws and loads the same meta-batch and keeps its shard of the tasks; the
    gradients (and the loss and the stop votes) are summed over the processes before the
    optimiser step (:mod:`bench.distributed`). With one process this is the plain step.
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
               sampler: EpisodeSampler, meta_batch: int, precision: str = "fp32"
               ) -> tuple[float, int]:
    """One optimiser step on ``meta_batch`` fresh tasks; returns (loss, images processed)."""
    result = parallel_train_step(method, optimizer, loader, sampler, meta_batch, precision)
    return result.loss, result.n_images


class StopSignal:
    """While active (in the main thread), SIGTERM only sets :attr:`requested`; the training
    loop checkpoints at the next step boundary and stops (pre-emption, ``scancel``)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __enter__(self) -> "StopSignal":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)


class RunCheckpoint:
    """Where one run's checkpoint lives, what it must match, and its save/load/discard.

    Only rank 0 touches the file; the other ranks receive the loaded payload by broadcast.
    """

    def __init__(self, path: Path, config: RunConfig, identity: dict[str, str],
                 parallel: Parallel = SINGLE) -> None:
        """``identity``: :func:`bench.checkpoint.dataset_identity` of the run's dataset."""
        self.path = Path(path)
        self.config = config
        self.parallel = parallel
        self.identity = identity

    def header(self) -> dict[str, Any]:
        return {"key": self.config.key, "config": normalized_config(self.config.to_dict()),
                "dataset": self.identity, "world_size": self.parallel.world_size}

    def load(self) -> dict[str, Any] | None:
        """The checkpoint's payload if there is one (checked against this run), else None."""
        payload: dict[str, Any] | None = None
        error: CheckpointError | None = None
        if self.parallel.is_main and self.path.exists():
            try:
                payload = load_checkpoint(self.path)
                check_compatible(self.path, payload, key=self.config.key,
                                 config=self.config.to_dict(), identity=self.identity,
                                 world_size=self.parallel.world_size)
            except CheckpointError as exc:
                payload, error = None, exc
        payload, message = broadcast_object((payload, str(error) if error else None),
                                            self.parallel)
        if message is not None:
            raise CheckpointError(message)
        return payload

    def save(self, payload: dict[str, Any]) -> None:
        if self.parallel.is_main:
            save_checkpoint(self.path, {**self.header(), **payload})

    def discard(self) -> None:
        if self.parallel.is_main:
            self.path.unlink(missing_ok=True)


class TrainSession:
    """Everything the training loop reads and changes: data path, sampler, optimiser,
    schedule, random generators, position and model-selection state. Its
    :meth:`state_dict`/:meth:`load_state_dict` are the checkpoint; resuming from one continues
    exactly where it was taken."""

    def __init__(self, method: FewShotMethod, dataset: FewShotDataset, config: RunConfig,
                 device: torch.device, parallel: Parallel = SINGLE) -> None:
        budget = config.budget
        self.method, self.dataset, self.config = method, dataset, config
        self.device, self.parallel = device, parallel
        self.augment = torch.Generator(device=device).manual_seed(
            stream_seed(config.seed, "augment"))
        augmentation = type(method).training_augmentation(registered_info(dataset), budget)
        transform = train_transform(augmentation, dataset.image_size, dataset.mean, dataset.std,
                                    generator=self.augment)
        self.train_loader = EpisodeLoader(dataset.train, transform, device)
        self.val_loader = EpisodeLoader(dataset.val, Normalizer(dataset.mean, dataset.std),
                                        device)
        self.sampler = EpisodeSampler(dataset.train, config.ways, budget.train_shots,
                                      budget.train_queries, stream_seed(config.seed, "train"))
        self.optimizer = build_optimizer(budget, method.parameters())
        self.schedule = EpochSchedule(budget, self.optimizer)
        self.outcome = TrainOutcome(best_state=_cpu_state(method), best_epoch=0,
                                    best_val=-math.inf)
        self.since_best = 0
        self.step_in_epoch = 0  # steps already taken in epoch ``outcome.epochs + 1``
        self.finished = False

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self, timer: SectionTimer) -> dict[str, Any]:
        """The checkpoint payload (rank 0's; every rank's torch random state included)."""
        o = self.outcome
        return {
            "model": _cpu_state(self.method),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": gather_objects(capture_rng(self.augment, self.device), self.parallel),
            "progress": {"epochs": o.epochs, "step_in_epoch": self.step_in_epoch,
                         "steps": o.steps, "images_seen": o.images_seen,
                         "since_best": self.since_best, "finished": self.finished,
                         "resumes": o.resumes},
            "best": {"state": o.best_state, "epoch": o.best_epoch, "val": o.best_val,
                     "val_curve": list(o.val_curve)},
            "timings": dict(timer.seconds),
            "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }

    def load_state_dict(self, state: dict[str, Any], timer: SectionTimer) -> None:
        self.method.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.sampler.load_state_dict(state["sampler"])
        restore_rng(state["rng"][self.parallel.rank], self.augment, self.device)
        p, best, o = state["progress"], state["best"], self.outcome
        o.epochs, o.steps, o.images_seen = p["epochs"], p["steps"], p["images_seen"]
        o.resumes = p["resumes"] + 1
        self.step_in_epoch, self.since_best, self.finished = (p["step_in_epoch"],
                                                              p["since_best"], p["finished"])
        o.best_state, o.best_epoch, o.best_val = best["state"], best["epoch"], best["val"]
        o.val_curve = list(best["val_curve"])
        timer.seconds.clear()
        timer.seconds.update(state["timings"])

    # ------------------------------------------------------------------ loop
    def run(self, timer: SectionTimer, progress: bool = True,
            checkpoint: RunCheckpoint | None = None) -> TrainOutcome:
        """Train until the budget's last epoch or early stopping; with ``checkpoint``, save
        after every epoch, and on SIGTERM at the next step boundary (then :class:`Preempted`)."""
        with StopSignal() as stop:
            while not self.finished:
                if self._train_epoch(timer, progress, stop):
                    self._save(timer, checkpoint)
                    raise Preempted(self._stop_message(checkpoint))
                self._end_epoch(timer, progress)
                self._save(timer, checkpoint)
                if self._any_rank(stop.requested):
                    raise Preempted(self._stop_message(checkpoint))
        return self.outcome

    def _train_epoch(self, timer: SectionTimer, progress: bool, stop: StopSignal) -> bool:
        """The rest of the current epoch's steps; True when asked to stop (SIGTERM) midway."""
        budget, o = self.config.budget, self.outcome
        epoch = o.epochs + 1
        self.method.train()
        bar = tqdm(range(self.step_in_epoch, budget.steps_per_epoch),
                   desc=f"{self.config.key} epoch {epoch}", leave=False,
                   disable=not (progress and self.parallel.is_main))
        for _ in bar:
            section = "train" if o.steps else "first_step"  # warm-up/compile, apart
            with timer.section(section):
                result = parallel_train_step(self.method, self.optimizer, self.train_loader,
                                             self.sampler, budget.meta_batch,
                                             self.config.precision, self.parallel,
                                             stop.requested)
            if not math.isfinite(result.loss):
                raise NonFiniteLossError(
                    f"training loss became {result.loss} at step {o.steps + 1} (epoch {epoch}); "
                    "try a lower learning rate or --precision fp32")
            o.steps += 1
            o.images_seen += result.n_images
            self.step_in_epoch += 1
            bar.set_postfix(loss=f"{result.loss:.3f}")
            # With several processes only the vote summed in the step counts (all agree).
            stop_now = result.stop or (not self.parallel.enabled and stop.requested)
            if stop_now and self.step_in_epoch < budget.steps_per_epoch:
                return True
        return False

    def validate(self) -> float:
        """Mean unified-protocol accuracy on the run's validation episodes (same every epoch)."""
        budget, config = self.config.budget, self.config
        val_sampler = EpisodeSampler(self.dataset.val, config.ways,
                                     budget.val_shots or config.shots, config.queries,
                                     stream_seed(config.seed, "val"))
        episodes = val_sampler.sample(budget.val_episodes)
        accs = sharded_map(lambda part: evaluate_unified(
            self.method, self.val_loader, part, solver=config.solver, C=config.logreg_c,
            precision=config.precision), episodes, self.parallel)
        return float(np.mean(accs))

    def _end_epoch(self, timer: SectionTimer, progress: bool) -> None:
        """Validation, schedule step, model selection and early stopping."""
        budget, o = self.config.budget, self.outcome
        epoch = o.epochs + 1
        with timer.section("validation"):
            val = self.validate()
        o.val_curve.append(val)
        self.schedule.step(val)
        if val > o.best_val:
            o.best_val, o.best_epoch, self.since_best = val, epoch, 0
            o.best_state = _cpu_state(self.method)
        else:
            self.since_best += 1
        o.epochs, self.step_in_epoch = epoch, 0
        if progress and self.parallel.is_main:
            tqdm.write(f"{self.config.key}: epoch {epoch} val {val:.2f}% "
                       f"(best {o.best_val:.2f}% at epoch {o.best_epoch})")
        patience = budget.early_stop_patience
        if epoch >= budget.epochs or (patience is not None and self.since_best >= patience):
            self.finished = True

    def _save(self, timer: SectionTimer, checkpoint: RunCheckpoint | None) -> None:
        if checkpoint is None:
            return
        with timer.section("checkpoint"):
            checkpoint.save(self.state_dict(timer))

    def _any_rank(self, flag: bool) -> bool:
        return any(gather_objects(bool(flag), self.parallel))

    def _stop_message(self, checkpoint: RunCheckpoint | None) -> str:
        where = (f"checkpoint saved to {checkpoint.path}" if checkpoint is not None
                 else "no checkpoint (checkpoints are off)")
        return (f"{self.config.key}: stopped by SIGTERM after step {self.outcome.steps} "
                f"(epoch {self.outcome.epochs + 1}); {where}. Rerun the same command to resume.")


def train(method: FewShotMethod, dataset: FewShotDataset, config: RunConfig,
          device: torch.device, timer: SectionTimer, progress: bool = True, *,
          checkpoint: RunCheckpoint | None = None, parallel: Parallel = SINGLE
          ) -> TrainOutcome:
    """The timed training loop with validation-based model selection and early stopping;
    resumes from ``checkpoint`` when it holds one."""
    session = TrainSession(method, dataset, config, device, parallel)
    if checkpoint is not None:
        _resume(session, checkpoint, timer)
    return session.run(timer, progress, checkpoint)


def _resume(session: TrainSession, checkpoint: RunCheckpoint, timer: SectionTimer) -> None:
    """Load ``checkpoint`` into ``session`` if it holds one (and say so, timed)."""
    started = time.perf_counter()
    payload = checkpoint.load()
    if payload is None:
        return
    session.load_state_dict(payload, timer)
    seconds = time.perf_counter() - started
    timer.seconds["resume"] += seconds
    o = session.outcome
    if session.parallel.is_main:
        where = ("training had finished; testing" if session.finished else
                 f"epoch {o.epochs + 1}, step {session.step_in_epoch + 1}")
        tqdm.write(f"resumed {session.config.key} from {checkpoint.path} ({where}; "
                   f"{o.steps} steps and {timer.total('train') + timer.total('first_step'):.1f}"
                   f" s of training already done) in {seconds:.2f} s")


def evaluate_test_split(method: FewShotMethod, dataset: FewShotDataset, config: RunConfig,
                        device: torch.device, progress: bool = True,
                        parallel: Parallel = SINGLE) -> tuple[dict[str, Any], str]:
    """Both protocols on the run's test episodes; returns (results, episode hash).

    With several processes each evaluates a slice of the episodes and the per-episode
    accuracies are gathered in episode order."""
    loader = EpisodeLoader(dataset.test, Normalizer(dataset.mean, dataset.std), device)
    sampler = EpisodeSampler(dataset.test, config.ways, config.shots, config.queries,
                             stream_seed(config.seed, "test"))
    episodes = sampler.sample(config.episodes)
    progress = progress and parallel.is_main
    results: dict[str, Any] = {}
    timer = SectionTimer(device)
    with timer.section("unified"):
        unified = sharded_map(lambda part: evaluate_unified(
            method, loader, part, solver=config.solver, C=config.logreg_c,
            precision=config.precision, progress=progress), episodes, parallel)
    results["unified"] = _protocol(unified, timer.total("unified"))
    if method.has_native_adaptation:
        with timer.section("native"):
            native = sharded_map(lambda part: evaluate_native(
                method, loader, part, precision=config.precision, progress=progress),
                episodes, parallel)
        results["native"] = _protocol(native, timer.total("native"))
    else:
        results["native"] = results["unified"]
    return results, episodes.digest()


def _protocol(accuracies: list[float], seconds: float) -> dict[str, Any]:
    return {"accuracies": [round(a, 4) for a in accuracies],
            "mean": float(np.mean(accuracies)), "ci95": episode_ci95(accuracies),
            "seconds": seconds}


def run_one(config: RunConfig, dataset: FewShotDataset, device: torch.device,
            progress: bool = True, *, checkpoint: RunCheckpoint | None = None,
            parallel: Parallel = SINGLE) -> RunResult:
    """Train (or resume, with ``checkpoint``) and test one run; returns the result record
    (status "ok"). Device-hours = training seconds x processes; only the training steps the
    result is made of are counted (work lost after the last checkpoint is redone once)."""
    started = provenance.collect(device, parallel.world_size)
    check_meta_batch(config.budget.meta_batch, parallel)
    torch.manual_seed(config.seed)
    method = prepare_for_device(build_method(config, dataset), config, device)
    prepare_method(method, parallel)
    if parallel.enabled:  # independent dropout masks per process
        torch.manual_seed(rank_seed(config.seed, parallel.rank))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timer = SectionTimer(device)
    outcome = train(method, dataset, config, device, timer, progress, checkpoint=checkpoint,
                    parallel=parallel)
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    method.load_state_dict(outcome.best_state)
    with timer.section("eval"):
        test_results, digest = evaluate_test_split(method, dataset, config, device, progress,
                                                   parallel)
    first_step = timer.total("first_step")
    train_seconds = max_over_ranks(timer.total("train") + first_step, parallel)
    return {
        "schema": SCHEMA,
        "status": "ok",
        "key": config.key,
        "config": config.to_dict(),
        "n_train_classes": dataset.train.n_classes,
        "provenance": started,
        "timings": {
            "train_seconds": train_seconds,
            "device_hours": device_hours(train_seconds, parallel.world_size),
            "device_hours_unit": "GPU-hours" if device.type == "cuda" else "CPU-hours",
            "first_step_seconds": first_step,
            "validation_seconds": timer.total("validation"),
            "eval_seconds": timer.total("eval"),
            "checkpoint_seconds": timer.total("checkpoint"),
            "resume_seconds": timer.total("resume"),
            "resumes": outcome.resumes,
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


def failure_record(config: RunConfig, device: torch.device, error: BaseException,
                   world_size: int = 1) -> RunResult:
    tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return {
        "schema": SCHEMA,
        "status": "failed",
        "key": config.key,
        "config": config.to_dict(),
        "provenance": provenance.collect(device, world_size),
        "error": f"{type(error).__name__}: {error}",
        "traceback": tb[-4000:],
    }


def write_result(path: Path, record: RunResult) -> None:
    """Write one result file atomically; :class:`StorageError` (with what to do) on failure."""
    try:
        write_json_atomic(path, record)
    except OSError as exc:
        raise StorageError(exc.errno or errno.EIO,
                           describe_write_failure(path, exc, "result file")) from exc


@dataclass
class SweepSummary:
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)  # being run by another process


@dataclass(frozen=True)
class CheckpointPolicy:
    """How a sweep uses checkpoints: ``enabled`` (save and resume), ``restart`` (discard
    existing ones first), ``keep`` (leave them after the result is written)."""

    enabled: bool = True
    restart: bool = False
    keep: bool = False


def preflight_checkpoints(configs: list[RunConfig], datasets: dict[str, FewShotDataset],
                          out_dir: Path, world_size: int = 1) -> list[str]:
    """Problems with the existing checkpoints of the unfinished runs a sweep would resume
    (corrupt, other configuration, other dataset, other world size), found before any
    training starts. (``--restart`` and ``--force`` discard checkpoints, so skip this.)"""
    identities: dict[str, dict[str, str]] = {}
    problems = []
    for config in configs:
        path = checkpoint_path(out_dir, config.key)
        if not path.exists() or is_finished(result_path(out_dir, config.key)):
            continue
        if config.dataset not in identities:
            identities[config.dataset] = dataset_identity(datasets[config.dataset])
        try:
            payload = load_checkpoint(path, mmap=True)
            check_compatible(path, payload, key=config.key, config=config.to_dict(),
                             identity=identities[config.dataset], world_size=world_size)
        except CheckpointError as error:
            problems.append(str(error))
    return problems


def run_sweep(configs: list[RunConfig], datasets: dict[str, FewShotDataset],
              device: torch.device, out_dir: Path, force: bool = False,
              progress: bool = True, *, checkpoints: CheckpointPolicy = CheckpointPolicy(),
              parallel: Parallel = SINGLE, claim: bool = True) -> SweepSummary:
    """Run every config; an existing finished result is skipped unless ``force`` (which also
    retrains from scratch). A failing run writes a failure record (keeping its checkpoint) and
    the sweep goes on.

    Each run is claimed first (``claim``; :mod:`bench.locks`), so processes sharing
    ``out_dir`` never run the same key twice; a run another process holds is skipped. An
    unfinished run resumes from its checkpoint. A storage problem (:class:`StorageError`) or
    SIGTERM (:class:`Preempted`) stops the sweep; nothing already written is lost.
    Only rank 0 of a data-parallel run writes files.
    """
    out_dir = Path(out_dir)
    if parallel.is_main:
        ensure_writable(out_dir)
    board = ClaimBoard(out_dir / "claims")
    summary = SweepSummary()
    identities: dict[str, dict[str, str]] = {}
    for config in configs:
        path = result_path(out_dir, config.key)
        with contextlib.ExitStack() as held:
            status = _claim_run(config, path, board, held, force, claim) \
                if parallel.is_main else None
            status = broadcast_object(status, parallel)
            if status is not None:
                getattr(summary, status).append(config.key)
                continue
            store = None
            if checkpoints.enabled:
                if config.dataset not in identities:
                    identities[config.dataset] = dataset_identity(datasets[config.dataset])
                store = RunCheckpoint(checkpoint_path(out_dir, config.key), config,
                                      identities[config.dataset], parallel)
                if checkpoints.restart or force:
                    store.discard()
            _run_and_record(config, datasets[config.dataset], device, path, store,
                            checkpoints, parallel, progress, summary)
    return summary


def _claim_run(config: RunConfig, path: Path, board: ClaimBoard, held: contextlib.ExitStack,
               force: bool, claim: bool) -> str | None:
    """None when this process may run ``config`` (holding its claim in ``held``), else the
    summary list it belongs to ("skipped" or "busy")."""
    if not force and is_finished(path):
        tqdm.write(f"skip {config.key}: finished result exists at {path} (--force reruns)")
        return "skipped"
    if not claim:
        return None
    taken = board.try_claim(config.key)
    if taken is None:
        holder = board.holder(config.key)
        who = holder.describe() if holder is not None else "another process"
        tqdm.write(f"busy {config.key}: being run by {who}; skipped")
        return "busy"
    held.enter_context(taken)
    if not force and is_finished(path):  # finished by another process meanwhile
        tqdm.write(f"skip {config.key}: finished result exists at {path} (--force reruns)")
        return "skipped"
    return None


def _run_and_record(config: RunConfig, dataset: FewShotDataset, device: torch.device,
                    path: Path, store: RunCheckpoint | None, policy: CheckpointPolicy,
                    parallel: Parallel, progress: bool, summary: SweepSummary) -> None:
    try:
        record = run_one(config, dataset, device, progress, checkpoint=store, parallel=parallel)
    except (KeyboardInterrupt, SystemExit, Preempted, StorageError):
        raise
    except Exception as error:  # one failure costs one row, not the sweep
        if parallel.is_main:
            write_result(path, failure_record(config, device, error, parallel.world_size))
            kept = (f"; its checkpoint {store.path} is kept (a rerun resumes from it, "
                    "--restart discards it)" if store is not None and store.path.exists()
                    else "")
            tqdm.write(f"FAILED {config.key}: {type(error).__name__}: {error} "
                       f"(failure record written to {path}{kept})")
        summary.failed.append(config.key)
        return
    if parallel.is_main:
        write_result(path, record)
        if store is not None and not policy.keep:
            store.discard()
        unified, native = record["test"]["unified"], record["test"]["native"]
        tqdm.write(f"done {config.key}: unified {unified['mean']:.2f} ± {unified['ci95']:.2f}%, "
                   f"native {native['mean']:.2f} ± {native['ci95']:.2f}%, "
                   f"{record['timings']['train_seconds']:.1f} s training x "
                   f"{parallel.world_size} device(s) -> {path}")
    summary.finished.append(config.key)

