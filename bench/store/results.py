"""The result file: one JSON per run, its documented schema and validated reads (files are
written atomically by :func:`bench.run.train_and_test.write_result` through :mod:`core.atomic`).

Modelled on lm-eval's ``result_schema.py``: each key carries a comment saying what it holds.
A finished result is never overwritten unless the user passes ``--force``; a failed run
leaves a failure record (``status == "failed"``) that a rerun replaces.

Schema ``bridgebench.run/2`` (issue 10) adds the run's data fingerprint (``data``), the
selection protocol and every budget field that was implicit before (augmentation, DropBlock
ramp), the per-epoch learning curve, and two cost figures (``train_device_hours``,
``run_device_hours``). Files of schema ``/1`` still load: :func:`migrate_v1` fills each new
field with the value those runs actually used, so their identity is honest
(:meth:`bench.common.config.RunConfig.identity`).

"Finished" means a successful result with the run's identity (:func:`existing_result`): a
result of another configuration at the same key (a file written before issue 10, whose key had
no settings hash, or one made from other data) is never skipped and never silently replaced.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, NotRequired, TypedDict, TypeVar

from bench.store.learning_curves import CurveError, validate_curve
from core.keys import InvalidKeyError, check_key, path_inside

if TYPE_CHECKING:
    from bench.common.config import RunConfig

SCHEMA = "bridgebench.run/2"
SCHEMA_V1 = "bridgebench.run/1"
SCHEMAS = (SCHEMA_V1, SCHEMA)


T = TypeVar("T")


class ProtocolResult(TypedDict):
    """Test accuracy under one adaptation protocol."""

    accuracies: list[float]  # per-episode query accuracy in percent, in episode order
    mean: float  # mean of ``accuracies`` (percent)
    ci95: float  # 1.96 * std(ddof=1) / sqrt(episodes) (percent)
    seconds: float  # wall-clock seconds of this evaluation (features + adaptation)


class Timings(TypedDict):
    """Measured by :mod:`bench.common.timing` (synchronised clocks)."""

    train_seconds: float  # timed training steps only (the timing rule)
    train_device_hours: float  # train_seconds / 3600 * n_devices
    run_seconds: float  # training + validation: the whole training loop as it ran, every
    # epoch early stopping needed included (checkpoint writing and resume loading excluded)
    run_device_hours: float  # run_seconds / 3600 * n_devices (what the paper's GPU-hours count)
    device_hours: float  # = train_device_hours (kept for readers of schema /1)
    device_hours_unit: str  # "GPU-hours" or "CPU-hours"
    first_step_seconds: float  # the first step alone (warm-up, torch.compile); in train_seconds
    validation_seconds: float  # in run_seconds, not in train_seconds
    checkpoint_seconds: float  # writing checkpoints, excluded from device-hours
    resume_seconds: float  # loading checkpoints on resume, excluded from device-hours
    resumes: int  # how many times the run was resumed from a checkpoint
    eval_seconds: float  # final test evaluation, excluded from device-hours
    peak_memory_bytes: int | None  # peak device memory during training (CUDA only)
    steps: int  # optimiser steps taken
    images_seen: int  # training images processed (support + query of every task)
    epochs: int  # epochs run (early stopping may end training before the budget's maximum)
    test_every_seconds: NotRequired[float]  # --test-every only: its test evaluations during
    # training, excluded from device-hours


class Selection(TypedDict):
    """Model selection on the validation split."""

    protocol: str  # "unified" or "native" (config.select_on; a method without a native
    # adaptation selects on "unified" whatever was asked)
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


class DataIdentity(TypedDict):
    """The dataset a run used (:func:`bench.store.checkpoint.dataset_identity`)."""

    name: str
    source: str  # where it was read from (provenance only)
    fingerprint: str  # sha256 of the splits' class names, labels, shapes and pixels


class RunResult(TypedDict, total=False):
    """One run (method, dataset, ways, shots, seed, budget and every other setting)."""

    schema: str  # always SCHEMA (files of SCHEMA_V1 are migrated on read)
    status: Literal["ok", "failed"]  # "failed": training or evaluation stopped with an error
    key: str  # the run key (RunConfig.key), also the file name stem
    config: dict[str, Any]  # full RunConfig: method, dataset, ways, shots, queries, seed,
    # episodes, precision, solver, compile, channels_last, logreg_c, select_on, budget
    # (backbone, feature_mode, optimiser, schedule, episode shapes, augmentation, DropBlock
    # ramp, every method hyperparameter, ...)
    data: DataIdentity | None  # None: unknown (migrated from schema /1)
    migrated_from: NotRequired[str]  # the schema the file was written with, when migrated
    n_train_classes: int  # number of training classes (MTL's head rows)
    provenance: Provenance
    timings: Timings
    selection: Selection
    learning_curve: list[dict[str, Any]]  # one point per epoch (bench.store.learning_curves.CurvePoint),
    # cumulative across resumes; absent when a resume began from a checkpoint without one;
    # with --test-every N, points N, 2N, ... also hold test_accuracy and test_episodes
    test: dict[str, ProtocolResult]  # "unified" always; "native" too (for MTL, = unified)
    native_is_unified: bool  # True when the method has no native adaptation of its own
    episode_hash: str  # sha256 of the test episodes' indices (equal hash = same episodes)
    model: dict[str, Any] | None  # the selected model's file (bench/store/model_files.py): path relative
    # to the results folder ("models/<key>.pt"), sha256 of its bytes, bytes; absent with
    # --no-save-model, null when the method's state cannot be saved as a model file
    error: str  # failed runs only: what went wrong
    traceback: str  # failed runs only: the last lines of the traceback


class ResultFileError(ValueError):
    """A result file that cannot be read or does not follow the schema; names the file."""


def result_path(out_dir: Path, key: str) -> Path:
    """Where run ``key``'s result lives in results folder ``out_dir`` (``key`` checked,
    :mod:`core.keys`)."""
    return path_inside(out_dir, "runs", f"{check_key(key, 'run key')}.json")


_REQUIRED_OK = ("config", "provenance", "timings", "selection", "test", "episode_hash")
_REQUIRED_CONFIG = ("method", "dataset", "ways", "shots", "seed", "budget", "episodes")


def validate_result(data: Any, source: str) -> RunResult:
    """Check ``data`` against the schema (a ``/1`` file is migrated first, :func:`migrate_v1`);
    raise :class:`ResultFileError` naming ``source``."""

    def fail(why: str) -> ResultFileError:
        return ResultFileError(f"{source}: {why} (not a valid {SCHEMA} result file)")

    if not isinstance(data, dict):
        raise fail("top level is not a JSON object")
    if data.get("schema") not in SCHEMAS:
        raise fail(f"schema is {data.get('schema')!r}, expected {SCHEMA!r} (or {SCHEMA_V1!r}, "
                   "which is converted on read)")
    status = data.get("status")
    if status not in ("ok", "failed"):
        raise fail(f"status is {status!r}, expected 'ok' or 'failed'")
    config = data.get("config")
    if not isinstance(config, dict) or any(k not in config for k in _REQUIRED_CONFIG):
        raise fail(f"config must hold {', '.join(_REQUIRED_CONFIG)}")
    problem = config_problem(config) or key_problem(data.get("key"))
    if problem:
        raise fail(problem)
    if data["schema"] == SCHEMA_V1:
        data = migrate_v1(data)
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
        problem = accuracy_problem(res)
        if problem:
            raise fail(f"test[{protocol!r}]: {problem}")
    problem = (timings_problem(data["timings"]) or provenance_problem(data.get("provenance"))
               or selection_problem(data["selection"]))
    if problem:
        raise fail(problem)
    if "native" not in test and data.get("native_is_unified") is not True:
        raise fail("'test' must hold the 'native' protocol unless native_is_unified is true")
    if not isinstance(data["episode_hash"], str):
        raise fail("episode_hash must be a string")
    if "learning_curve" in data:
        try:
            validate_curve(data["learning_curve"], source)
        except CurveError as error:
            raise fail(str(error).removeprefix(f"{source}: ")) from error
    return data  # type: ignore[return-value]


#: How far a stored mean or CI may lie from the one recomputed from the stored per-episode
#: accuracies (percentage points): the accuracies are stored rounded to 4 decimals.
ROUNDING_TOLERANCE = 1e-3


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def accuracy_problem(res: dict[str, Any]) -> str | None:
    """What is wrong with one protocol's ``accuracies``, ``mean`` and ``ci95`` (None:
    nothing): the accuracies must be finite percentages, and the stored mean and 95% CI must
    be what they give (:func:`bench.common.stats.episode_ci95`) within :data:`ROUNDING_TOLERANCE`;
    a table shows the stored numbers, so a file where they disagree is refused."""
    # start-up: reading a result file needs no scipy (bench.common.stats imports it)
    from bench.common.stats import episode_ci95

    accs = res.get("accuracies")
    if not isinstance(accs, list) or not accs:
        return "accuracies must be a non-empty list"
    bad = [i for i, a in enumerate(accs) if not _is_number(a) or not 0 <= a <= 100]
    if bad:
        return (f"accuracies must be percentages in [0, 100]; episode {bad[0]} holds "
                f"{accs[bad[0]]!r}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
    mean, ci = math.fsum(accs) / len(accs), episode_ci95(accs)
    stored_mean, stored_ci = res.get("mean"), res.get("ci95")
    if not _is_number(stored_mean) or not math.isclose(stored_mean, mean, rel_tol=0,
                                                       abs_tol=ROUNDING_TOLERANCE):
        return (f"stored mean {stored_mean!r} disagrees with its {len(accs)} per-episode "
                f"accuracies, whose mean is {mean:.4f}")
    if not _is_number(stored_ci) or math.isnan(stored_ci) != math.isnan(ci) or (
            not math.isnan(ci) and not math.isclose(stored_ci, ci, rel_tol=0,
                                                    abs_tol=ROUNDING_TOLERANCE)):
        return (f"stored ci95 {stored_ci!r} disagrees with its {len(accs)} per-episode "
                f"accuracies, whose 95% CI is {ci:.4f}")
    return None


_REQUIRED_TIMINGS = ("train_seconds", "train_device_hours", "run_seconds", "run_device_hours",
                     "device_hours", "steps", "images_seen")
_CONFIG_INTS = {"ways": 2, "shots": 1, "seed": 0, "episodes": 1}  # each with its least value


def key_problem(key: Any) -> str | None:
    """What is wrong with a result's recorded ``key`` (a file-name key, :mod:`core.keys`)."""
    try:
        check_key(key, "key")
    except InvalidKeyError as error:
        return str(error)
    return None


