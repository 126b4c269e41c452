"""``bench tune``: the same hyperparameter search for every method, on validation data only.

Every method gets the same study (docs/findings.md, "A fair comparison"):

- **the same space**: a shared optimiser space (:data:`OPTIMIZERS` with a learning rate drawn
  log-uniformly from :data:`LR_RANGES` per optimiser, SGD always with Nesterov momentum 0.9, and
  a weight decay from :data:`WEIGHT_DECAY`) plus the method's own declared ``search_space``
  (:mod:`core.search`; facts live with their owner);
- **the same budget**: the same number of trials and the same maximum epochs (the budget's,
  ``long`` by default); Optuna's TPE sampler (seeded) proposes each trial and successive halving
  (:class:`optuna.pruners.SuccessiveHalvingPruner`, rungs at ``min_resource x 3^k`` epochs) stops
  a trial whose validation curve is in the bottom two thirds of its rung, except the first
  fifth of the trials, which run every epoch and set each rung's first bar;
- **validation only**: a trial trains on the train split and reads the val split through its own
  episode stream (:data:`TUNING_STREAM`, apart from the runs' own ``val`` stream); nothing here
  touches the test split (a test instruments it). A trial's value is its best validation
  accuracy;
- **its cost**: every trial records its process CPU seconds; the tuned file reports the sum, so
  a method that needs tuning pays for it next to its training cost.

Storage is embedded by default: an Optuna journal file ``<out>/tuned/<stem>.journal``; a killed
study resumes with the same trials when the same command is run again: a trial left running by
a process that no longer exists on this machine is marked failed and run again with the same
parameters, and the sampler's seed for the n-th trial depends only on n, so with ``--jobs 1``
the resumed study proposes what the uninterrupted one would have. ``--storage URL`` (an
Optuna RDB URL) lets processes on several machines share one study; ``--jobs N`` runs N trials
at once on this machine (the order of proposals then depends on timing).

When the study has its trials, ``<out>/tuned/<stem>.json`` records the best settings (budget
fields for ``--set`` and method hyperparameters for ``--hparam``), and
``<stem>.trials.csv`` every trial; ``bench run --tuned`` trains with them
(:mod:`bench.store.tuned_files`).
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import math
import os
import socket
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol

import optuna
from optuna.trial import TrialState

from bench.common.config import RunConfig, canonical_json
from bench.common.provenance import git_state
from bench.common.timing import SectionTimer
from bench.run.session import NonFiniteLossError, Preempted, TrainSession
from bench.run.training import build_training
from bench.sweep.claims import process_alive, process_start
from core.atomic import write_json_atomic, write_text_atomic
from core.budget import with_settings
from core.search import Choice, Range, SearchDim, describe
from methods.plugins import method_class

if TYPE_CHECKING:
    import torch

    from datasets import FewShotDataset

TUNED_SCHEMA = "bridgebench.tuned/1"
#: The validation split's episode stream of tuning trials (bench.run.training.stream_seed).
TUNING_STREAM = "tune"
OPTIMIZERS = ("adam", "radam", "sgd")
#: Learning rates per optimiser: Adam-type steps move a weight by about lr whatever its
#: gradient, SGD's by lr times the gradient, so their useful ranges differ.
LR_RANGES: Mapping[str, Range] = {"adam": Range(1e-4, 1e-2, log=True),
                                  "radam": Range(1e-4, 1e-2, log=True),
                                  "sgd": Range(1e-3, 0.3, log=True)}
WEIGHT_DECAY = Range(1e-6, 1e-3, log=True)
#: SGD as MetaOptNet, R2D2 and ProtoNet train: Nesterov momentum 0.9.
SGD_FIXED: Mapping[str, Any] = {"momentum": 0.9, "nesterov": True}
REDUCTION_FACTOR = 3
HPARAM_PREFIX = "hparam."


def shared_space() -> dict[str, str]:
    """The shared optimiser space in words (for the tuned file and ``bench list``)."""
    space = {"optimizer": Choice(OPTIMIZERS).describe(),
             "weight_decay": WEIGHT_DECAY.describe(),
             "sgd": "Nesterov momentum 0.9"}
    space.update({f"lr ({name})": r.describe() for name, r in LR_RANGES.items()})
    return space


def min_resource(epochs: int) -> int:
    """The first pruning rung: an eighth of the epochs (5 of ``long``'s 40), at least 1."""
    return max(1, epochs // 8)


@dataclass(frozen=True)
class StudySpec:
    """One study: a method on one (dataset, ways, shots), trained with ``base``'s settings
    (its budget with the command line's ``--set``/``--hparam``; seed ``base.seed``) apart from
    what the search proposes. ``fixed`` are hyperparameters given on the command line, which
    the search leaves alone."""

    base: RunConfig
    trials: int
    sampler_seed: int = 0
    fixed: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ValueError(f"--trials must be at least 1, not {self.trials}")

    @property
    def stem(self) -> str:
        b = self.base
        return f"{b.method}_{b.dataset}_{b.ways}w{b.shots}s"

    def space(self) -> dict[str, SearchDim]:
        """The method's declared search space less the hyperparameters fixed by hand."""
        cls = method_class(self.base.method, self.base.method_source)
        return {k: v for k, v in cls.search_space.items() if k not in self.fixed}

    def setup(self) -> dict[str, Any]:
        """Everything that makes two studies the same search (not the number of trials: a
        study may be extended)."""
        return {"settings": self.base.settings(), "seed": self.base.seed,
                "sampler_seed": self.sampler_seed, "shared_space": shared_space(),
                "space": describe(self.space()), "pruner": self.pruner_description()}

    @property
    def study_name(self) -> str:
        digest = hashlib.sha256(canonical_json(self.setup()).encode()).hexdigest()[:8]
        return f"{self.stem}_{self.base.budget.name}_{digest}"

    def pruner_description(self) -> str:
        return (f"successive halving: rungs at {min_resource(self.base.budget.epochs)} x "
                f"{REDUCTION_FACTOR}^k epochs, the top 1/{REDUCTION_FACTOR} of each rung go on; "
                f"the first {self.unpruned_trials()} trials run every epoch")

    def unpruned_trials(self) -> int:
        """Trials that run to the end and set each rung's first bar: a fifth (at least 2)."""
        return max(2, self.trials // 5)

    def startup_trials(self) -> int:
        """Random proposals before TPE models the results: a third of the trials (3 to 10)."""
        return min(10, max(3, self.trials // 3))

    def trial_config(self, params: Mapping[str, Any]) -> RunConfig:
        """The run a trial with Optuna parameters ``params`` trains."""
        settings, hparams = decode(params)
        budget = with_settings(self.base.budget, settings)
        budget = replace(budget, hparams={**budget.hparams, **hparams})
        return replace(self.base, budget=budget)


def _suggest(trial: optuna.Trial, name: str, dim: SearchDim) -> Any:
    if isinstance(dim, Choice):
        return trial.suggest_categorical(name, list(dim.values))
    if dim.integer:
        return trial.suggest_int(name, int(dim.low), int(dim.high), log=dim.log)
    return trial.suggest_float(name, dim.low, dim.high, log=dim.log)


def suggest(trial: optuna.Trial, space: Mapping[str, SearchDim]) -> dict[str, Any]:
    """Draw one trial's parameters: the shared space, then the method's (prefixed
    :data:`HPARAM_PREFIX`, so a hyperparameter never shares a name with a budget field)."""
    optimizer = _suggest(trial, "optimizer", Choice(OPTIMIZERS))
    _suggest(trial, f"lr_{optimizer}", LR_RANGES[optimizer])
    _suggest(trial, "weight_decay", WEIGHT_DECAY)
    for name, dim in space.items():
        _suggest(trial, HPARAM_PREFIX + name, dim)
    return dict(trial.params)


def decode(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Optuna parameters as (budget fields for ``--set``, method hyperparameters)."""
    optimizer = params["optimizer"]
    settings = {"optimizer": optimizer, "lr": float(params[f"lr_{optimizer}"]),
                "weight_decay": float(params["weight_decay"]),
                **(SGD_FIXED if optimizer == "sgd" else {})}
    hparams = {k[len(HPARAM_PREFIX):]: v for k, v in params.items()
               if k.startswith(HPARAM_PREFIX)}
    return settings, hparams


class TrialTrainer(Protocol):
    """Trains one trial's run, calling ``report(epoch, val_accuracy)`` after every epoch (which
    raises ``optuna.TrialPruned`` to stop it), and returns its best validation accuracy."""

    def __call__(self, config: RunConfig, report: Callable[[int, float], None]) -> float: ...


@dataclass
class ValidationTrainer:
    """The real :class:`TrialTrainer`: the run's training loop, validating on the val split's
    :data:`TUNING_STREAM` episodes; no checkpoint, no model file, no test."""

    dataset: FewShotDataset
    device: torch.device

    def __call__(self, config: RunConfig, report: Callable[[int, float], None]) -> float:

        training = build_training(config, self.dataset, self.device)
        session = TrainSession(training, self.dataset, config, self.device,
                               val_stream=TUNING_STREAM, on_epoch=report)
        return session.run(SectionTimer(), progress=False).best_val


class _WithoutFailed:
    """A study whose ``get_trials`` leaves out failed trials: a trial killed with its process
    and run again must not count twice at a pruning rung."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list:

        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states)
                if t.state != TrialState.FAIL]


def _pruner(epochs: int, unpruned: int) -> optuna.pruners.BasePruner:

    class Halving(optuna.pruners.BasePruner):
        """Successive halving over the study's trials that have not failed, the first
        ``unpruned`` trials run to the end.

        Optuna's successive halving cannot pause a trial, so while a rung holds fewer than
        ``reduction_factor`` trials it lets on only one better than all of them: the first
        trial would pass every rung unopposed and every later one would have to beat it, and
        the study's best would often be its first random proposal (seen: 15 of 16 Omniglot
        trials pruned behind trial 0). The first trials therefore run all their epochs; they
        still record their value at every rung, so later trials meet a rung of several."""

        def __init__(self) -> None:
            self.inner = optuna.pruners.SuccessiveHalvingPruner(
                min_resource=min_resource(epochs), reduction_factor=REDUCTION_FACTOR)

        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            pruned = self.inner.prune(_WithoutFailed(study), trial)  # type: ignore[arg-type]
            return pruned and trial.user_attrs.get("position", 0) >= unpruned

    return Halving()


def _sampler(spec: StudySpec, position: int) -> optuna.samplers.BaseSampler:
    """TPE seeded for the ``position``-th trial of the study: the same proposal for the same
    history, whichever process asks and whether or not the study was interrupted."""

    seed = int.from_bytes(hashlib.sha256(f"{spec.sampler_seed}:{position}".encode()).digest()[:4],
                          "little")
    with warnings.catch_warnings():  # multivariate/group are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.startup_trials(),
                                          multivariate=True, group=True)


def journal_storage(path: Path) -> optuna.storages.BaseStorage:
    """The embedded storage: an Optuna journal file (appends under a file lock)."""

    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def open_study(spec: StudySpec, storage: str | Path) -> optuna.Study:
    """The study of ``spec`` in ``storage`` (a journal file path, or an RDB URL), created if
    new."""

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend = journal_storage(storage) if isinstance(storage, Path) else storage
    return optuna.create_study(study_name=spec.study_name, storage=backend,
                               direction="maximize", load_if_exists=True,
                               sampler=_sampler(spec, 0),
                               pruner=_pruner(spec.base.budget.epochs,
                                              spec.unpruned_trials()))


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One process of this machine at a time between proposing and starting a trial."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _owner() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": process_start(pid)}


def recover_stale(study: optuna.Study) -> list[int]:
    """Mark failed every trial left running by a process of this machine that is gone, and
    queue its parameters again (the trial is run again from scratch); the numbers of the
    trials recovered."""

    host, recovered = socket.gethostname(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        if attrs.get("host") != host or "pid" not in attrs:
            continue  # another machine's: its own reruns recover it
        if process_alive(int(attrs["pid"]), attrs.get("pid_start")):
            continue
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        retry = {"retry_of": t.number}
        if "position" in attrs:  # the retry takes the original's place (e.g. unpruned)
            retry["position"] = attrs["position"]
        study.enqueue_trial(dict(t.params), user_attrs=retry)
        recovered.append(t.number)
    return recovered


def _position(study: optuna.Study, trial: optuna.Trial, position: int) -> int:
    """The trial's place in the study: a rerun of a trial that was killed takes the place of the
    one it reruns (so a first, unpruned trial stays unpruned), any other the next place."""
    if "position" in trial.user_attrs:
        return int(trial.user_attrs["position"])
    original = trial.user_attrs.get("retry_of")
    if original is not None:  # queued by a version that did not carry the place over
        return int(study.get_trials(deepcopy=False)[original].user_attrs.get("position",
                                                                              position))
    return position


def counted_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that count towards the study's budget: finished (complete or pruned) and
    running ones; failed trials (killed, and queued again) do not."""

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                    TrialState.RUNNING))


def run_trials(spec: StudySpec, storage: str | Path, trainer: TrialTrainer,
               lock_path: Path, on_trial: Callable[[optuna.trial.FrozenTrial], None] | None
               = None) -> int:
    """Run trials of the study until it has ``spec.trials`` of them (counting other
    processes' too); the number run here."""

    study, space, ran = open_study(spec, storage), spec.space(), 0
    while True:
        with _exclusive(lock_path):
            recover_stale(study)
            position = len(counted_trials(study))
            if position >= spec.trials:
                return ran
            study.sampler = _sampler(spec, position)
            trial = study.ask()
            for key, value in {**_owner(), "position": _position(study, trial, position)}.items():
                trial.set_user_attr(key, value)
            params = suggest(trial, space)
        config = spec.trial_config(params)
        best = {"value": -math.inf}

        def report(epoch: int, val: float) -> None:
            best["value"] = max(best["value"], val)
            trial.report(val, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch} at {val:.2f}%")

        started, cpu = time.perf_counter(), time.process_time()
        state, value = TrialState.COMPLETE, None
        try:
            value = trainer(config, report)
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except NonFiniteLossError as error:  # diverged: a valid, bad outcome
            trial.set_user_attr("diverged", str(error))
            value = best["value"] if math.isfinite(best["value"]) else 100.0 / config.ways
        except Preempted:  # a stop signal: left running; the next run recovers and reruns it
            raise
        except Exception as error:  # a bug or a broken setting: failed, not run again
            trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:500])
            study.tell(trial, state=TrialState.FAIL)
            raise
        trial.set_user_attr("cpu_seconds", time.process_time() - cpu)
        trial.set_user_attr("wall_seconds", time.perf_counter() - started)
        frozen = study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        ran += 1
        if on_trial is not None:
            on_trial(frozen)


# ------------------------------------------------------------------------------ the study's files
def tuned_dir(out: Path) -> Path:
    return Path(out) / "tuned"


def journal_path(out: Path, spec: StudySpec) -> Path:
    return tuned_dir(out) / f"{spec.stem}.journal"


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial (failed ones included, marked): number, state, value, the settings,
    the epochs it reached, its CPU seconds."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": t.number, "state": t.state.name,
                               "value": t.value if t.value is not None else "",
                               "last_epoch": t.last_step if t.last_step is not None else "",
                               "cpu_seconds": t.user_attrs.get("cpu_seconds", ""),
                               "retry_of": t.user_attrs.get("retry_of", ""),
                               "diverged": t.user_attrs.get("diverged", ""),
                               "error": t.user_attrs.get("error", "")}
        if "optimizer" in t.params:
            settings, hparams = decode(t.params)
            row.update(settings)
            row.update({f"hparam.{k}": v for k, v in hparams.items()})
        rows.append(row)
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:

    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def study_summary(spec: StudySpec, study: optuna.Study, storage: str | Path) -> dict[str, Any]:
    """The tuned file's content (:data:`TUNED_SCHEMA`)."""

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    best = max(complete, key=lambda t: (t.value, -t.number))
    settings, hparams = decode(best.params)
    counted = complete + pruned
    cpu = sum(float(t.user_attrs.get("cpu_seconds", 0.0)) for t in counted)
    lost = sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
    sha, dirty = git_state()
    b = spec.base
    return {
        "schema": TUNED_SCHEMA,
        "method": b.method, "dataset": b.dataset, "ways": b.ways, "shots": b.shots,
        "budget": b.budget.name, "seed": b.seed,
        "study": {"name": spec.study_name,
                  "storage": (storage.name if isinstance(storage, Path) else "url"),
                  "trials": spec.trials, "complete": len(complete), "pruned": len(pruned),
                  "failed_and_rerun": lost, "sampler": f"TPE (seed {spec.sampler_seed}, "
                  f"{spec.startup_trials()} random start-up trials, multivariate)",
                  "pruner": spec.pruner_description(),
                  "validation": f"the val split's '{TUNING_STREAM}' episode stream, "
                                f"{b.budget.val_episodes} episodes per epoch"},
        "search_space": {"shared": shared_space(), "method": describe(spec.space())},
        "base_budget": b.settings()["budget"], "hparams_fixed_by_hand": sorted(spec.fixed),
        "best": {"trial": best.number, "val_accuracy": best.value, "settings": settings,
                 "hparams": hparams},
        "cost": {"cpu_seconds": cpu, "cpu_hours": cpu / 3600.0,
                 "note": "process CPU time of the trials counted (a killed trial's is lost)"},
        "trials_csv": f"{spec.stem}.trials.csv",
        "code_version": {"git_sha": sha, "git_dirty": dirty},
    }


