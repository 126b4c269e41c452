"""Dataset registry: ``load_dataset("glyphs")`` and ``DATASETS.names()``.

Each dataset module registers a :class:`DatasetInfo` with ``register_dataset``. A bad name raises
:class:`core.registry.UnknownNameError` listing the valid names.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.registry import Registry
from datasets.base import ClassSplit, DatasetError, FewShotDataset, default_data_root

__all__ = [
    "ClassSplit", "DatasetError", "DatasetInfo", "DATASETS", "FewShotDataset",
    "load_dataset", "register_dataset", "default_data_root",
]


@dataclass(frozen=True)
class DatasetInfo:
    """How to build one dataset. ``load(root)`` returns a :class:`FewShotDataset`."""

    name: str
    load: Callable[[Path | None], FewShotDataset]
    description: str
    image_size: int
    needs_files: bool


DATASETS: Registry[DatasetInfo] = Registry("dataset")


def register_dataset(info: DatasetInfo, *aliases: str) -> DatasetInfo:
    DATASETS.register(info.name, *aliases)(info)
    return info


def load_dataset(name: str, root: Path | str | None = None) -> FewShotDataset:
    """Build dataset ``name`` (or an alias); ``root`` is where its files are (if it has any)."""
    info = DATASETS.get(name)
    return info.load(Path(root).expanduser() if root is not None else None)


# Importing the modules registers them.
from datasets import glyphs as _glyphs  # noqa: E402,F401
from datasets import omniglot as _omniglot  # noqa: E402,F401
from datasets import mini_imagenet as _mini_imagenet  # noqa: E402,F401
from datasets import tiered_imagenet as _tiered_imagenet  # noqa: E402,F401
from datasets import cifar as _cifar  # noqa: E402,F401
