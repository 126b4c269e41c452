"""``bench eval``'s work: evaluate a trained model (:mod:`bench.models`) on a dataset's test (or
validation) episodes and write one eval result per (model, dataset, split, ways, shots,
queries, episodes, seed, protocol, C, solver, precision) under ``<out>/evals/``.

The episodes are drawn exactly as ``bench run`` draws its test episodes
(:func:`bench.record.draw_episodes`: the same sampler and episode stream of the seed), and the
protocols are :mod:`bench.evaluate`'s, so a run's own model evaluated with the run's settings
gives the run's per-episode accuracies exactly (on the same kind of device, from a
single-process run). The unified protocol's features are computed once per model and episode
set and reused for every C of ``--logreg-c``.

An eval result (schema :data:`EVAL_SCHEMA`) holds the per-episode accuracies, their mean and
95% CI and the episode hash as a run result does, plus ``source_model`` (path, sha256, key),
the model's recorded facts, the eval's settings, the evaluation data's identity, the
preprocessing (``resized`` when the data's image size is not the model's:
:mod:`bench.preprocess`) and provenance.
"""
from __future__ import annotations

import errno
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypedDict

import torch
from tqdm.auto import tqdm

from bench.api import LoadedModel, solver_function
from bench.checkpoint import StorageError, describe_write_failure
from bench.evaluate import accuracy_percent, episode_features, evaluate_native
from bench.models import ModelFile
from bench.preprocess import RESIZE_MODE
from bench.record import draw_episodes, protocol_result
from bench.timing import SectionTimer
from bench.training import stream_seed
from core.atomic import write_json_atomic
from datasets import FewShotDataset
from datasets.episodes import EpisodeLoader

EVAL_SCHEMA = "bridgebench.eval/1"
EVALS_DIR = "evals"
"""Folder of the eval results inside a results folder (beside ``runs/`` and ``models/``)."""
SPLITS = ("test", "val")
UNIFIED, NATIVE = "unified", "native"
PROTOCOLS = (UNIFIED, NATIVE)


class EvalResult(TypedDict):
    """One eval result file (``<out>/evals/<key>.json``), schema :data:`EVAL_SCHEMA`."""

    schema: str  # always EVAL_SCHEMA
    status: str  # always "ok" (a failed evaluation writes nothing; bench eval reports it)
    key: str  # the file name stem (eval_key)
    source_model: dict[str, str]  # path (as given), sha256 of the file's bytes, model key
    model: dict[str, Any]  # the model's run config, training data facts (name, fingerprint,
    # image_size, channels, mean, std), n_train_classes, selection (epoch, val accuracy)
    settings: dict[str, Any]  # dataset, split, ways, shots, queries, episodes, seed,
    # stream_seed, protocol, logreg_c and l2_penalty = 1/logreg_c (unified; else null),
    # solver (unified; else null), precision
    data: dict[str, str]  # the evaluation data's dataset_identity (name, source, fingerprint)
    cross_dataset: bool  # its fingerprint is not the training data's
    preprocessing: dict[str, Any]  # data_image_size, model_image_size, resized, resize
    # (how, when resized), normalisation (the model's mean and std)
    result: dict[str, Any]  # as a run's test[protocol]: accuracies (per episode, percent,
    # in episode order), mean, ci95 (1.96 std/sqrt(n)), seconds (unified: features + solve)
    features_seconds: float | None  # the unified features' pass, shared by every C
    episode_hash: str  # sha256 of the episodes' indices (equal to the run's on its settings)
    provenance: dict[str, Any]  # git, packages, device, time, command (bench.provenance)


class EvalFileError(ValueError):
    """An eval result file that cannot be read or does not follow the schema; names it."""


class ChannelMismatchError(ValueError):
    """A model and a dataset whose images have different channel counts."""


@dataclass(frozen=True)
class EvalSettings:
    """Where and how a model is evaluated (one episode set: dataset, split, ways, shots,
    queries, episodes, seed) and with which solver and precision."""

    dataset: str
    split: str
    ways: int
    shots: int
    queries: int
    episodes: int
    seed: int
    solver: str
    precision: str

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {self.split!r}")

    @property
    def episode_tag(self) -> str:
        return (f"{self.dataset}_{self.split}_{self.ways}w{self.shots}s_{self.queries}q_"
                f"{self.episodes}ep_seed{self.seed}")


def eval_key(model_key: str, model_sha256: str, settings: EvalSettings, protocol: str,
             C: float | None) -> str:
    """The eval result's file stem: the model (key and the first 8 hex digits of its file's
    sha256, so two models of one key never share a name), the episode set, the protocol and,
    for the unified protocol, C and the solver; then the precision."""
    tail = f"{UNIFIED}_C{C:g}_{settings.solver}" if protocol == UNIFIED else NATIVE
    return f"{model_key}-{model_sha256[:8]}__{settings.episode_tag}_{tail}_{settings.precision}"