def config_problem(config: dict[str, Any]) -> str | None:
    """What is wrong with the parts of a result's ``config`` that tables and file names read
    (None: nothing): method and dataset are file-name keys, ways, shots, seed and episodes
    integers, the budget an object with a name and a backbone."""
    for field in ("method", "dataset"):
        try:
            check_key(config[field], f"config.{field}")
        except InvalidKeyError as error:
            return str(error)
    for field, least in _CONFIG_INTS.items():
        value = config[field]
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            return f"config.{field} must be an integer >= {least}, not {value!r}"
    source = config.get("method_source")
    if source is not None and not isinstance(source, str):
        return f"config.method_source must be a string, not {source!r}"
    budget = config["budget"]
    if not isinstance(budget, dict) or not all(isinstance(budget.get(k), str)
                                               for k in ("name", "backbone")):
        return "config.budget must be an object with a name and a backbone (strings)"
    return None


def timings_problem(timings: Any) -> str | None:
    """What is wrong with a result's ``timings`` (None: nothing): every figure the tables read
    is present, and every number a finite count or duration >= 0."""
    if not isinstance(timings, dict) or any(not _is_number(timings.get(k))
                                            for k in _REQUIRED_TIMINGS):
        return f"timings must hold {', '.join(_REQUIRED_TIMINGS)} (numbers)"
    for name, value in timings.items():
        if _is_number(value) and not (math.isfinite(value) and value >= 0):
            return f"timings.{name} is {value!r}; a duration or count must be finite and >= 0"
    unit = timings.get("device_hours_unit", "")
    if not isinstance(unit, str):
        return f"timings.device_hours_unit must be a string, not {unit!r}"
    return None


