"""The training session of one run: the loop, validation-based model selection, early
stopping, checkpoints and stop signals (SIGTERM, Ctrl-C).

:class:`TrainSession` holds everything the loop reads and changes; its
:meth:`~TrainSession.state_dict` is the checkpoint (:class:`RunCheckpoint`), saved atomically
after every epoch and, on SIGTERM or Ctrl-C (SIGINT; :class:`StopSignal`), at the next step
boundary (:mod:`bench.store.checkpoint`); a second signal stops at once (:class:`StopNow`). Resuming from it continues exactly where it was taken, so a rerun
reaches the same result as an uninterrupted run. The step itself is
:func:`bench.run.training.parallel_train_step`; validation uses the run's selection protocol
(``select_on``: the unified protocol for every method by default). Every epoch adds a point to
the run's learning curve (:class:`bench.store.learning_curves.CurvePoint`: cumulative training and
training-plus-validation seconds, images, steps, validation accuracy; with ``--test-every N``,
every N epochs also test accuracy on a reduced number of test episodes, timed apart and in
neither clock), which the checkpoint carries, so a resumed run continues its curve.
"""
from __future__ import annotations

import copy
import datetime as _dt
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.store.checkpoint import (CheckpointError, capture_rng, check_compatible, load_checkpoint,
                              normalized_config, restore_rng, save_checkpoint)
from bench.common.config import RunConfig
from bench.run.distributed import (SINGLE, Parallel, broadcast_object, gather_objects,
                               max_over_ranks, sharded_map)
from bench.run.epoch_log import EpochLogger, EpochNumbers
from bench.run.evaluate import evaluate_native, evaluate_unified
from bench.common.timing import SectionTimer, device_hours
from bench.run.training import EpochSchedule, Training, parallel_train_step, stream_seed
from datasets import FewShotDataset
from datasets.augment import Normalizer
from datasets.episodes import EpisodeLoader, EpisodeSampler

class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stops and records a failure."""


class Preempted(RuntimeError):
    """SIGTERM or Ctrl-C (SIGINT) arrived: a checkpoint was saved at a step boundary and the
    sweep stops; rerunning the same command resumes. ``signum`` says which signal it was."""

    def __init__(self, message: str, signum: int = signal.SIGTERM) -> None:
        super().__init__(message)
        self.signum = signum


class StopNow(KeyboardInterrupt):
    """A second SIGTERM or Ctrl-C while a run was already stopping: stop at once, without
    waiting for the next step boundary (the last checkpoint written stays usable)."""


def signal_label(signum: int) -> str:
    """How messages name a stop signal: "Ctrl-C (SIGINT)" or "SIGTERM"."""
    name = signal.Signals(signum).name
    return "Ctrl-C (SIGINT)" if signum == signal.SIGINT else name


@dataclass
class TrainOutcome:
    best_state: dict[str, Any]
    best_epoch: int
    best_val: float
    val_curve: list[float] = field(default_factory=list)
    steps: int = 0
    images_seen: int = 0
    epochs: int = 0  # completed epochs (training steps and validation)
    resumes: int = 0  # times training continued from a checkpoint
    curve: list[dict[str, Any]] | None = field(default_factory=list)
    """One :class:`bench.store.learning_curves.CurvePoint` per epoch; None when the run resumed from a
    checkpoint written before curves were kept (its first epochs are unknown)."""


def _cpu_state(module: torch.nn.Module) -> dict[str, Any]:
    return {k: (v.detach().to("cpu", copy=True) if torch.is_tensor(v) else copy.deepcopy(v))
            for k, v in module.state_dict().items()}


class StopSignalHandlers:
    """A context that installs :meth:`_handle` for SIGTERM and SIGINT while active (in the
    main thread only: Python delivers signals there) and restores the previous handlers."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        raise NotImplementedError

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)


class StopSignal(StopSignalHandlers):
    """While active (in the main thread), SIGTERM (pre-emption, ``scancel``) and SIGINT
    (Ctrl-C) only set :attr:`requested` (and :attr:`signum`); the training loop checkpoints at
    the next step boundary and stops. A second signal raises :class:`StopNow` at once."""

    def __init__(self) -> None:
        super().__init__()
        self.requested = False
        self.signum: int = signal.SIGTERM

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise StopNow(f"second {signal_label(signum)}: stopped at once")
        self.requested, self.signum = True, signum


