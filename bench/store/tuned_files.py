"""Reading ``bench tune``'s files for ``bench run --tuned FILE|DIR`` (files from elsewhere are
data: read, size-limited and validated, never a path or a module to import).

A tuned file (:data:`bench.tune.study.TUNED_SCHEMA`) names its method, dataset, ways and shots, and
its best trial's budget fields (``best.settings``, checked as ``--set`` checks them) and method
hyperparameters (``best.hparams``, checked against the method's declaration when a run is
configured). ``--tuned FILE`` applies one file to the runs of its method on its dataset and way
count, at any shot count (so 5-shot runs may reuse a 1-shot study; each such run is noted);
``--tuned DIR`` takes, for every run, the file ``<method>_<dataset>_<w>w<s>s.json`` of exactly
its method, dataset, ways and shots, and refuses a run without one.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.budget import TrainBudget, validate_budget_settings

MAX_TUNED_BYTES = 1_000_000
SCHEMA = "bridgebench.tuned/1"


class TunedError(ValueError):
    """A tuned file (or folder) that cannot be used, with what to do."""


@dataclass(frozen=True)
class TunedSettings:
    """One tuned file's best settings."""

    path: Path
    method: str
    dataset: str
    ways: int
    shots: int
    study: str
    settings: dict[str, Any]
    hparams: dict[str, Any]


def read_tuned_file(path: Path) -> TunedSettings:
    """``path`` checked and read (:class:`TunedError` saying what is wrong)."""
    return _settings(path, _load(path))


def _load(path: Path) -> Any:
    """The JSON of a tuned file no larger than :data:`MAX_TUNED_BYTES`."""
    try:
        if path.stat().st_size > MAX_TUNED_BYTES:
            raise TunedError(f"--tuned {path}: larger than {MAX_TUNED_BYTES} bytes; not a "
                             "tuned file")
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        if isinstance(error, TunedError):
            raise
        raise TunedError(f"--tuned {path}: cannot be read as JSON ({error})") from None


def _settings(path: Path, data: Any) -> TunedSettings:
    """The best settings a tuned file's JSON ``data`` records, checked."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise TunedError(f"--tuned {path}: not a `bench tune` file (schema {SCHEMA!r})")
    try:
        best = data["best"]
        method, dataset = data["method"], data["dataset"]
        ways, shots, study = data["ways"], data["shots"], data["study"]["name"]
        settings, hparams = dict(best["settings"]), dict(best["hparams"])
    except (KeyError, TypeError, ValueError):
        raise TunedError(f"--tuned {path}: missing or malformed fields (method, dataset, "
                         "ways, shots, study.name, best.settings, best.hparams)") from None
    if not all(isinstance(v, str) for v in (method, dataset, study)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in (ways, shots)):
        raise TunedError(f"--tuned {path}: method, dataset and study must be strings, ways and "
                         "shots integers")
    if any(isinstance(v, float) and not math.isfinite(v) for v in hparams.values()):
        raise TunedError(f"--tuned {path}: best.hparams holds a non-finite number")
    try:
        settings = validate_budget_settings(settings)
    except ValueError as error:
        raise TunedError(f"--tuned {path}: best.settings: {error}") from None
    return TunedSettings(path, method, dataset, ways, shots, study, settings, hparams)


@dataclass(frozen=True)
class TunedStudy:
    """One tuned file as ``bench table`` reads it: its best settings, the budget it was tuned
    at, and what the study cost (finished and pruned trials, process CPU-hours)."""

    best: TunedSettings
    budget: str
    trials: int
    cpu_hours: float


def read_tuned_study(path: Path) -> TunedStudy:
    """``path`` read once and checked as :func:`read_tuned_file` checks it, with the study's
    cost (:class:`TunedError` saying what is wrong, whatever the file holds)."""
    data = _load(path)
    best = _settings(path, data)
    problem = TunedError(f"{path}: study.complete/pruned and cost.cpu_hours must be counts and "
                         "a finite number >= 0")
    try:
        study, cost = data.get("study", {}), data.get("cost", {})
        trials = study.get("complete", 0) + study.get("pruned", 0)
        hours = cost.get("cpu_hours")
    except (AttributeError, TypeError):
        raise problem from None
    if not isinstance(trials, int) or not isinstance(hours, (int, float)) \
            or isinstance(hours, bool) or not math.isfinite(hours) or hours < 0:
        raise problem
    return TunedStudy(best, str(data.get("budget", "")), trials, float(hours))


@dataclass
class Tuned:
    """``--tuned``: one file, or a folder's files by name."""

    source: Path
    single: TunedSettings | None = None

    def lookup(self, method: str, dataset: str, ways: int, shots: int) -> TunedSettings:
        if self.single is not None:
            t = self.single
            if (t.method, t.dataset, t.ways) != (method, dataset, ways):
                raise TunedError(f"--tuned {t.path} was tuned for {t.method} on {t.dataset} "
                                 f"{t.ways}-way, not {method} on {dataset} {ways}-way; pass "
                                 "a folder of tuned files, or run the method separately")
            return t
        path = self.source / f"{method}_{dataset}_{ways}w{shots}s.json"
        if not path.is_file():
            raise TunedError(f"--tuned {self.source}: no tuned file for {method} on {dataset} "
                             f"{ways}-way {shots}-shot ({path.name}); run `bench tune` for it, "
                             "or pass another shot count's file itself")
        t = read_tuned_file(path)
        if (t.method, t.dataset, t.ways, t.shots) != (method, dataset, ways, shots):
            raise TunedError(f"--tuned {path}: records {t.method} on {t.dataset} {t.ways}-way "
                             f"{t.shots}-shot, which its name does not say")
        return t

    def apply(self, budget: TrainBudget, method: str, dataset: str, ways: int, shots: int
              ) -> TrainBudget:
        """``budget`` with the tuned budget fields and hyperparameters of this run."""
        t = self.lookup(method, dataset, ways, shots)
        return replace(budget, **t.settings, hparams={**budget.hparams, **t.hparams})

    def notes(self, runs: list[tuple[str, str, int, int]]) -> list[str]:
        """A note per (method, dataset, ways, shots) that takes another shot count's file."""
        t = self.single
        if t is None:
            return []
        return [f"note: {m} {s}-shot uses the settings tuned at {t.shots} shot(s) ({t.path})"
                for m, _, _, s in dict.fromkeys(runs) if s != t.shots]


def load_tuned(source: Path) -> Tuned:
    """``--tuned FILE|DIR``."""
    if source.is_dir():
        return Tuned(source)
    if not source.is_file():
        raise TunedError(f"--tuned {source}: no such file or folder")
    return Tuned(source, read_tuned_file(source))
