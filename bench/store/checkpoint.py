"""Training checkpoints: atomic save, validated load, RNG capture, dataset identity.

A run's checkpoint lives at ``<out>/checkpoints/<key>.pt`` and holds everything the training
loop needs to continue as if it had never stopped (:class:`bench.run.session.TrainSession` builds
the payload): model, optimiser and learning-rate schedule, every random state (torch CPU and
CUDA, NumPy's and Python's global generators, the episode sampler's NumPy generator, the
augmentation's torch generator), the loop's position (epoch, step within it), the best state and
validation curve so far, and the accumulated timings. It also records what it belongs to (run
key, configuration, world size, and the dataset's identity), so a checkpoint is never resumed
into a different run (a configuration written before issue 10 is read with the values that run
used, :func:`bench.store.results.migrate_config_v1`). It also carries the run's learning curve so far.

Writes go through :mod:`core.atomic` (a temporary file in the same folder, flushed to disk,
then ``os.replace``): a crash or a full disk leaves the previous checkpoint intact.
Reading uses ``torch.load(weights_only=True)``: a checkpoint holds tensors and plain Python
values only, never code.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from bench.store.results import migrate_config_v1
from core.atomic import atomic_file
from core.keys import check_key, path_inside
from datasets.base import FewShotDataset

CHECKPOINT_FORMAT = "bridgebench.checkpoint/1"
FULL_HASH_BYTES = 64 << 20
"""Splits up to this size are hashed whole; larger ones by a sample of images (see
:func:`dataset_identity`)."""
SAMPLED_IMAGES = 1024
IGNORED_CONFIG_KEYS = ("episodes", "test_every", "test_every_episodes", "log")
"""Config entries that do not affect training (a checkpoint resumes across them)."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and says what to do."""


class CheckpointMismatchError(CheckpointError):
    """A readable checkpoint that belongs to another run, dataset or world size."""


class StorageError(OSError):
    """Writing to the results folder failed (not writable, disk full, ...). Nothing already
    written was lost; the message (``StorageError(errno, message)``) says what happened and
    what to do."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def checkpoint_path(out_dir: Path | str, key: str) -> Path:
    """Where run ``key``'s checkpoint lives in results folder ``out_dir`` (``key`` checked,
    :mod:`core.keys`)."""
    return path_inside(out_dir, "checkpoints", f"{check_key(key, 'run key')}.pt")


# --------------------------------------------------------------------------- storage

def describe_write_failure(path: Path, exc: OSError, what: str) -> str:
    """A message for a failed write of ``what`` (e.g. "checkpoint") to ``path``."""
    if exc.errno == errno.ENOSPC:
        reason = "the disk is full (no space left on device)"
    elif exc.errno == errno.EDQUOT:
        reason = "the disk quota is exhausted"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "the folder is not writable"
    else:
        reason = exc.strerror or str(exc)
    return (f"cannot write the {what} {path}: {reason}. Nothing already written was lost: the "
            f"previous {what} (if any) and every finished result are intact. Free space or fix "
            "the folder, then rerun the same command to continue where it stopped.")


def ensure_writable(folder: Path | str) -> None:
    """Check up front that ``folder`` (a results folder) can be created and written;
    :class:`StorageError` otherwise, before any training."""
    folder = Path(folder)
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                raise StorageError(errno.ENOTDIR, f"results folder {folder} is not writable: "
                                   f"{path} is a file, not a folder; choose another --out. "
                                   "Nothing was run.")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise StorageError(
            exc.errno or errno.EIO,
            f"results folder {folder} is not writable ({type(exc).__name__}: "
            f"{exc.strerror or exc}); choose another --out or fix its permissions. Nothing was "
            "run.") from exc


def _write_payload(handle: BinaryIO, payload: dict[str, Any]) -> None:
    torch.save(payload, handle)


def save_checkpoint(path: Path | str, payload: dict[str, Any]) -> None:
    """Atomically write ``payload`` to ``path`` (:func:`core.atomic.atomic_file`).

    Raises :class:`StorageError` on any OS error; the previous file at ``path`` survives.
    """
    path = Path(path)
    try:
        with atomic_file(path) as handle:
            _write_payload(handle, {"format": CHECKPOINT_FORMAT, **payload})
    except OSError as exc:
        raise StorageError(exc.errno or errno.EIO,
                           describe_write_failure(path, exc, "checkpoint")) from exc


def load_checkpoint(path: Path | str, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    ``mmap=True`` maps the tensors instead of reading them (a cheap look at the metadata).
    Raises :class:`CheckpointError` naming the file for anything unreadable.
    """
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated zip, bad pickle, wrong file type, ...
        raise CheckpointError(
            f"{path}: cannot read this checkpoint ({type(exc).__name__}: {exc}); it is corrupt "
            "or truncated. Rerun the same command with --restart to discard it and train this "
            "run from scratch.") from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(
            f"{path}: not a {CHECKPOINT_FORMAT} checkpoint (found {found!r}). Rerun with "
            "--restart to discard it and train this run from scratch.")
    return data


# --------------------------------------------------------------------------- random states

