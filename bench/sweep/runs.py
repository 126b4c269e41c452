"""A sweep: many runs into one results folder, surviving interruptions and sharing.

Each run is claimed first (:mod:`bench.sweep.claims`), so processes sharing a folder never run the
same key twice; a finished result (the same identity: :func:`bench.store.results.existing_result`)
is skipped, a finished result of another identity at the run's key is refused before anything
runs (:func:`preflight_results`; ``--force`` replaces it); an unfinished run resumes from its
checkpoint
(:class:`CheckpointPolicy`, checked up front by :func:`preflight_checkpoints`); a failing run
costs one failure record and the sweep goes on. ``--isolate`` and Slurm runs go through
:mod:`bench.sweep.launch`, which calls :func:`run_sweep` for one run per process.
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from bench.store.checkpoint import (CheckpointError, StorageError, check_compatible,
                              checkpoint_differences, checkpoint_path, dataset_identity,
                              ensure_writable, load_checkpoint)
from bench.common.config import RunConfig
from bench.run.distributed import SINGLE, Parallel, broadcast_object
from bench.run.epoch_log import EpochLogger, log_folder, open_epoch_logs
from bench.sweep.claims import ClaimBoard
from bench.store.model_files import model_path
from bench.run.train_and_test import failure_record, run_one, write_result
from bench.store.results import Existing, existing_result, is_finished, result_path
from bench.run.session import Preempted, RunCheckpoint
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


class ResultConflict(RuntimeError):
    """A finished result of another configuration (or other data) sits at a run's key; the
    message names the file, what differs and what to do."""


def data_identities(configs: list[RunConfig], datasets: dict[str, FewShotDataset]
                    ) -> dict[str, dict[str, str]]:
    """:func:`~bench.store.checkpoint.dataset_identity` of every dataset the configs use."""
    return {name: dataset_identity(datasets[name]) for name in
            dict.fromkeys(c.dataset for c in configs)}


def preflight_results(configs: list[RunConfig], identities: dict[str, dict[str, str]],
                      out_dir: Path) -> list[str]:
    """Finished results of another identity at the keys of ``configs`` (what would be
    silently skipped or replaced), found before any training starts. (``--force`` replaces
    them, so skip this.)"""
    problems = []
    for config in configs:
        found = existing_result(result_path(out_dir, config.key), config,
                                identities[config.dataset]["fingerprint"])
        if found.conflict:
            problems.append(found.conflict)
    return problems


def preflight_checkpoints(configs: list[RunConfig], datasets: dict[str, FewShotDataset],
                          out_dir: Path, world_size: int = 1) -> list[str]:
    """Problems with the existing checkpoints of the unfinished runs a sweep would resume
    (corrupt, other configuration, other dataset, other world size), found before any
    training starts, and unfinished checkpoints of the same (method, dataset, ways, shots,
    seed, budget) with other settings (:func:`sibling_checkpoints`: the same command rerun with
    a changed setting would otherwise start a new run and leave the interrupted one behind).
    (``--restart`` and ``--force`` discard checkpoints, so skip this.)"""
    identities: dict[str, dict[str, str]] = {}
    problems = []
    for config in configs:
        problems += sibling_checkpoints(config, out_dir)
        path = checkpoint_path(out_dir, config.key)
        if config.dataset not in identities:
            identities[config.dataset] = dataset_identity(datasets[config.dataset])
        if not path.exists() or existing_result(
                result_path(out_dir, config.key), config,
                identities[config.dataset]["fingerprint"]).finished:
            continue
        try:
            payload = load_checkpoint(path, mmap=True)
            check_compatible(path, payload, key=config.key, config=config.to_dict(),
                             identity=identities[config.dataset], world_size=world_size)
        except CheckpointError as error:
            problems.append(str(error))
    return problems


def sibling_checkpoints(config: RunConfig, out_dir: Path) -> list[str]:
    """Messages for the checkpoints in ``out_dir`` of runs that share ``config``'s readable
    key (method, dataset, ways, shots, budget, seed) but not its settings, are unfinished
    (no finished result at their key) and are not being run by a live process."""
    folder = checkpoint_path(out_dir, config.key).parent
    if not folder.is_dir():
        return []
    pattern = re.compile(re.escape(config.readable_key) + r"(_[0-9a-f]{8})?")
    board = ClaimBoard(Path(out_dir) / "claims")
    problems = []
    for path in sorted(folder.glob(f"{config.readable_key}*.pt")):
        key = path.stem
        if key == config.key or not pattern.fullmatch(key) \
                or is_finished(result_path(out_dir, key)):
            continue
        holder = board.holder(key)
        if holder is not None and not board.is_stale(board.path(key), holder):
            continue  # another process is running that configuration now
        try:
            saved = load_checkpoint(path, mmap=True).get("config", {})
        except CheckpointError as error:
            problems.append(str(error))
            continue
        changed = checkpoint_differences(saved, config.to_dict())
        problems.append(
            f"{path}: an unfinished run of {config.readable_key} with other settings has a "
            f"checkpoint here (" + "; ".join(changed[:6]) + (" ..." if len(changed) > 6 else "")
            + "). A checkpoint resumes only the configuration it was written for: rerun with "
            "its settings to resume it, or pass --restart to train this configuration as a "
            "run of its own (that checkpoint is kept; delete it if it is not wanted).")
    return problems


def run_sweep(configs: list[RunConfig], datasets: dict[str, FewShotDataset],
              device: torch.device, out_dir: Path, force: bool = False,
              progress: bool = True, *, checkpoints: CheckpointPolicy = CheckpointPolicy(),
              parallel: Parallel = SINGLE, claim: bool = True,
              identities: dict[str, dict[str, str]] | None = None,
              save_models: bool = True) -> SweepSummary:
    """Run every config; an existing finished result of the same identity is skipped unless
    ``force`` (which also retrains from scratch); one of another identity stops the sweep
    (:class:`ResultConflict`) unless ``force`` (which replaces it). A failing run writes a
    failure record (keeping its checkpoint) and the sweep goes on. ``save_models``: every
    finished run writes its selected model under ``<out>/models/``.

    Each run is claimed first (``claim``; :mod:`bench.sweep.claims`), so processes sharing
    ``out_dir`` never run the same key twice; a run another process holds is skipped. An
    unfinished run resumes from its checkpoint. A storage problem (:class:`StorageError`) or
    SIGTERM (:class:`Preempted`) stops the sweep; nothing already written is lost.
    Only rank 0 of a data-parallel run writes files. ``save_models``: each finished run also
    writes its selected model to ``<out>/models/<key>.pt`` (:mod:`bench.store.model_files`), just before
    its result, which names it. A run whose config asks for ``log`` writes its live learning
    curves to ``<out>/logs/<key>/`` (:mod:`bench.run.epoch_log`).
    """
    out_dir = Path(out_dir)
    if parallel.is_main:
        ensure_writable(out_dir)
    board = ClaimBoard(out_dir / "claims")
    summary = SweepSummary()
    identities = dict(identities or {})  # dataset name -> dataset_identity (computed once)
    for config in configs:
        path = result_path(out_dir, config.key)
        if config.dataset not in identities:
            identities[config.dataset] = dataset_identity(datasets[config.dataset])
        data = identities[config.dataset]
        with contextlib.ExitStack() as held:
            status = _claim_run(config, path, board, held, force, claim, data["fingerprint"]) \
                if parallel.is_main else None
            status = broadcast_object(status, parallel)
            if isinstance(status, tuple):  # ("conflict", message)
                raise ResultConflict(status[1])
            if status is not None:
                getattr(summary, status).append(config.key)
                continue
            store = None
            if checkpoints.enabled:
                store = RunCheckpoint(checkpoint_path(out_dir, config.key), config, data,
                                      parallel)
                if checkpoints.restart or force:
                    store.discard()
            model_file = model_path(out_dir, config.key) if save_models else None
            epoch_log = open_epoch_logs(config.log, log_folder(out_dir, config.key)) \
                if parallel.is_main else None  # --log: <out>/logs/<key>/
            if epoch_log is not None:
                held.callback(epoch_log.close)
            _run_and_record(config, datasets[config.dataset], device, path, store,
                            checkpoints, parallel, progress, summary, data, model_file,
                            epoch_log)
    return summary


def skip_message(config: RunConfig, path: Path, found: Existing) -> str:
    return (f"skip {config.key}: finished result exists at {path}{found.note} "
            "(--force reruns)")


def _claim_run(config: RunConfig, path: Path, board: ClaimBoard, held: contextlib.ExitStack,
               force: bool, claim: bool, fingerprint: str
               ) -> str | tuple[str, str] | None:
    """None when this process may run ``config`` (holding its claim in ``held``), else the
    summary list it belongs to ("skipped" or "busy"), or ``("conflict", message)`` when a
    finished result of another identity holds its key."""

    def verdict() -> str | tuple[str, str] | None:
        if force:
            return None
        found = existing_result(path, config, fingerprint)
        if found.conflict:
            return "conflict", found.conflict
        if found.finished:
            tqdm.write(skip_message(config, path, found))
            return "skipped"
        return None

    status = verdict()
    if status is not None or not claim:
        return status
    taken = board.try_claim(config.key)
    if taken is None:
        holder = board.holder(config.key)
        who = holder.describe() if holder is not None else "another process"
        tqdm.write(f"busy {config.key}: being run by {who}; skipped")
        return "busy"
    held.enter_context(taken)
    return verdict()  # finished by another process meanwhile?


def _run_and_record(config: RunConfig, dataset: FewShotDataset, device: torch.device,
                    path: Path, store: RunCheckpoint | None, policy: CheckpointPolicy,
                    parallel: Parallel, progress: bool, summary: SweepSummary,
                    data: dict[str, str], model_file: Path | None = None,
                    epoch_log: EpochLogger | None = None) -> None:
    try:
        record = run_one(config, dataset, device, progress, checkpoint=store, parallel=parallel,
                         data=data, model_file=model_file, epoch_log=epoch_log)
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
    timings = record["timings"]
    return (f"done {record['key']}: unified {unified['mean']:.2f} ± {unified['ci95']:.2f}%, "
            f"native {native['mean']:.2f} ± {native['ci95']:.2f}%, "
            f"{timings['train_seconds']:.1f} s training "
            f"({timings['run_seconds']:.1f} s with validation) x {world} device(s) -> {path}")
