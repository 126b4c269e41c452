"""``bench eval``'s work: evaluate a trained model (:mod:`bench.store.model_files`) on a dataset's test (or
validation) episodes and write one eval result per (model, dataset, split, ways, shots,
queries, episodes, seed, protocol, C, solver, precision) under ``<out>/evals/``.

The episodes are drawn exactly as ``bench run`` draws its test episodes
(:func:`bench.run.train_and_test.draw_episodes`: the same sampler and episode stream of the seed), and the
protocols are :mod:`bench.run.evaluate`'s, so a run's own model evaluated with the run's settings
gives the run's per-episode accuracies exactly (on the same kind of device, from a
single-process run). The unified protocol's features are computed once per model and episode
set and reused for every C of ``--logreg-c``.

An eval result (schema :data:`EVAL_SCHEMA`) holds the per-episode accuracies, their mean and
95% CI and the episode hash as a run result does, plus ``source_model`` (path, sha256, key),
the model's recorded facts, the eval's settings, the evaluation data's identity, the
preprocessing (``resized`` when the data's image size is not the model's:
:mod:`bench.api.preprocess`) and provenance.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bench.api import LoadedModel, solver_function
from bench.store.checkpoint import StorageError
from bench.run.evaluate import accuracy_percent, episode_features, evaluate_native
from bench.store.eval_files import (EVAL_FIELD_ORDER, EVAL_SCHEMA, NATIVE, UNIFIED, EvalFileError,
                                    EvalSettings, eval_key, eval_path, read_eval, write_eval)
from bench.store.model_files import ModelFile
from bench.api.preprocess import RESIZE_MODE
from bench.run.train_and_test import draw_episodes, protocol_result
from bench.common.timing import SectionTimer
from bench.run.training import stream_seed
from datasets import FewShotDataset
from datasets.episodes import EpisodeLoader


class ChannelMismatchError(ValueError):
    """A model and a dataset whose images have different channel counts."""


def check_channels(model: ModelFile, dataset: FewShotDataset) -> None:
    """:class:`ChannelMismatchError` naming both when ``dataset``'s images do not have the
    model's channel count (sizes may differ: images are resized)."""
    if dataset.channels != model.channels:
        raise ChannelMismatchError(
            f"{model.path}: the model takes {model.channels}-channel images (trained on "
            f"{model.dataset['name']}) but dataset {dataset.name} has "
            f"{dataset.channels}-channel images; evaluate it on data with {model.channels} "
            "channel(s)")


@dataclass
class EvalOutcome:
    key: str
    path: Path
    status: str  # "done", "skipped" or "failed"
    message: str = ""
    record: dict[str, Any] | None = None


def _finished(path: Path, sha256: str) -> bool:
    """True when ``path`` holds a finished eval of the model file with ``sha256``."""
    if not path.exists():
        return False
    try:
        data = read_eval(path)
    except EvalFileError:
        return False
    return data["source_model"]["sha256"] == sha256


