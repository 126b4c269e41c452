"""One run as a job for a process of its own (``--isolate``, ``--jobs N``, ``--slurm``): what the
process needs to run it, and the error that stops the whole sweep."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common.config import RunConfig
from bench.store.results import Existing, existing_result, result_path


class SweepStopped(RuntimeError):
    """An isolated run's process reported a problem that stops the whole sweep."""


@dataclass(frozen=True)
class RunJob:
    """Everything a process of its own needs to run one run (JSON- and pickle-friendly)."""

    config: dict[str, Any]  # RunConfig.to_dict()
    out: str
    data_root: str | None = None
    device: str = "auto"
    force: bool = False
    restart: bool = False
    keep_checkpoints: bool = False
    save_model: bool = True  # write the selected model to <out>/models (--no-save-model)
    progress: bool = True
    claim: bool = True  # False when the parent process holds the claim (--isolate, --jobs)
    announce_stop: bool = True  # False when the parent says where the checkpoints are
    data_fingerprint: str | None = None  # the dataset's, as the launching process saw it
    allow_nonstandard: bool = False  # --allow-nonstandard: non-standard data accepted

    @property
    def key(self) -> str:
        return RunConfig.from_dict(self.config).key

    def existing(self, out_dir: Path) -> "Existing":
        """What the job's result file holds (:func:`bench.store.results.existing_result`)."""
        return existing_result(result_path(out_dir, self.key), RunConfig.from_dict(self.config),
                               self.data_fingerprint)