class RunCheckpoint:
    """Where one run's checkpoint lives, what it must match, and its save/load/discard.

    Only rank 0 touches the file; the other ranks receive the loaded payload by broadcast.
    """

    def __init__(self, path: Path, config: RunConfig, identity: dict[str, str],
                 parallel: Parallel = SINGLE) -> None:
        """``identity``: :func:`bench.store.checkpoint.dataset_identity` of the run's dataset."""
        self.path = Path(path)
        self.config = config
        self.parallel = parallel
        self.identity = identity

    def header(self) -> dict[str, Any]:
        return {"key": self.config.key, "config": normalized_config(self.config.to_dict()),
                "dataset": self.identity, "world_size": self.parallel.world_size}

    def load(self) -> dict[str, Any] | None:
        """The checkpoint's payload if there is one (checked against this run), else None."""
        payload: dict[str, Any] | None = None
        error: CheckpointError | None = None
        if self.parallel.is_main and self.path.exists():
            try:
                payload = load_checkpoint(self.path)
                check_compatible(self.path, payload, key=self.config.key,
                                 config=self.config.to_dict(), identity=self.identity,
                                 world_size=self.parallel.world_size)
            except CheckpointError as exc:
                payload, error = None, exc
        payload, message = broadcast_object((payload, str(error) if error else None),
                                            self.parallel)
        if message is not None:
            raise CheckpointError(message)
        return payload

    def save(self, payload: dict[str, Any]) -> None:
        if self.parallel.is_main:
            save_checkpoint(self.path, {**self.header(), **payload})

    def discard(self) -> None:
        if self.parallel.is_main:
            self.path.unlink(missing_ok=True)


