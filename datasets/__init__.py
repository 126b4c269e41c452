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
    "TRAIN_AUGMENTATIONS", "by_benchmark", "default_data_root", "efficiency_reference",
    "load_dataset",
    "register_dataset", "registered_info",
]


TRAIN_AUGMENTATIONS = ("lee2019",)
"""Training augmentations a dataset may declare (:mod:`datasets.augment`); None: none."""


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset's registry entry: how to build it and every fact the harness needs about it.

    ``bench/`` reads these facts instead of testing dataset names; a method's own file may
    branch on :attr:`benchmark` (e.g. for its paper's per-dataset settings).
    """

    name: str
    load: Callable[..., FewShotDataset]
    """``load(root, *, allow_nonstandard=False)`` returns the :class:`FewShotDataset`
    (``root``: where its files are; ``allow_nonstandard``: accept data that departs from the
    standard split, such as an empty class folder, with a warning instead of an error)."""
    description: str
    benchmark: str
    """Stable id of the benchmark this dataset is, the name the paper's tables use for it
    (``bench/reference/paper.csv``), e.g. ``"mini-imagenet"``."""
    channels: int
    image_size: int
    classes: tuple[int, int, int]
    """Classes of the standard train/val/test split (MTL's head has one row per train class)."""
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    """Per-channel normalisation (fractions of 255); None: the training split's own pixel
    statistics, computed when the dataset is loaded."""
    train_augmentation: str | None
    """The training augmentation the reference implementations use on it (one of
    :data:`TRAIN_AUGMENTATIONS`, or None for normalisation only)."""
    small_images: bool
    """Small single-channel character images (Omniglot-like, 28 px): the smoke and quick
    budgets train Conv4 on them, ResNet-12 elsewhere."""
    needs_files: bool
    efficiency_reference: bool = False
    """The paper's training-cost comparison (Table 4) was measured on this dataset;
    ``bench speed`` uses it unless told otherwise."""

    def __post_init__(self) -> None:
        if self.train_augmentation not in (None, *TRAIN_AUGMENTATIONS):
            raise ValueError(f"dataset {self.name!r}: unknown training augmentation "
                             f"{self.train_augmentation!r}; valid: None, "
                             f"{', '.join(TRAIN_AUGMENTATIONS)}")

    @property
    def train_classes(self) -> int:
        return self.classes[0]


DATASETS: Registry[DatasetInfo] = Registry("dataset")


def register_dataset(info: DatasetInfo, *aliases: str) -> DatasetInfo:
    DATASETS.register(info.name, *aliases)(info)
    return info


def registered_info(dataset: FewShotDataset) -> DatasetInfo | None:
    """The registry entry of a loaded ``dataset`` (by its name); None for a dataset built
    outside the registry (tests, synthetic data)."""
    return DATASETS.get(dataset.name) if dataset.name in DATASETS else None


def by_benchmark() -> dict[str, str]:
    """Benchmark id (the paper's name, :attr:`DatasetInfo.benchmark`) -> registered name."""
    return {DATASETS.get(name).benchmark: name for name in DATASETS.names()}


def efficiency_reference() -> DatasetInfo:
    """The registered dataset that declares ``efficiency_reference`` (exactly one does)."""
    found = [DATASETS.get(n) for n in DATASETS.names() if DATASETS.get(n).efficiency_reference]
    if len(found) != 1:
        raise LookupError(f"exactly one dataset must declare efficiency_reference=True; "
                          f"found {[info.name for info in found] or 'none'}")
    return found[0]


def load_dataset(name: str, root: Path | str | None = None, *,
                 allow_nonstandard: bool = False) -> FewShotDataset:
    """Build dataset ``name`` (or an alias); ``root`` is where its files are (if it has any);
    ``allow_nonstandard``: accept non-standard data with a warning (``--allow-nonstandard``)."""
    info = DATASETS.get(name)
    root = Path(root).expanduser() if root is not None else None
    if allow_nonstandard:
        return info.load(root, allow_nonstandard=True)
    return info.load(root)


# Importing the modules registers them.
from datasets import glyphs as _glyphs  # noqa: E402,F401
from datasets import omniglot as _omniglot  # noqa: E402,F401
from datasets import mini_imagenet as _mini_imagenet  # noqa: E402,F401
from datasets import tiered_imagenet as _tiered_imagenet  # noqa: E402,F401
from datasets import cifar as _cifar  # noqa: E402,F401
