"""A sweep: many runs into one results folder, surviving interruptions and sharing.

Each run is claimed first (:mod:`bench.locks`), so processes sharing a folder never run the
same key twice; a finished result is skipped; an unfinished run resumes from its checkpoint
(:class:`CheckpointPolicy`, checked up front by :func:`preflight_checkpoints`); a failing run
costs one failure record and the sweep goes on. ``--isolate`` and Slurm runs go through
:mod:`bench.launch`, which calls :func:`run_sweep` for one run per process.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from bench.checkpoint import (CheckpointError, StorageError, check_compatible, checkpoint_path,
                              dataset_identity, ensure_writable, load_checkpoint)
from bench.config import RunConfig
from bench.distributed import SINGLE, Parallel, broadcast_object
from bench.locks import ClaimBoard
from bench.record import failure_record, run_one, write_result
from bench.results import is_finished, result_path
from bench.session import Preempted, RunCheckpoint
from datasets import FewShotDataset

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
        tqdm.write(done_line(record, path))
    summary.finished.append(config.key)


def done_line(record: dict, path: Path) -> str:
    """The line a finished run is announced with (here and by ``--jobs``'s parent)."""
    unified, native = record["test"]["unified"], record["test"]["native"]
    world = record["provenance"].get("device_count", 1)
    return (f"done {record['key']}: unified {unified['mean']:.2f} ± {unified['ci95']:.2f}%, "
            f"native {native['mean']:.2f} ± {native['ci95']:.2f}%, "
            f"{record['timings']['train_seconds']:.1f} s training x {world} device(s) -> {path}")
