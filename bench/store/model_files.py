"""Model files: the selected model of a finished run, as a reusable artifact.

Every finished run writes ``<out>/models/<key>.pt`` (``bench run --no-save-model`` turns it off):
the weights of the state that validation selected (the tested one), plus what is needed to
rebuild and use it anywhere: the run's resolved configuration (``RunConfig.to_dict()``), the
training dataset's name, source, split fingerprint (:func:`bench.store.checkpoint.dataset_identity`),
image size, channels and normalisation constants, the selected epoch and its validation
accuracy, and provenance. ``bench eval`` and :func:`bench.api.load_model` read it.

The file is ``torch.save`` of a dict of plain tensors and JSON-able values only, so
``torch.load(path, weights_only=True)`` reads it (never code). It is written atomically
(:mod:`core.atomic`); the run's result JSON names it (``model``: path relative to the results
folder, sha256 of the file's bytes, size).

A training checkpoint (``<out>/checkpoints``, :mod:`bench.store.checkpoint`) is not a model file: it
holds the optimiser and every random state too (about four times the size) and exists only
while a run is unfinished.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from bench.store.checkpoint import (CHECKPOINT_FORMAT, StorageError, dataset_identity,
                              describe_write_failure)
from bench.common.config import RunConfig
from bench.store.results import ResultFileError, config_problem, read_result, result_path
from core.atomic import write_bytes_atomic
from core.keys import InvalidKeyError, check_key, path_inside
from datasets import FewShotDataset

MODEL_FORMAT = "bridgebench.model/1"
MODELS_DIR = "models"
"""Folder of the model files inside a results folder (beside ``runs/``)."""
_REQUIRED = ("key", "config", "n_train_classes", "dataset", "selection", "provenance",
             "state_dict")
_REQUIRED_DATASET = ("name", "fingerprint", "image_size", "channels", "mean", "std")


class ModelFileError(ValueError):
    """A file that is not a usable model file; the one-line message names the file and says
    what is wrong."""


def model_path(out_dir: Path | str, key: str) -> Path:
    """Where run ``key``'s model file lives in results folder ``out_dir`` (``key`` checked,
    :mod:`core.keys`)."""
    return path_inside(out_dir, MODELS_DIR, f"{check_key(key, 'run key')}.pt")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- writing

def _json_normalised(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples become lists); refuses what JSON cannot hold."""
    return json.loads(json.dumps(value, allow_nan=True))


def _plain_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """The state dict with tensors detached on the CPU and everything else JSON-normalised
    (``weights_only`` loads tensors and plain Python values only)."""
    plain: dict[str, Any] = {}
    for name, value in state.items():
        if torch.is_tensor(value):
            plain[name] = value.detach().to("cpu").contiguous()
        else:
            try:
                plain[name] = _json_normalised(value)  # e.g. the backbone's schedule step
            except (TypeError, ValueError) as exc:
                raise TypeError(f"state entry {name!r} is a {type(value).__name__}, neither a "
                                "tensor nor a JSON-able value; a model file holds only those"
                                ) from exc
    return plain


def model_payload(record: Mapping[str, Any], dataset: FewShotDataset,
                  state: Mapping[str, Any],
                  identity: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The model file of a finished run: ``record`` is its result record (config,
    selection, provenance), ``state`` the selected state dict, ``identity`` the dataset's
    :func:`~bench.store.checkpoint.dataset_identity` (computed when not given)."""
    identity = dict(identity) if identity is not None else dataset_identity(dataset)
    return {
        "format": MODEL_FORMAT,
        "key": record["key"],
        "config": _json_normalised(record["config"]),
        "n_train_classes": int(record["n_train_classes"]),
        "dataset": {**identity, "image_size": dataset.image_size,
                    "channels": dataset.channels,
                    "mean": [float(v) for v in dataset.mean],
                    "std": [float(v) for v in dataset.std]},
        "selection": _json_normalised({k: record["selection"][k] for k in
                                       ("protocol", "best_epoch", "best_val_accuracy")}),
        "provenance": _json_normalised(record["provenance"]),
        "state_dict": _plain_state(state),
    }


def save_model(path: Path | str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``payload`` (:func:`model_payload`) to ``path`` atomically; returns what the
    result record says about it: ``path`` (``models/<file>``, relative to the results
    folder), ``sha256`` of the bytes written and ``bytes``. :class:`StorageError` on failure
    (nothing already written is lost)."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(dict(payload), buffer)
    data = buffer.getvalue()
    try:
        write_bytes_atomic(path, data)
    except OSError as exc:
        raise StorageError(exc.errno or errno.EIO,
                           describe_write_failure(path, exc, "model file")) from exc
    return {"path": f"{MODELS_DIR}/{path.name}", "sha256": sha256_of(data), "bytes": len(data)}


# --------------------------------------------------------------------------- reading

@dataclass(frozen=True)
class ModelFile:
    """A model file as read (and checked) by :func:`read_model_file`."""

    path: Path
    sha256: str  # of the file's bytes
    meta: dict[str, Any]  # everything but the state dict
    state_dict: dict[str, Any]

    @property
    def key(self) -> str:
        return str(self.meta["key"])

    @property
    def config(self) -> RunConfig:
        return RunConfig.from_dict(self.meta["config"])

    @property
    def dataset(self) -> dict[str, Any]:
        """The training data: name, source, fingerprint, image_size, channels, mean, std."""
        return self.meta["dataset"]

    @property
    def image_size(self) -> int:
        return int(self.dataset["image_size"])

    @property
    def channels(self) -> int:
        return int(self.dataset["channels"])

    @property
    def n_train_classes(self) -> int:
        return int(self.meta["n_train_classes"])

    def describe(self) -> str:
        """``path (key)``, for messages."""
        return f"{self.path} ({self.key})"


def read_model_file(path: Path | str) -> ModelFile:
    """Read and check a model file; :class:`ModelFileError` (naming the file) for anything
    that is not one: missing, truncated or corrupt, a training checkpoint, another format."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the model file "
                             f"({exc.strerror or exc})") from exc
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: not the user's
            warnings.simplefilter("ignore")
            payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, not a torch file, pickled code, ...
        raise ModelFileError(f"{path}: not a readable model file: "
                             f"{_unreadable_reason(data, exc)}.") from exc
    if not isinstance(payload, dict):
        raise ModelFileError(f"{path}: not a {MODEL_FORMAT} model file (it holds a "
                             f"{type(payload).__name__})")
    found = payload.get("format")
    if found == CHECKPOINT_FORMAT:
        raise ModelFileError(
            f"{path}: a training checkpoint ({CHECKPOINT_FORMAT}), not a model file; a run "
            f"writes its model to <out>/{MODELS_DIR}/<key>.pt when it finishes")
    if found != MODEL_FORMAT:
        raise ModelFileError(f"{path}: not a {MODEL_FORMAT} model file (format {found!r})")
    missing = [k for k in _REQUIRED if k not in payload]
    facts = payload.get("dataset")
    if not missing and isinstance(facts, dict):
        missing = [f"dataset.{k}" for k in _REQUIRED_DATASET if k not in facts]
    if missing:
        raise ModelFileError(f"{path}: model file without {', '.join(missing)} (truncated or "
                             "written by something else)")
    if not isinstance(payload["state_dict"], dict) or not payload["state_dict"]:
        raise ModelFileError(f"{path}: model file with an empty or malformed state_dict")
    try:
        check_key(payload["key"], "the run key it records")
    except InvalidKeyError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    _check_weights(path, payload["state_dict"])
    model = ModelFile(path, sha256_of(data), {k: v for k, v in payload.items()
                                              if k != "state_dict"}, payload["state_dict"])
    try:
        problem = config_problem(model.meta["config"])
        model.config
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{path}: its config cannot be read ({type(exc).__name__}: "
                             f"{exc})") from exc
    if problem:
        raise ModelFileError(f"{path}: its config is not valid ({problem})")
    _check_facts(model)
    check_recorded_hash(model)
    return model