def capture_rng(augment: torch.Generator | None, device: torch.device) -> dict[str, Any]:
    """Every global random state plus the augmentation generator's."""
    np_state = np.random.get_state()
    return {
        "torch_cpu": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
        "augment": augment.get_state() if augment is not None else None,
    }


def restore_rng(state: dict[str, Any], augment: torch.Generator | None,
                device: torch.device) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch_cpu"])
    if device.type == "cuda" and state["torch_cuda"] is not None:
        torch.cuda.set_rng_state(state["torch_cuda"], device)
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    random.setstate(_as_tuples(state["python"]))
    if augment is not None and state["augment"] is not None:
        augment.set_state(state["augment"])


def _as_tuples(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value


# --------------------------------------------------------------------------- identity

def _hash_split(h: "hashlib._Hash", split: Any) -> None:
    images = split.images
    h.update(f"{split.name};{len(images)};{tuple(images.shape)};{images.dtype};".encode())
    h.update("\x1f".join(split.class_names).encode())
    h.update(split.labels.numpy().astype("<i8").tobytes())
    n = len(images)
    if n == 0:
        return
    if images.numel() * images.element_size() <= FULL_HASH_BYTES:
        h.update(np.ascontiguousarray(images.numpy()).tobytes())
        return
    rows = np.unique(np.linspace(0, n - 1, SAMPLED_IMAGES).round().astype(np.int64))
    h.update(np.ascontiguousarray(images[torch.from_numpy(rows)].numpy()).tobytes())


def dataset_identity(dataset: FewShotDataset) -> dict[str, str]:
    """Name, source and a content fingerprint of ``dataset``.

    The fingerprint hashes every split's class names, labels and shape, and its pixels: all of
    them for splits up to 64 MB (glyphs, Omniglot, CIFAR), 1,024 evenly spaced images of larger
    ones (mini-/tiered-ImageNet, so the check stays cheap on a memory-mapped cache). A prepared
    cache that was rebuilt from other files, or a generator with other settings, changes it.
    """
    h = hashlib.sha256()
    h.update(f"{dataset.name};{dataset.mean};{dataset.std};".encode())
    for split in (dataset.train, dataset.val, dataset.test):
        _hash_split(h, split)
    return {"name": dataset.name, "source": dataset.source, "fingerprint": h.hexdigest()}


def normalized_config(config_dict: dict[str, Any]) -> dict[str, Any]:
    """The training-relevant part of a run's config, JSON-normalised (tuples -> lists)."""
    data = json.loads(json.dumps(config_dict))
    for key in IGNORED_CONFIG_KEYS:
        data.pop(key, None)
    return data


_UNSET = object()


def _differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        out: list[str] = []
        for key in sorted(set(saved) | set(current)):
            out += _differences(saved.get(key, _UNSET), current.get(key, _UNSET),
                                f"{prefix}{key}.")
        return out
    if saved != current:
        then = "not set" if saved is _UNSET else repr(saved)
        now = "not set" if current is _UNSET else repr(current)
        return [f"{prefix.rstrip('.')}: {then} in the checkpoint, {now} now"]
    return []


def checkpoint_differences(saved: Any, config: dict[str, Any]) -> list[str]:
    """``"key: then in the checkpoint, now now"`` for every training-relevant setting in which
    a checkpoint's configuration ``saved`` differs from run configuration ``config``. A
    configuration written before issue 10 is first read with the values that run used
    (:func:`bench.store.results.migrate_config_v1`)."""
    if isinstance(saved, dict) and "select_on" not in saved:
        saved = normalized_config(migrate_config_v1(saved))
    return _differences(saved, normalized_config(config))


def check_compatible(path: Path, payload: dict[str, Any], *, key: str,
                     config: dict[str, Any], identity: dict[str, str],
                     world_size: int) -> None:
    """Refuse (:class:`CheckpointMismatchError`) to resume ``payload`` into another run."""
    restart = ("Rerun with --restart to discard the checkpoint and train this run from scratch "
               "(or restore what changed to resume it).")
    if payload.get("key") != key:
        raise CheckpointMismatchError(f"{path}: the checkpoint belongs to run "
                                      f"{payload.get('key')!r}, not {key!r}. {restart}")
    saved_identity = payload.get("dataset", {})
    if saved_identity.get("fingerprint") != identity["fingerprint"]:
        raise CheckpointMismatchError(
            f"{path}: the dataset changed since this checkpoint was written (content "
            f"fingerprint {str(saved_identity.get('fingerprint'))[:12]}... then, "
            f"{identity['fingerprint'][:12]}... now; source then: "
            f"{saved_identity.get('source')!r}; now: {identity['source']!r}). Resuming would "
            f"mix two datasets in one run. {restart}")
    changed = checkpoint_differences(payload.get("config"), config)
    if changed:
        raise CheckpointMismatchError(
            f"{path}: the checkpoint was written with another configuration ("
            + "; ".join(changed[:6]) + (" ..." if len(changed) > 6 else "") + f"). {restart}")
    if payload.get("world_size") != world_size:
        raise CheckpointMismatchError(
            f"{path}: the checkpoint was written by a {payload.get('world_size')}-process run "
            f"and this run has {world_size}; resume with the same number of processes "
            f"(torchrun --nproc_per_node) or use --restart.")
