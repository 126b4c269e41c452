"""Scripted stand-ins for ``bench tune``'s trainer: validation curves that depend only on a
trial's parameters, so studies run in milliseconds and their outcome is known. Also run as a
script (``python tune_fakes.py OUT TRIALS [SLEEP]``) for the tests that kill or race processes.
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]


def curve_value(config, epoch: int) -> float:
    """Validation accuracy after ``epoch``: best near lr = 3e-3, rising with the epochs."""
    distance = abs(math.log10(config.budget.lr) - math.log10(3e-3))
    return 20.0 + 70.0 * (1.0 - math.exp(-epoch / 2.0)) / (1.0 + distance)


class ScriptedTrainer:
    """A :class:`bench.tune.study.TrialTrainer` following :func:`curve_value`; with ``log``, each trial
    writes a file named by its learning rate and this process (to count who ran what); with
    ``sleep``, each epoch takes that long (so a test can kill a trial midway)."""

    def __init__(self, log: Path | None = None, sleep: float = 0.0) -> None:
        self.log, self.sleep = log, sleep

    def __call__(self, config, report: Callable[[int, float], None]) -> float:
        if self.log is not None:
            self.log.mkdir(parents=True, exist_ok=True)
            (self.log / f"{os.getpid()}-{config.budget.lr!r}").write_text("started")
        best = -math.inf
        for epoch in range(1, config.budget.epochs + 1):
            time.sleep(self.sleep)
            value = curve_value(config, epoch)
            best = max(best, value)
            report(epoch, value)
        return best


def spec(trials: int):
    """A study of MTL on glyphs at the smoke budget stretched to 9 epochs (rungs at 1, 3, 9)."""
    from bench.common.config import RunConfig, resolve_budget
    from bench.tune.study import StudySpec
    from core.budget import with_settings

    budget = with_settings(resolve_budget("smoke", "mtl", "glyphs", 1), {"epochs": 9})
    return StudySpec(RunConfig("mtl", "glyphs", 5, 1, 0, budget), trials)


if __name__ == "__main__":  # python tune_fakes.py OUT TRIALS [SLEEP]
    sys.path.insert(0, str(REPO))
    from bench.tune.study import journal_path, run_trials

    out, trials = Path(sys.argv[1]), int(sys.argv[2])
    sleep = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    study = spec(trials)
    run_trials(study, journal_path(out, study), ScriptedTrainer(out / "log", sleep),
               out / "tuned" / "test.lock")
