"""The result record of one run: train (or resume) it, test it on the shared episodes under
both protocols, and assemble the record (:mod:`bench.store.results` documents the schema); a run
that fails gets a failure record instead. :func:`write_result` writes either atomically.
"""
from __future__ import annotations

import errno
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.common import provenance
from bench.store.checkpoint import StorageError, dataset_identity, describe_write_failure
from bench.common.config import RunConfig
from bench.run.distributed import SINGLE, Parallel, max_over_ranks, sharded_map
from bench.run.epoch_log import EpochLogger
from bench.run.evaluate import evaluate_native, evaluate_unified
from bench.store.model_files import model_payload, save_model
from bench.store.results import SCHEMA, RunResult
from bench.run.session import RunCheckpoint, train
from bench.common.stats import episode_ci95
from bench.common.timing import SectionTimer, device_hours
from bench.run.training import build_training, stream_seed
from core.atomic import write_json_atomic
from datasets import ClassSplit, FewShotDataset
from datasets.augment import Normalizer
from datasets.episodes import EpisodeIndices, EpisodeLoader, EpisodeSampler
from methods.base import FewShotMethod

def draw_episodes(split: ClassSplit, ways: int, shots: int, queries: int, episodes: int,
                  seed: int, stream: str = "test") -> EpisodeIndices:
    """The ``episodes`` evaluation episodes of run seed ``seed`` on ``split``: the episode
    stream ``stream`` (test or val) of that seed, the same for every method. ``bench run``
    tests on these and ``bench eval`` draws them the same way."""
    sampler = EpisodeSampler(split, ways, shots, queries, stream_seed(seed, stream))
    return sampler.sample(episodes)


def evaluate_test_split(method: FewShotMethod, dataset: FewShotDataset, config: RunConfig,
                        device: torch.device, progress: bool = True,
                        parallel: Parallel = SINGLE) -> tuple[dict[str, Any], str]:
    """Both protocols on the run's test episodes; returns (results, episode hash).

    With several processes each evaluates a slice of the episodes and the per-episode
    accuracies are gathered in episode order."""
    loader = EpisodeLoader(dataset.test, Normalizer(dataset.mean, dataset.std), device)
    episodes = draw_episodes(dataset.test, config.ways, config.shots, config.queries,
                             config.episodes, config.seed)
    progress = progress and parallel.is_main
    results: dict[str, Any] = {}
    timer = SectionTimer(device)
    with timer.section("unified"):
        unified = sharded_map(lambda part: evaluate_unified(
            method, loader, part, solver=config.solver, C=config.logreg_c,
            precision=config.precision, progress=progress), episodes, parallel)
    results["unified"] = protocol_result(unified, timer.total("unified"))
    if method.has_native_adaptation:
        with timer.section("native"):
            native = sharded_map(lambda part: evaluate_native(
                method, loader, part, precision=config.precision, progress=progress),
                episodes, parallel)
        results["native"] = protocol_result(native, timer.total("native"))
    else:
        results["native"] = results["unified"]
    return results, episodes.digest()


def protocol_result(accuracies: list[float], seconds: float) -> dict[str, Any]:
    """Per-episode accuracies (percent, 4 decimals), their mean and 95% CI, and seconds."""
    return {"accuracies": [round(a, 4) for a in accuracies],
            "mean": float(np.mean(accuracies)), "ci95": episode_ci95(accuracies),
            "seconds": seconds}


def run_one(config: RunConfig, dataset: FewShotDataset, device: torch.device,
            progress: bool = True, *, checkpoint: RunCheckpoint | None = None,
            parallel: Parallel = SINGLE, data: dict[str, str] | None = None,
            model_file: Path | None = None, epoch_log: EpochLogger | None = None) -> RunResult:
    """Train (or resume, with ``checkpoint``) and test one run; returns the result record
    (status "ok"). ``data``: the dataset's :func:`~bench.store.checkpoint.dataset_identity`
    (computed here when not given). ``model_file``: write the selected (tested) model there
    (:mod:`bench.store.model_files`; rank 0) and name it in the record's ``model``. ``epoch_log``: the
    run's live learning curves (``--log``, :mod:`bench.run.epoch_log`).

    Two cost figures, both x processes: ``train_device_hours`` (the timing rule: training
    steps only) and ``run_device_hours`` (training plus validation: the whole training loop as
    it ran, every epoch early stopping needed included). Only the work the result is made of
    is counted (work lost after the last checkpoint is redone once)."""
    started = provenance.collect(device, parallel.world_size)
    if data is None:
        data = dataset_identity(dataset)
    training = build_training(config, dataset, device, parallel)
    method = training.method
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timer = SectionTimer(device)
    outcome = train(training, dataset, config, device, timer, progress, checkpoint=checkpoint,
                    parallel=parallel, epoch_log=epoch_log)
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    method.load_state_dict(outcome.best_state)
    with timer.section("eval"):
        test_results, digest = evaluate_test_split(method, dataset, config, device, progress,
                                                   parallel)
    first_step = timer.total("first_step")
    train_seconds = max_over_ranks(timer.total("train") + first_step, parallel)
    run_seconds = max(max_over_ranks(timer.total("train") + first_step
                                     + timer.total("validation"), parallel), train_seconds)
    train_hours = device_hours(train_seconds, parallel.world_size)
    record: RunResult = {
        "schema": SCHEMA,
        "status": "ok",
        "key": config.key,
        "config": config.to_dict(),
        "data": dict(data),
        "n_train_classes": dataset.train.n_classes,
        "provenance": started,
        "timings": {
            "train_seconds": train_seconds,
            "train_device_hours": train_hours,
            "run_seconds": run_seconds,
            "run_device_hours": device_hours(run_seconds, parallel.world_size),
            "device_hours": train_hours,
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
            **({"test_every_seconds": timer.total("test_every")} if config.test_every else {}),
        },
        "selection": {
            "protocol": config.select_on if method.has_native_adaptation else "unified",
            "best_epoch": outcome.best_epoch,
            "best_val_accuracy": outcome.best_val,
            "val_curve": outcome.val_curve,
        },
        "test": test_results,
        "native_is_unified": not method.has_native_adaptation,
        "episode_hash": digest,
    }
    if outcome.curve is not None:
        record["learning_curve"] = outcome.curve
    if model_file is not None and parallel.is_main:
        record["model"] = _save_selected_model(model_file, record, dataset, outcome.best_state)
    return record


def _save_selected_model(path: Path, record: RunResult, dataset: FewShotDataset,
                         state: dict[str, Any]) -> dict[str, Any] | None:
    """Write the model file; a state that a model file cannot hold costs the model (a warning
    and ``model: null``), never the result. Storage problems propagate (StorageError)."""
    try:
        payload = model_payload(record, dataset, state)
    except TypeError as error:
        tqdm.write(f"warning: {record['key']}: no model file written ({error})")
        return None
    return save_model(path, payload)


def failure_record(config: RunConfig, device: torch.device, error: BaseException,
                   world_size: int = 1) -> RunResult:
    tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return {
        "schema": SCHEMA,
        "status": "failed",
        "key": config.key,
        "config": config.to_dict(),
        "data": None,
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