def eval_path(out_dir: Path | str, key: str) -> Path:
    """Where eval result ``key`` lives in results folder ``out_dir`` (``key`` checked,
    :mod:`core.keys`)."""
    from core.keys import check_key, path_inside

    return path_inside(out_dir, EVALS_DIR, f"{check_key(key, 'eval key')}.json")


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
    :func:`~bench.checkpoint.dataset_identity`) under ``protocols`` (the unified one at every
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
        record = {k: record[k] for k in _FIELD_ORDER}
        write_eval(path, record)
        outcomes.append(EvalOutcome(key, path, "done", "", record))
    return outcomes


_FIELD_ORDER = ("schema", "status", "key", "source_model", "model", "settings", "data",
                "cross_dataset", "preprocessing", "result", "features_seconds", "episode_hash",
                "provenance")


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


# --------------------------------------------------------------------------- files

def write_eval(path: Path, record: dict[str, Any]) -> None:
    """Write one eval result atomically; :class:`StorageError` on failure."""
    try:
        write_json_atomic(path, record)
    except OSError as exc:
        raise StorageError(exc.errno or errno.EIO, describe_write_failure(path, exc, "eval result")
                           ) from exc


_REQUIRED = ("key", "source_model", "model", "settings", "data", "result", "episode_hash")


def read_eval(path: Path) -> dict[str, Any]:
    """Load and check one eval result; :class:`EvalFileError` naming the file (whatever its
    contents: no file can raise anything else)."""
    from bench.results import JSONFileProblem, load_json_file

    try:
        data = load_json_file(path)
    except JSONFileProblem as exc:
        raise EvalFileError(f"{path}: cannot read this eval result ({exc})") from exc
    try:
        problem = _eval_problem(data)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        problem = f"not a valid eval result ({type(exc).__name__}: {exc})"
    if problem:
        raise EvalFileError(f"{path}: {problem}")
    return data


def _eval_problem(data: Any) -> str | None:
    """What is wrong with an eval result's contents (None: nothing)."""
    from bench.results import accuracy_problem, config_problem, key_problem

    if not isinstance(data, dict) or data.get("schema") != EVAL_SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        return f"not a {EVAL_SCHEMA} eval result (schema {found!r})"
    missing = [k for k in _REQUIRED if k not in data]
    if missing or data.get("status") != "ok":
        return f"eval result without {', '.join(missing) or 'status ok'}"
    result = data["result"]
    if not isinstance(result, dict) or not all(k in result for k in ("accuracies", "mean",
                                                                      "ci95")):
        return "'result' must hold accuracies, mean and ci95"
    source, model, settings = data["source_model"], data["model"], data["settings"]
    if not isinstance(source, dict) or not isinstance(source.get("sha256"), str):
        return "source_model must hold the model file's sha256"
    if not isinstance(model, dict) or not isinstance(model.get("config"), dict) \
            or not isinstance(model.get("dataset"), dict):
        return "model must hold the model's run config and training data"
    from bench.results import _REQUIRED_CONFIG

    if any(k not in model["config"] for k in _REQUIRED_CONFIG):
        return f"model.config must hold {', '.join(_REQUIRED_CONFIG)}"
    problem = (key_problem(data["key"]) or key_problem(source.get("key"))
               or config_problem(model["config"]))
    if problem:
        return problem
    if not isinstance(settings, dict) or settings.get("protocol") not in PROTOCOLS:
        return "settings must hold the protocol (unified or native)"
    if not all(isinstance(v, str) for v in (settings.get("dataset"), settings.get("split"),
                                            model["dataset"].get("name"))):
        return "settings.dataset, settings.split and model.dataset.name must be strings"
    if not isinstance(data["episode_hash"], str):
        return "episode_hash must be a string"
    for field in ("ways", "shots", "queries", "episodes", "seed"):
        value = settings.get(field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"settings.{field} must be an integer >= 0, not {value!r}"
    C = settings.get("logreg_c")
    if settings["protocol"] == UNIFIED and (not isinstance(C, (int, float)) or isinstance(
            C, bool) or not 0 < C < float("inf")):
        return f"settings.logreg_c must be a number > 0 for the unified protocol, not {C!r}"
    return accuracy_problem(result)


def eval_files(folder: Path | str) -> list[Path]:
    """Every ``.json`` file in an ``evals`` folder under ``folder`` (recursively), sorted."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*.json")
                  if EVALS_DIR in p.relative_to(folder).parts[:-1])


def load_evals(folder: Path | str, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """Every eval result in an ``evals`` folder under ``folder`` (recursively), sorted by
    path. ``skipped`` given: a file that fails :func:`read_eval` is left out and its error
    appended there instead of raised."""
    evals = []
    for path in eval_files(folder):
        try:
            evals.append(read_eval(path))
        except EvalFileError as error:
            if skipped is None:
                raise
            skipped.append(str(error))
    return evals