class TrainSession:
    """Everything the training loop reads and changes: the :class:`~bench.run.training.Training`
    (method, optimiser, sampler, data path, augmentation generator), the validation path,
    schedule, position and model-selection state. Its
    :meth:`state_dict`/:meth:`load_state_dict` are the checkpoint; resuming from one continues
    exactly where it was taken."""

    def __init__(self, training: Training, dataset: FewShotDataset, config: RunConfig,
                 device: torch.device, parallel: Parallel = SINGLE, *,
                 val_stream: str = "val",
                 on_epoch: Callable[[int, float], None] | None = None,
                 epoch_log: EpochLogger | None = None) -> None:
        """``val_stream``: the episode stream validation draws from the val split
        (:func:`bench.run.training.stream_seed`; ``bench tune`` uses its own, ``"tune"``);
        ``on_epoch(epoch, val_accuracy)``: called after each epoch's validation and model
        selection (``bench tune`` reports to its pruner there; an exception it raises ends
        training); ``epoch_log``: handed each epoch's numbers (``--log``,
        :mod:`bench.run.epoch_log`)."""
        budget = config.budget
        self.val_stream, self.on_epoch = val_stream, on_epoch
        self.training, self.dataset, self.config = training, dataset, config
        self.method, self.optimizer = training.method, training.optimizer
        self.sampler, self.train_loader, self.augment = (training.sampler, training.loader,
                                                         training.augment)
        self.device, self.parallel = device, parallel
        self.val_loader = EpisodeLoader(dataset.val, Normalizer(dataset.mean, dataset.std),
                                        device)
        self.test_loader: EpisodeLoader | None = None  # --test-every only
        self.schedule = EpochSchedule(budget, self.optimizer)
        self.outcome = TrainOutcome(best_state=_cpu_state(self.method), best_epoch=0,
                                    best_val=-math.inf)
        self.since_best = 0
        self.step_in_epoch = 0  # steps already taken in epoch ``outcome.epochs + 1``
        self.finished = False
        self.epoch_log, self.epoch_loss = epoch_log, 0.0  # loss summed over the epoch's steps

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self, timer: SectionTimer) -> dict[str, Any]:
        """The checkpoint payload (rank 0's; every rank's torch random state included)."""
        o = self.outcome
        return {
            "model": _cpu_state(self.method),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": gather_objects(capture_rng(self.augment, self.device), self.parallel),
            "progress": {"epochs": o.epochs, "step_in_epoch": self.step_in_epoch,
                         "steps": o.steps, "images_seen": o.images_seen,
                         "since_best": self.since_best, "finished": self.finished,
                         "resumes": o.resumes, "epoch_loss": self.epoch_loss},
            "best": {"state": o.best_state, "epoch": o.best_epoch, "val": o.best_val,
                     "val_curve": list(o.val_curve)},
            "curve": [dict(p) for p in o.curve] if o.curve is not None else None,
            "timings": dict(timer.seconds),
            "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }

    def load_state_dict(self, state: dict[str, Any], timer: SectionTimer) -> None:
        self.method.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.sampler.load_state_dict(state["sampler"])
        restore_rng(state["rng"][self.parallel.rank], self.augment, self.device)
        p, best, o = state["progress"], state["best"], self.outcome
        o.epochs, o.steps, o.images_seen = p["epochs"], p["steps"], p["images_seen"]
        o.resumes = p["resumes"] + 1
        self.epoch_loss = p.get("epoch_loss", math.nan)  # NaN: from a checkpoint without it
        self.step_in_epoch, self.since_best, self.finished = (p["step_in_epoch"],
                                                              p["since_best"], p["finished"])
        o.best_state, o.best_epoch, o.best_val = best["state"], best["epoch"], best["val"]
        o.val_curve = list(best["val_curve"])
        curve = state.get("curve")
        o.curve = [dict(p) for p in curve] if curve is not None else None
        timer.seconds.clear()
        timer.seconds.update(state["timings"])

    # ------------------------------------------------------------------ loop
    def run(self, timer: SectionTimer, progress: bool = True,
            checkpoint: RunCheckpoint | None = None) -> TrainOutcome:
        """Train until the budget's last epoch or early stopping; with ``checkpoint``, save
        after every epoch, and on SIGTERM or Ctrl-C at the next step boundary (then
        :class:`Preempted`)."""
        with StopSignal() as stop:
            while not self.finished:
                if self._train_epoch(timer, progress, stop):
                    self._save(timer, checkpoint)
                    raise Preempted(self._stop_message(checkpoint, stop.signum), stop.signum)
                self._end_epoch(timer, progress)
                self._save(timer, checkpoint)
                if self._any_rank(stop.requested):
                    raise Preempted(self._stop_message(checkpoint, stop.signum), stop.signum)
        return self.outcome

    def _train_epoch(self, timer: SectionTimer, progress: bool, stop: StopSignal) -> bool:
        """The rest of the current epoch's steps; True when asked to stop (a signal) midway."""
        budget, o = self.config.budget, self.outcome
        epoch = o.epochs + 1
        self.method.train()
        bar = tqdm(range(self.step_in_epoch, budget.steps_per_epoch),
                   desc=f"{self.config.key} epoch {epoch}", leave=False,
                   disable=not (progress and self.parallel.is_main))
        for _ in bar:
            section = "train" if o.steps else "first_step"  # warm-up/compile, apart
            with timer.section(section):
                result = parallel_train_step(self.method, self.optimizer, self.train_loader,
                                             self.sampler, budget.meta_batch,
                                             self.config.precision, self.parallel,
                                             stop.requested)
            if not math.isfinite(result.loss):
                raise NonFiniteLossError(
                    f"training loss became {result.loss} at step {o.steps + 1} (epoch {epoch}); "
                    "try a lower learning rate or --precision fp32")
            o.steps += 1
            o.images_seen += result.n_images
            self.epoch_loss += result.loss
            self.step_in_epoch += 1
            bar.set_postfix(loss=f"{result.loss:.3f}")
            # With several processes only the vote summed in the step counts (all agree).
            stop_now = result.stop or (not self.parallel.enabled and stop.requested)
            if stop_now and self.step_in_epoch < budget.steps_per_epoch:
                return True
        return False

    def validate(self) -> float:
        """Mean accuracy on the run's validation episodes (the same every epoch) under the
        run's selection protocol (``select_on``: unified, or the method's native adaptation as
        its reference validates, ``adapt_for_selection``)."""
        budget, config = self.config.budget, self.config
        val_sampler = EpisodeSampler(self.dataset.val, config.ways,
                                     budget.val_shots or config.shots, config.queries,
                                     stream_seed(config.seed, self.val_stream))
        episodes = val_sampler.sample(budget.val_episodes)
        if config.select_on == "native" and self.method.has_native_adaptation:
            accs = sharded_map(lambda part: evaluate_native(
                self.method, self.val_loader, part, precision=config.precision,
                selection=True), episodes, self.parallel)
        else:
            accs = sharded_map(lambda part: evaluate_unified(
                self.method, self.val_loader, part, solver=config.solver, C=config.logreg_c,
                precision=config.precision), episodes, self.parallel)
        return float(np.mean(accs))

    def _end_epoch(self, timer: SectionTimer, progress: bool) -> None:
        """Validation, schedule step, model selection and early stopping."""
        budget, o = self.config.budget, self.outcome
        epoch = o.epochs + 1
        with timer.section("validation"):
            val = self.validate()
        o.val_curve.append(val)
        test = None
        if self.config.test_every and epoch % self.config.test_every == 0:
            with timer.section("test_every"):  # in neither clock: training reads nothing of it
                test = self.test_along_the_way()
        self._record_point(timer, epoch, val, test)
        self.schedule.step(val)
        if val > o.best_val:
            o.best_val, o.best_epoch, self.since_best = val, epoch, 0
            o.best_state = _cpu_state(self.method)
        else:
            self.since_best += 1
        o.epochs, self.step_in_epoch, self.epoch_loss = epoch, 0, 0.0
        if self.on_epoch is not None:
            self.on_epoch(epoch, val)
        if progress and self.parallel.is_main:
            tqdm.write(f"{self.config.key}: epoch {epoch} val {val:.2f}% "
                       f"(best {o.best_val:.2f}% at epoch {o.best_epoch})")
        patience = budget.early_stop_patience
        plateaued = budget.plateau_stop is not None and \
            budget.plateau_stop.has_plateaued(o.val_curve)
        if epoch >= budget.epochs or plateaued or (patience is not None
                                                   and self.since_best >= patience):
            self.finished = True
            if plateaued and progress and self.parallel.is_main:
                tqdm.write(f"{self.config.key}: validation has plateaued after epoch {epoch} "
                           f"({budget.plateau_stop.describe()})")

    def test_along_the_way(self) -> float:
        """``--test-every``: unified-protocol accuracy on the first ``test_every_episodes``
        of the run's test episodes (the same every time; the final test uses all of them).
        Recorded in the learning curve only: selection never reads it, and it consumes no
        random state that training uses (its own episode stream, eval mode, no dropout)."""
        config = self.config
        if self.test_loader is None:
            self.test_loader = EpisodeLoader(
                self.dataset.test, Normalizer(self.dataset.mean, self.dataset.std), self.device)
        sampler = EpisodeSampler(self.dataset.test, config.ways, config.shots, config.queries,
                                 stream_seed(config.seed, "test"))
        episodes = sampler.sample(config.test_every_episodes)
        accs = sharded_map(lambda part: evaluate_unified(
            self.method, self.test_loader, part, solver=config.solver, C=config.logreg_c,
            precision=config.precision), episodes, self.parallel)
        return float(np.mean(accs))

    def _record_point(self, timer: SectionTimer, epoch: int, val: float,
                      test: float | None = None) -> None:
        """The learning curve's point for ``epoch`` (cumulative seconds: the slowest
        process's, as the result's ``train_seconds``; ``--test-every`` time in neither)."""
        o = self.outcome
        train = timer.total("train") + timer.total("first_step")
        run = train + timer.total("validation")
        train, run = (max_over_ranks(train, self.parallel), max_over_ranks(run, self.parallel))
        if o.curve is not None:
            point = {"epoch": epoch, "train_seconds": train, "run_seconds": max(run, train),
                     "images_seen": o.images_seen, "steps": o.steps, "val_accuracy": val}
            if test is not None:
                point.update(test_accuracy=test, test_episodes=self.config.test_every_episodes)
            o.curve.append(point)
        if self.epoch_log is not None:
            world = self.parallel.world_size
            self.epoch_log.log_epoch(EpochNumbers(
                epoch, self.epoch_loss / max(self.step_in_epoch, 1), val,
                self.optimizer.param_groups[0]["lr"], device_hours(train, world),
                device_hours(max(run, train), world), o.steps, o.images_seen, test))

    def _save(self, timer: SectionTimer, checkpoint: RunCheckpoint | None) -> None:
        if checkpoint is None:
            return
        with timer.section("checkpoint"):
            checkpoint.save(self.state_dict(timer))

    def _any_rank(self, flag: bool) -> bool:
        return any(gather_objects(bool(flag), self.parallel))

    def _stop_message(self, checkpoint: RunCheckpoint | None, signum: int) -> str:
        where = (f"checkpoint saved to {checkpoint.path}" if checkpoint is not None
                 else "no checkpoint (checkpoints are off)")
        return (f"{self.config.key}: stopped by {signal_label(signum)} after step "
                f"{self.outcome.steps} (epoch {self.outcome.epochs + 1}); {where}. Rerun the "
                "same command to resume.")


def train(training: Training, dataset: FewShotDataset, config: RunConfig,
          device: torch.device, timer: SectionTimer, progress: bool = True, *,
          checkpoint: RunCheckpoint | None = None, parallel: Parallel = SINGLE,
          epoch_log: EpochLogger | None = None) -> TrainOutcome:
    """The timed training loop with validation-based model selection and early stopping;
    resumes from ``checkpoint`` when it holds one; ``epoch_log`` gets each epoch's numbers."""
    session = TrainSession(training, dataset, config, device, parallel, epoch_log=epoch_log)
    if checkpoint is not None:
        _resume(session, checkpoint, timer)
    return session.run(timer, progress, checkpoint)


def _resume(session: TrainSession, checkpoint: RunCheckpoint, timer: SectionTimer) -> None:
    """Load ``checkpoint`` into ``session`` if it holds one (and say so, timed)."""
    started = time.perf_counter()
    payload = checkpoint.load()
    if payload is None:
        return
    session.load_state_dict(payload, timer)
    seconds = time.perf_counter() - started
    timer.seconds["resume"] += seconds
    o = session.outcome
    if session.parallel.is_main:
        where = ("training had finished; testing" if session.finished else
                 f"epoch {o.epochs + 1}, step {session.step_in_epoch + 1}")
        tqdm.write(f"resumed {session.config.key} from {checkpoint.path} ({where}; "
                   f"{o.steps} steps and {timer.total('train') + timer.total('first_step'):.1f}"
                   f" s of training already done) in {seconds:.2f} s")
