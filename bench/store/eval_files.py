"""Eval result files (``<out>/evals/<key>.json``, schema :data:`EVAL_SCHEMA`): ``bench eval``'s
output (:mod:`bench.api.evaluation` computes them), their names, atomic writes and validated
reads. A file from elsewhere is data: every read either returns a checked record or raises
:class:`EvalFileError` naming the file."""
from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from bench.store.checkpoint import StorageError, describe_write_failure
from bench.store.results import (_REQUIRED_CONFIG, JSONFileProblem, accuracy_problem,
                                 config_problem, key_problem, load_json_file, read_each)
from core.atomic import write_json_atomic
from core.keys import check_key, path_inside

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
    provenance: dict[str, Any]  # git, packages, device, time, command (bench.common.provenance)


class EvalFileError(ValueError):
    """An eval result file that cannot be read or does not follow the schema; names it."""


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
    return path_inside(out_dir, EVALS_DIR, f"{check_key(key, 'eval key')}.json")


EVAL_FIELD_ORDER = ("schema", "status", "key", "source_model", "model", "settings", "data",
                "cross_dataset", "preprocessing", "result", "features_seconds", "episode_hash",
                "provenance")


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
    return read_each(eval_files(folder), read_eval, EvalFileError, skipped)
