"""The result file: one JSON per run, its documented schema and validated reads (files are
written atomically by :func:`bench.record.write_result` through :mod:`core.atomic`).

Modelled on lm-eval's ``result_schema.py``: each key carries a comment saying what it holds.
A finished result is never overwritten unless the user passes ``--force``; a failed run
leaves a failure record (``status == "failed"``) that a rerun replaces.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal, TypedDict

SCHEMA = "bridgebench.run/1"


class ProtocolResult(TypedDict):
    """Test accuracy under one adaptation protocol."""

    accuracies: list[float]  # per-episode query accuracy in percent, in episode order
    mean: float  # mean of ``accuracies`` (percent)
    ci95: float  # 1.96 * std(ddof=1) / sqrt(episodes) (percent)
    seconds: float  # wall-clock seconds of this evaluation (features + adaptation)


class Timings(TypedDict):
    """Measured by :mod:`bench.timing` (synchronised clocks)."""

    train_seconds: float  # timed training steps only (the timing rule)
    device_hours: float  # train_seconds / 3600 * n_devices
    device_hours_unit: str  # "GPU-hours" or "CPU-hours"
    first_step_seconds: float  # the first step alone (warm-up, torch.compile); in train_seconds
    validation_seconds: float  # excluded from device-hours
    checkpoint_seconds: float  # writing checkpoints, excluded from device-hours
    resume_seconds: float  # loading checkpoints on resume, excluded from device-hours
    resumes: int  # how many times the run was resumed from a checkpoint
    eval_seconds: float  # final test evaluation, excluded from device-hours
    peak_memory_bytes: int | None  # peak device memory during training (CUDA only)
    steps: int  # optimiser steps taken
    images_seen: int  # training images processed (support + query of every task)
    epochs: int  # epochs run (early stopping may end training before the budget's maximum)


class Selection(TypedDict):
    """Model selection on the validation split (unified protocol for every method)."""

    protocol: str  # "unified"
    best_epoch: int  # 1-based epoch whose checkpoint was tested
    best_val_accuracy: float  # percent
    val_curve: list[float]  # validation accuracy per epoch (percent)


class Provenance(TypedDict):
    """Where and with what the run was made (no hostname)."""

    git_sha: str | None  # commit of the harness, None outside a git checkout
    git_dirty: bool | None  # uncommitted changes in the checkout
    packages: dict[str, str]  # python, torch, numpy, scikit-learn, qpth, ...
    device: str  # device name (GPU model or "cpu")
    device_type: str  # "cuda" or "cpu"
    device_count: int  # devices used for training
    cpu: str  # CPU model
    started_at: str  # ISO-8601 UTC time the run started
    command: str  # the command line that produced it


class RunResult(TypedDict, total=False):
    """One run (method, dataset, ways, shots, seed, budget)."""

    schema: str  # always SCHEMA
    status: Literal["ok", "failed"]  # "failed": training or evaluation stopped with an error
    key: str  # the run key, also the file name stem
    config: dict[str, Any]  # full RunConfig: method, dataset, ways, shots, queries, seed,
    # episodes, precision, solver, logreg_c, budget (backbone, feature_mode, optimiser,
    # schedule, episode shapes, method hparams, ...)
    n_train_classes: int  # number of training classes (MTL's head rows)
    provenance: Provenance
    timings: Timings
    selection: Selection
    test: dict[str, ProtocolResult]  # "unified" always; "native" too (for MTL, = unified)
    native_is_unified: bool  # True when the method has no native adaptation of its own
    episode_hash: str  # sha256 of the test episodes' indices (equal hash = same episodes)
    model: dict[str, Any] | None  # the selected model's file (bench/models.py): path relative
    # to the results folder ("models/<key>.pt"), sha256 of its bytes, bytes; absent with
    # --no-save-model, null when the method's state cannot be saved as a model file
    error: str  # failed runs only: what went wrong
    traceback: str  # failed runs only: the last lines of the traceback


class ResultFileError(ValueError):
    """A result file that cannot be read or does not follow the schema; names the file."""


def result_path(out_dir: Path, key: str) -> Path:
    return Path(out_dir) / "runs" / f"{key}.json"


_REQUIRED_OK = ("config", "provenance", "timings", "selection", "test", "episode_hash")
_REQUIRED_CONFIG = ("method", "dataset", "ways", "shots", "seed", "budget", "episodes")


def validate_result(data: Any, source: str) -> RunResult:
    """Check ``data`` against the schema; raise :class:`ResultFileError` naming ``source``."""

    def fail(why: str) -> ResultFileError:
        return ResultFileError(f"{source}: {why} (not a valid {SCHEMA} result file)")

    if not isinstance(data, dict):
        raise fail("top level is not a JSON object")
    if data.get("schema") != SCHEMA:
        raise fail(f"schema is {data.get('schema')!r}, expected {SCHEMA!r}")
    status = data.get("status")
    if status not in ("ok", "failed"):
        raise fail(f"status is {status!r}, expected 'ok' or 'failed'")
    config = data.get("config")
    if not isinstance(config, dict) or any(k not in config for k in _REQUIRED_CONFIG):
        raise fail(f"config must hold {', '.join(_REQUIRED_CONFIG)}")
    if status == "failed":
        if not isinstance(data.get("error"), str):
            raise fail("a failed run must have an 'error' message")
        return data  # type: ignore[return-value]
    missing = [k for k in _REQUIRED_OK if k not in data]
    if missing:
        raise fail(f"missing key(s) {', '.join(missing)}")
    test = data["test"]
    if not isinstance(test, dict) or "unified" not in test:
        raise fail("'test' must hold at least the 'unified' protocol")
    for protocol, res in test.items():
        if not isinstance(res, dict) or not all(k in res for k in ("accuracies", "mean", "ci95")):
            raise fail(f"test[{protocol!r}] must hold accuracies, mean and ci95")
        accs = res["accuracies"]
        if not isinstance(accs, list) or not accs:
            raise fail(f"test[{protocol!r}].accuracies must be a non-empty list")
        if not isinstance(res["mean"], (int, float)) or math.isnan(res["mean"]):
            raise fail(f"test[{protocol!r}].mean is not a number")
    timings = data["timings"]
    if not isinstance(timings, dict) or "device_hours" not in timings:
        raise fail("timings must hold device_hours")
    return data  # type: ignore[return-value]


def read_result(path: Path) -> RunResult:
    """Load and validate one result file; errors name the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultFileError(f"{path}: cannot read ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultFileError(f"{path}: not valid JSON ({exc}); delete it or rerun that "
                              "run with --force") from exc
    return validate_result(data, str(path))


def is_finished(path: Path) -> bool:
    """True when ``path`` holds a successful result (a failure record is not finished)."""
    if not path.exists():
        return False
    try:
        return read_result(path).get("status") == "ok"
    except ResultFileError:
        return False
