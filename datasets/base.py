"""The class-split dataset every method trains and tests on.

A :class:`FewShotDataset` holds three :class:`ClassSplit` objects (train/val/test) whose classes
are disjoint. Images stay uint8 ``[N, C, H, W]``; conversion to float and normalisation happen
batched, on the device (see :mod:`datasets.augment`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch


class DatasetError(RuntimeError):
    """Missing, corrupt or inconsistent data; the message says where and what to do."""


@dataclass(frozen=True)
class ClassSplit:
    """One split: uint8 images ``[N, C, H, W]`` and int64 labels ``[N]`` in ``0..n_classes-1``.

    ``class_names[k]`` names label ``k``; names are unique across the splits of a dataset.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    _by_class: tuple[torch.Tensor, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DatasetError(
                f"split {self.name!r}: images must be uint8 [N, C, H, W], got "
                f"{self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise DatasetError(f"split {self.name!r}: {len(self.labels)} labels for "
                               f"{self.images.shape[0]} images")
        labels = self.labels.to(torch.int64)
        object.__setattr__(self, "labels", labels)
        n = len(self.class_names)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n):
            raise DatasetError(f"split {self.name!r}: labels must lie in 0..{n - 1}")
        order = torch.argsort(labels, stable=True)
        counts = torch.bincount(labels, minlength=n).tolist()
        object.__setattr__(self, "_by_class", tuple(torch.split(order, counts)))

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def indices_of_class(self, label: int) -> torch.Tensor:
        """Indices (into ``images``) of every image of class ``label``, ascending."""
        return self._by_class[label]

    def class_sizes(self) -> list[int]:
        return [len(ix) for ix in self._by_class]


@dataclass(frozen=True)
class FewShotDataset:
    """A dataset split by class into train/val/test, plus how to normalise its pixels."""

    name: str
    train: ClassSplit
    val: ClassSplit
    test: ClassSplit
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = ""  # where it came from (path or "generated"), for provenance

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for split in (self.train, self.val, self.test):
            for cname in split.class_names:
                if cname in seen:
                    raise DatasetError(
                        f"{self.name}: class {cname!r} is in both {seen[cname]!r} and "
                        f"{split.name!r}; splits must have disjoint classes"
                    )
                seen[cname] = split.name
        shapes = {tuple(s.images.shape[1:]) for s in (self.train, self.val, self.test)}
        if len(shapes) != 1:
            raise DatasetError(f"{self.name}: splits have different image shapes {shapes}")

    def split(self, name: str) -> ClassSplit:
        try:
            return {"train": self.train, "val": self.val, "test": self.test}[name]
        except KeyError:
            raise ValueError(f"split must be train, val or test, not {name!r}") from None

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[-1])


def default_data_root() -> Path:
    """``$BRIDGEBENCH_DATA`` or ``~/data``: where dataset files are looked for by default."""
    import os

    return Path(os.environ.get("BRIDGEBENCH_DATA", "~/data")).expanduser()
