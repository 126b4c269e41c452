"""The timing rule (after AlgoPerf's ``train_once``), applied identically to every method.

The device is synchronised before every clock read. Training time counts whole optimiser
steps, including episode sampling, data movement, augmentation and any compile or warm-up;
validation, checkpointing and logging are timed separately and excluded. Training
device-hours = timed training seconds / 3600 x number of devices (on a CPU: CPU-hours,
labelled as such). Run device-hours add the validation seconds: the whole training loop as it
ran, which is what the paper's GPU-hours count (:mod:`bench.run.train_and_test`).
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

TIMING_RULE = (
    "training device-hours = synchronised wall-clock seconds of training steps (sampling, data "
    "movement, augmentation, forward, backward, optimiser; compile and warm-up included) / 3600 "
    "x devices; validation, checkpointing and logging excluded; run device-hours add the "
    "validation seconds"
)


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":  # pragma: no cover - no such device in CI
        torch.mps.synchronize()


class SectionTimer:
    """Accumulates synchronised wall-clock seconds per named section.

    ``clock`` and ``sync`` are injectable so the rule can be tested with a fake clock.
    """

    def __init__(self, device: torch.device | str = "cpu",
                 clock: Callable[[], float] = time.perf_counter,
                 sync: Callable[[torch.device], None] = synchronize) -> None:
        self.device = torch.device(device)
        self.clock = clock
        self.sync = sync
        self.seconds: dict[str, float] = defaultdict(float)

    def now(self) -> float:
        self.sync(self.device)
        return self.clock()

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        start = self.now()
        try:
            yield
        finally:
            self.seconds[name] += self.now() - start

    def total(self, name: str) -> float:
        return float(self.seconds.get(name, 0.0))


def device_hours(train_seconds: float, n_devices: int = 1) -> float:
    return train_seconds / 3600.0 * n_devices


def hours_text(value: float | None) -> str:
    """Device-hours as the tables print them: three significant digits, "–" for none."""
    return "–" if value is None or math.isnan(value) else f"{value:.3g}"