def provenance_problem(provenance: Any) -> str | None:
    """What is wrong with the parts of ``provenance`` the tables read (None: nothing)."""
    if not isinstance(provenance, dict):
        return "provenance must be an object"
    count = provenance.get("device_count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        return f"provenance.device_count must be an integer >= 1, not {count!r}"
    if not isinstance(provenance.get("device", ""), str):
        return "provenance.device must be a string"
    return None


def selection_problem(selection: Any) -> str | None:
    """What is wrong with a result's model ``selection`` (None: nothing)."""
    if not isinstance(selection, dict):
        return "selection must be an object"
    return None


# --------------------------------------------------------------------------- schema /1

#: DropBlock's ramp before issue 10: 40,000 optimiser steps for every budget.
V1_DROPBLOCK_RAMP_STEPS = 40_000


def migrate_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A schema ``/1`` result as a ``/2`` one, each new field holding what that run used.

    - config: ``compile`` False, ``channels_last`` None and ``logreg_c`` 3.0 when absent (their
      defaults when they were added), ``select_on`` "unified" (the only protocol then);
    - budget: the augmentation the run had (the method's policy on the dataset's declared one,
      chosen by dataset then), DropBlock's ramp of 40,000 optimiser steps, and the step
      schedule's boundaries + 1 (the factor changed one epoch later then: ``lr_epochs`` now
      names the first epoch that runs at a factor); the method hyperparameters completed with
      the class's defaults where the class is available (:class:`bench.common.config.RunConfig`);
    - timings: ``train_device_hours`` = ``device_hours``; ``run_seconds`` = training +
      validation seconds and ``run_device_hours`` from it (the same devices);
    - ``data``: None (fingerprints were not recorded); ``migrated_from`` says so.

    The ``key`` (the file name) stays as it was.
    """
    out = json.loads(json.dumps(data))
    out["schema"], out["migrated_from"] = SCHEMA, SCHEMA_V1
    out["config"] = migrate_config_v1(out["config"])
    out.setdefault("data", None)
    timings = out.get("timings")
    if out.get("status") == "ok" and isinstance(timings, dict) \
            and isinstance(timings.get("device_hours"), (int, float)):
        devices = out.get("provenance", {}).get("device_count", 1) or 1
        train = float(timings.get("train_seconds", timings["device_hours"] * 3600 / devices))
        run = train + float(timings.get("validation_seconds", 0.0))
        timings.setdefault("train_seconds", train)
        timings.setdefault("train_device_hours", timings["device_hours"])
        timings.setdefault("run_seconds", run)
        timings.setdefault("run_device_hours", run / 3600.0 * devices)
    return out


def migrate_config_v1(config: dict[str, Any]) -> dict[str, Any]:
    """A schema ``/1`` run configuration (also a checkpoint's) with the fields added since,
    holding what that run used (:func:`migrate_v1`); unchanged when it has them already."""
    if "select_on" in config:
        return config
    config = json.loads(json.dumps(config))
    config.setdefault("compile", False)
    config.setdefault("channels_last", None)
    config.setdefault("logreg_c", 3.0)
    config["select_on"] = "unified"
    budget = config.get("budget")
    if isinstance(budget, dict):
        budget.setdefault("dropblock_ramp_steps", V1_DROPBLOCK_RAMP_STEPS)
        if "augmentation" not in budget:
            budget["augmentation"] = _v1_augmentation(config)
        if budget.get("schedule") == "step":
            budget["lr_epochs"] = [int(e) + 1 for e in budget.get("lr_epochs", [])]
    return _canonical_config(config)


def _v1_augmentation(config: dict[str, Any]) -> str | None:
    """The training augmentation a ``/1`` run had: its method's policy applied to the
    dataset's declared augmentation (None where neither is known here)."""
    # start-up: only schema /1 files need the registries, which import torch
    from datasets import DATASETS
    from methods.plugins import MethodImportError, method_class

    info = DATASETS.get(config["dataset"]) if config.get("dataset") in DATASETS else None
    try:
        cls = method_class(config["method"], config.get("method_source"))
    except (MethodImportError, KeyError):
        return info.train_augmentation if info is not None else None
    return cls.training_augmentation(info, None)


def _canonical_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as :class:`bench.common.config.RunConfig` stores it (every hyperparameter)."""
    # start-up: RunConfig imports the method and dataset registries (torch)
    from bench.common.config import RunConfig

    try:
        return json.loads(json.dumps(RunConfig.from_dict(config).to_dict()))
    except (TypeError, ValueError, KeyError):
        return config  # a configuration this version cannot rebuild: kept as written


# --------------------------------------------------------------------------- identity

def data_fingerprint(result: RunResult) -> str | None:
    """The fingerprint of the dataset a result was made from (None: unknown)."""
    data = result.get("data")
    return data.get("fingerprint") if isinstance(data, dict) else None


@dataclass(frozen=True)
class Existing:
    """What a run's result file holds, seen from a run about to start (:func:`existing_result`).

    ``finished``: a successful result with this run's identity (skip it); ``conflict``: a
    successful result of another identity (refuse, the message says what differs and what to
    do); neither: nothing usable (no file, a failure record, an unreadable file: run it).
    ``note``: something the user should know about a finished result."""

    finished: bool = False
    conflict: str | None = None
    note: str = ""


def existing_result(path: Path, config: "RunConfig", fingerprint: str | None) -> Existing:
    """Compare the result at ``path`` (if any) with run ``config`` on data ``fingerprint``.

    The same identity (:meth:`bench.common.config.RunConfig.identity`) is finished. A ``/1`` result
    (no recorded fingerprint) whose settings match counts as finished, with a note saying its
    data was not fingerprinted. Anything else finished there is a conflict.
    """
    # start-up: RunConfig imports the method and dataset registries (torch)
    from bench.common.config import RunConfig, describe_differences

    if not Path(path).exists():
        return Existing()
    try:
        result = read_result(path)
    except ResultFileError:
        return Existing()
    if result.get("status") != "ok":
        return Existing()
    advice = (f"Move {path} away (or choose another --out) to keep it, or rerun with --force "
              "to replace it.")
    try:
        theirs = RunConfig.from_dict(result["config"]).settings()
    except (TypeError, ValueError, KeyError) as error:
        return Existing(conflict=f"{path} holds a finished result whose configuration this "
                                 f"version cannot read ({type(error).__name__}: {error}). "
                                 + advice)
    mine = config.settings()
    if theirs != mine:
        changed = describe_differences(theirs, mine)
        return Existing(conflict=(
            f"{path} holds a finished result of another configuration at this run's key "
            f"{config.key!r} (it has {changed or 'other settings'}); this run would replace it."
            + (" It was written by an older version (schema "
               f"{result['migrated_from']}), whose keys did not tell settings apart."
               if result.get("migrated_from") else "") + " " + advice))
    recorded = data_fingerprint(result)
    if recorded is None:
        return Existing(finished=True, note=" (written before data fingerprints were "
                                            "recorded: its data cannot be checked)")
    if fingerprint is not None and recorded != fingerprint:
        source = result["data"].get("source", "?")
        return Existing(conflict=(
            f"{path} holds a finished result of this configuration made from other data "
            f"(dataset fingerprint {recorded[:12]}... from {source!r}; the data now has "
            f"{fingerprint[:12]}...). " + advice))
    return Existing(finished=True)


#: The largest result or eval file read (a 2,000-episode result with a 60-epoch learning curve
#: is about 100 kB): anything larger is refused unread.
MAX_FILE_BYTES = 16 * 2**20
#: The deepest nesting of JSON arrays and objects a result or eval file may have (the schema
#: needs 4; a method's hyperparameters may add a few).
MAX_JSON_DEPTH = 32


class JSONFileProblem(ValueError):
    """Why a file cannot be read as a JSON document (without the file's name)."""


def json_depth(value: Any) -> int:
    """How deeply ``value``'s arrays and objects nest (0: a scalar), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else \
            item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def load_json_file(path: Path) -> Any:
    """The JSON document in ``path``; :class:`JSONFileProblem` saying why not (unreadable,
    over :data:`MAX_FILE_BYTES`, not UTF-8, not JSON, nested deeper than
    :data:`MAX_JSON_DEPTH`). Never anything else: no file's contents can raise past it."""
    try:
        size = Path(path).stat().st_size
        if size > MAX_FILE_BYTES:
            raise JSONFileProblem(f"{size:,} bytes, over the limit of {MAX_FILE_BYTES:,} bytes "
                                  "for a result file")
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise JSONFileProblem(f"cannot read ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONFileProblem(f"not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x})"
                              ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JSONFileProblem(f"not valid JSON ({exc})") from None
    except RecursionError:
        raise JSONFileProblem(f"nested too deeply (more than {MAX_JSON_DEPTH} levels of "
                              "arrays and objects)") from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise JSONFileProblem(f"nested too deeply (more than {MAX_JSON_DEPTH} levels of "
                              "arrays and objects)")
    return data


def read_result(path: Path) -> RunResult:
    """Load and validate one result file; errors name the file."""
    try:
        data = load_json_file(path)
    except JSONFileProblem as exc:
        raise ResultFileError(f"{path}: {exc}; delete it or rerun that run with --force"
                              ) from exc
    try:
        return validate_result(data, str(path))
    except ResultFileError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        raise ResultFileError(f"{path}: not a valid {SCHEMA} result file "
                              f"({type(exc).__name__}: {exc})") from exc


def is_finished(path: Path) -> bool:
    """True when ``path`` holds a successful result of any configuration (a failure record is
    not finished); whether it is *this run's* result is :func:`existing_result`'s question."""
    if not path.exists():
        return False
    try:
        return read_result(path).get("status") == "ok"
    except ResultFileError:
        return False


def read_each(paths: Iterable[Path], read: Callable[[Path], T], error: type[Exception],
              skipped: list[str] | None = None) -> list[T]:
    """``read`` every path. ``skipped`` given: a file that raises ``error`` (the file kind's
    "invalid file" error) is left out and its message appended there instead of raised."""
    records = []
    for path in paths:
        try:
            records.append(read(path))
        except error as problem:
            if skipped is None:
                raise
            skipped.append(str(problem))
    return records