def _unreadable_reason(data: bytes, error: Exception) -> str:
    """Why ``torch.load`` (weights only) could not read ``data``, as one whole clause (torch's
    own messages run to several sentences and would be cut mid-sentence)."""
    if not data:
        return "the file is empty (0 bytes)"
    zipped = data[:4] == b"PK\x03\x04"  # torch.save's format
    if isinstance(error, pickle.UnpicklingError) and (zipped or data[:1] == b"\x80"):
        return ("it holds pickled Python objects, which a weights-only load refuses (a model "
                "file holds tensors and plain values only)")
    if zipped:
        return "it is a zip archive that torch cannot read: truncated or corrupt"
    return "it is not a file that torch.save wrote (or it is truncated or corrupt)"


def _check_weights(path: Path, state: dict[str, Any]) -> None:
    """:class:`ModelFileError` when a weight holds NaN or infinity: training never saves
    such a model (selection would not pick it), so the file is corrupt."""
    for name, value in state.items():
        if torch.is_tensor(value) and value.is_floating_point() \
                and not bool(torch.isfinite(value).all()):
            raise ModelFileError(f"{path}: the model file is corrupt: weight {name!r} holds "
                                 "non-finite values (NaN or infinity); restore the file or "
                                 "retrain its run")


def recorded_result_path(model_file: Path, key: str) -> Path | None:
    """Where the run that wrote ``model_file`` (``<out>/models/<key>.pt``) keeps its result
    (``<out>/runs/<key>.json``); None for a model file outside a results folder's models/."""
    model_file = Path(model_file)
    if model_file.parent.name != MODELS_DIR:
        return None
    return result_path(model_file.parent.parent, key)


def check_recorded_hash(model: ModelFile) -> None:
    """:class:`ModelFileError` naming both digests when the run's result beside the model
    file (:func:`recorded_result_path`) records another sha256 for this file: its bytes were
    changed or replaced after training. Nothing to compare (no result there, an unreadable
    one, a result that names another file or no model): no check."""
    where = recorded_result_path(model.path, model.key)
    if where is None or not where.is_file():
        return
    try:
        recorded = read_result(where).get("model")
    except ResultFileError:
        return
    if not isinstance(recorded, dict) or recorded.get("path") != f"{MODELS_DIR}/{model.path.name}" \
            or not isinstance(recorded.get("sha256"), str):
        return
    if recorded["sha256"] != model.sha256:
        raise ModelFileError(
            f"{model.path}: its sha256 is {model.sha256}, but its run's result {where} records "
            f"{recorded['sha256']} for it: the file was changed or replaced after training; "
            "restore it, or retrain the run")


def _check_facts(model: ModelFile) -> None:
    facts = model.dataset
    ok = (isinstance(facts["image_size"], int) and facts["image_size"] > 0
          and isinstance(facts["channels"], int) and facts["channels"] > 0
          and len(facts["mean"]) == facts["channels"] == len(facts["std"])
          and all(isinstance(s, (int, float)) and s > 0 and math.isfinite(s)
                  for s in facts["std"]))
    if not ok:
        raise ModelFileError(f"{model.path}: its image facts are inconsistent (image_size "
                             f"{facts['image_size']!r}, channels {facts['channels']!r}, mean "
                             f"{facts['mean']!r}, std {facts['std']!r})")