def write_study_files(spec: StudySpec, study: optuna.Study, out: Path,
                      storage: str | Path) -> Path:
    """``tuned/<stem>.json`` and ``tuned/<stem>.trials.csv`` (atomically); the JSON's path."""
    folder = tuned_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / f"{spec.stem}.trials.csv", _csv(trial_rows(study)))
    path = folder / f"{spec.stem}.json"
    write_json_atomic(path, study_summary(spec, study, storage))
    return path


def finished(spec: StudySpec, study: optuna.Study) -> bool:
    """The study has its trials, none still running."""

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    return len(done) >= spec.trials and any(t.state == TrialState.COMPLETE for t in done)


def describe_trial(spec: StudySpec, t: optuna.trial.FrozenTrial) -> str:
    settings, hparams = decode(t.params)
    shown = ", ".join(f"{k}={_short(v)}" for k, v in {**settings, **hparams}.items()
                      if k not in SGD_FIXED)
    outcome = (f"{t.value:.2f}%" if t.value is not None and t.state.name == "COMPLETE"
               else f"pruned after epoch {t.last_step}")
    cpu = float(t.user_attrs.get("cpu_seconds", 0.0))
    return f"{spec.stem} trial {t.number}: {outcome} ({shown}; {cpu:.0f} CPU-s)"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
