"""Live learning curves: ``bench run --log tensorboard,csv``.

Once per epoch the training loop (:class:`bench.run.session.TrainSession`, rank 0) hands an
:class:`EpochLogger` the epoch's numbers (:class:`EpochNumbers`): the mean training loss over
the epoch's steps, the validation accuracy, the learning rate the epoch trained with, and the
cumulative device-hours (training steps only, the timing rule's; and training plus validation).
The loggers write under ``<out>/logs/<run key>/`` (:func:`log_folder`):

- ``tensorboard``: TensorBoard event files (``torch.utils.tensorboard``; the ``tensorboard``
  package, ``pip install 'bridgebench[tensorboard]'``), one scalar per number, the epoch as
  its step: ``tensorboard --logdir <out>/logs`` shows every run of a sweep as it trains;
- ``csv``: ``epochs.csv``, one row per epoch, rewritten atomically after each.

Logging records and never decides: it changes no number and is not part of a run's identity
(:data:`bench.common.config.RECORDING_OPTIONS`). A run resumed from a checkpoint logs on from the epoch
it resumes at: the first epoch a logger sees replaces anything logged at or after it (an
interrupted run's epochs that its checkpoint did not keep, or an earlier run's with ``--force``:
``purge_step`` for TensorBoard, dropped rows for the CSV), so the curves are those of one
uninterrupted run.
"""
from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol, Sequence

from bench.common.config import LOG_FORMATS
from core.atomic import write_text_atomic

CSV_FILE = "epochs.csv"
INSTALL_TENSORBOARD = "pip install 'bridgebench[tensorboard]' (or tensorboard==2.21.0)"


@dataclass(frozen=True)
class EpochNumbers:
    """What one epoch of training adds to the live curves."""

    epoch: int  # 1-based
    train_loss: float  # mean training loss over the epoch's optimiser steps (rank 0's tasks)
    val_accuracy: float  # percent, the run's selection protocol
    lr: float  # the learning rate the epoch's steps used (the first parameter group's)
    train_device_hours: float  # cumulative: training steps only (the timing rule)
    run_device_hours: float  # cumulative: training and validation
    steps: int  # cumulative optimiser steps
    images_seen: int  # cumulative training images
    test_accuracy: float | None = None  # --test-every epochs only


#: The TensorBoard tag of each number of :class:`EpochNumbers` (the epoch is the step).
TENSORBOARD_TAGS = {"train_loss": "train/loss", "val_accuracy": "val/accuracy",
                    "lr": "train/lr", "train_device_hours": "cost/train_device_hours",
                    "run_device_hours": "cost/run_device_hours",
                    "test_accuracy": "test/accuracy"}


class EpochLogger(Protocol):
    """Receives each epoch's numbers as training goes (rank 0 only)."""

    def log_epoch(self, numbers: EpochNumbers) -> None:
        """Record one epoch; the first call of a logger replaces what an earlier logger of
        the same folder recorded at or after its epoch."""

    def close(self) -> None:
        """Flush and release files."""


def log_folder(out_dir: Path | str, key: str) -> Path:
    """Where the live curves of run ``key`` go: ``<out>/logs/<key>/``."""
    return Path(out_dir) / "logs" / key


def check_formats(formats: Sequence[str]) -> str | None:
    """What keeps ``formats`` from being logged here (an unknown format, TensorBoard not
    installed), in one sentence, or None."""
    unknown = [f for f in formats if f not in LOG_FORMATS]
    if unknown:
        return (f"--log: unknown format {', '.join(map(repr, unknown))}; valid: "
                f"{', '.join(LOG_FORMATS)}")
    if "tensorboard" in formats:
        try:
            import torch.utils.tensorboard  # noqa: F401 (here: tensorboard is optional)
        except ImportError as error:
            return (f"--log tensorboard needs the tensorboard package, which is not installed "
                    f"here ({error}); install it with {INSTALL_TENSORBOARD}, or use --log csv")
    return None


class CsvEpochLog:
    """``epochs.csv``: one row per epoch (:class:`EpochNumbers`' fields; an empty
    ``test_accuracy`` on epochs without a test), rewritten atomically after every epoch."""

    COLUMNS = tuple(f.name for f in fields(EpochNumbers))

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / CSV_FILE
        self.rows: list[dict[str, Any]] | None = None  # read at the first epoch

    def log_epoch(self, numbers: EpochNumbers) -> None:
        if self.rows is None:
            self.rows = [row for row in read_csv_log(self.path)
                         if int(row["epoch"]) < numbers.epoch]
        row = asdict(numbers)
        self.rows.append({k: "" if row[k] is None else row[k] for k in self.COLUMNS})
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, text.getvalue())

    def close(self) -> None:
        pass


def read_csv_log(path: Path) -> list[dict[str, str]]:
    """The rows of an ``epochs.csv`` (none when there is no file)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except FileNotFoundError:
        return []


class TensorBoardEpochLog:
    """TensorBoard scalars (:data:`TENSORBOARD_TAGS`) at step = epoch, flushed after every
    epoch. The writer opens at the first epoch with ``purge_step`` = that epoch, so readers
    hide what earlier writers of the folder logged from it on."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.writer: Any = None

    def log_epoch(self, numbers: EpochNumbers) -> None:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter  # here: tensorboard is optional

            self.writer = SummaryWriter(str(self.folder), purge_step=numbers.epoch)
        values = asdict(numbers)
        for name, tag in TENSORBOARD_TAGS.items():
            if values[name] is not None:
                self.writer.add_scalar(tag, values[name], global_step=numbers.epoch)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class EpochLogs:
    """Several loggers as one (:class:`EpochLogger`)."""

    def __init__(self, loggers: Sequence[EpochLogger]) -> None:
        self.loggers = list(loggers)

    def log_epoch(self, numbers: EpochNumbers) -> None:
        for logger in self.loggers:
            logger.log_epoch(numbers)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


def open_epoch_logs(formats: Sequence[str], folder: Path) -> EpochLogs | None:
    """The loggers of ``formats`` writing into ``folder`` (None when there are none); no file
    is created before the first epoch."""
    makers = {"tensorboard": TensorBoardEpochLog, "csv": CsvEpochLog}
    loggers = [makers[name](folder) for name in formats]
    return EpochLogs(loggers) if loggers else None