def evaluate_model(model: LoadedModel, dataset: FewShotDataset, identity: dict[str, str],
                   settings: EvalSettings, protocols: list[str], Cs: list[float],
                   out_dir: Path, provenance: dict[str, Any], *, force: bool = False,
                   progress: bool = True) -> list[EvalOutcome]:
    """Evaluate ``model`` on one episode set of ``dataset`` (``identity``: its
    :func:`~bench.store.checkpoint.dataset_identity`) under ``protocols`` (the unified one at every
    C of ``Cs``; a method without a native adaptation of its own gets the unified protocol
    for either) and write each eval result. A finished eval of the same model file is skipped
    unless ``force``. A failing evaluation costs its own outcome ("failed", with the error);
    only a storage problem (:class:`StorageError`) stops everything."""
    check_channels(model.file, dataset)
    split = dataset.split(settings.split)
    # a method without a native adaptation: its native protocol is the unified one
    unified = UNIFIED in protocols or not model.has_native_adaptation
    jobs = [(UNIFIED, C) for C in Cs] if unified else []
    if NATIVE in protocols and model.has_native_adaptation:
        jobs.append((NATIVE, None))
    outcomes, todo = [], []
    for protocol, C in jobs:
        key = eval_key(model.key, model.file.sha256, settings, protocol, C)
        path = eval_path(out_dir, key)
        if not force and _finished(path, model.file.sha256):
            outcomes.append(EvalOutcome(key, path, "skipped",
                                        f"skip {key}: finished eval exists at {path} "
                                        "(--force redoes it)"))
        else:
            todo.append((protocol, C, key, path))
    if not todo:
        return outcomes
    device = model.device
    loader = EpisodeLoader(split, model.preprocess, device)  # the model's preprocessing
    episodes = draw_episodes(split, settings.ways, settings.shots, settings.queries,
                             settings.episodes, settings.seed, stream=settings.split)
    common = _common_fields(model, dataset, identity, settings, split.images.shape[-2:],
                            episodes.digest(), provenance)
    timer = SectionTimer(device)
    features: tuple[torch.Tensor, torch.Tensor] | None = None
    feature_error: Exception | None = None
    if any(p == UNIFIED for p, *_ in todo):
        try:
            with timer.section("features"):
                features = episode_features(model.method, loader, episodes,
                                            settings.precision, progress)
        except Exception as error:  # one model's failure costs its own evaluations only
            feature_error = error
    for protocol, C, key, path in todo:
        section = f"{protocol}:{C}"
        try:
            if protocol == UNIFIED:
                if features is None:
                    raise feature_error  # type: ignore[misc]
                support, query = features
                with timer.section(section):
                    predictions = solver_function(settings.solver)(
                        support, episodes.support_labels.to(support.device), query, C=C)
                    accuracies = accuracy_percent(predictions, episodes.query_labels)
                seconds = timer.total(section) + timer.total("features")
            else:
                with timer.section(section):
                    accuracies = evaluate_native(model.method, loader, episodes,
                                                 precision=settings.precision,
                                                 progress=progress)
                seconds = timer.total(section)
        except (KeyboardInterrupt, SystemExit, StorageError):
            raise
        except Exception as error:
            outcomes.append(EvalOutcome(key, path, "failed",
                                        _failure_message(key, error)))
            continue
        record = {**common, "key": key,
                  "settings": {**common["settings"], **_protocol_settings(protocol, C,
                                                                          settings)},
                  "result": protocol_result(accuracies, seconds),
                  "features_seconds": timer.total("features") if protocol == UNIFIED
                  else None}
        record = {k: record[k] for k in EVAL_FIELD_ORDER}
        write_eval(path, record)
        outcomes.append(EvalOutcome(key, path, "done", "", record))
    return outcomes


def _protocol_settings(protocol: str, C: float | None, settings: EvalSettings
                       ) -> dict[str, Any]:
    unified = protocol == UNIFIED
    return {"protocol": protocol, "logreg_c": C if unified else None,
            "l2_penalty": 1.0 / C if unified and C else None,
            "solver": settings.solver if unified else None}


def _common_fields(model: LoadedModel, dataset: FewShotDataset, identity: dict[str, str],
                   settings: EvalSettings, data_size: Any, digest: str,
                   provenance: dict[str, Any]) -> dict[str, Any]:
    height, width = int(data_size[0]), int(data_size[1])
    resized = model.preprocess.resizes(height, width)
    trained_on = model.file.dataset
    return {
        "schema": EVAL_SCHEMA,
        "status": "ok",
        "source_model": {"path": str(model.file.path), "sha256": model.file.sha256,
                         "key": model.key},
        "model": {"config": model.file.meta["config"], "dataset": trained_on,
                  "n_train_classes": model.file.n_train_classes,
                  "selection": model.file.meta["selection"]},
        "settings": {**asdict(settings),
                     "stream_seed": stream_seed(settings.seed, settings.split)},
        "data": dict(identity),
        "cross_dataset": identity.get("fingerprint") != trained_on.get("fingerprint"),
        "preprocessing": {
            "data_image_size": [height, width],
            "model_image_size": model.image_size,
            "resized": resized,
            "resize": RESIZE_MODE if resized else None,
            "normalisation": {"mean": list(model.preprocess.mean),
                              "std": list(model.preprocess.std),
                              "from": "the model's training data"},
        },
        "episode_hash": digest,
        "provenance": provenance,
    }


def _failure_message(key: str, error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"FAILED {key}: {type(error).__name__}: {text}"




