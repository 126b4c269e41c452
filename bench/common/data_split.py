"""Which class split a result was run on, read from what the result records.

A run records its data as ``data.source`` (:func:`bench.store.checkpoint.dataset_identity`): the
dataset's own description of where its files came from and how its classes were split, such as
Omniglot's "242 characters ...; split 164/15/63: learn2learn's 1100/100/423 proportions
scaled ..." or a prepared cache's "NON-STANDARD split: 164/15/63 classes (train/val/test)
instead of the standard 1100/100/423". The tables name a split that is not the dataset's
standard one (:attr:`datasets.DatasetInfo.classes`) next to the dataset ("omniglot (242-class
subset)"), so a number on a subset never reads as one on the benchmark. Nothing here names a
dataset: the standard split is the one the dataset declares.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from datasets import DATASETS

#: "split 164/15/63", "split: 164/15/63", "classes 256/64/128": the first train/val/test
#: class counts a source names.
_COUNTS = re.compile(r"\b(?:split|classes):? (\d+)/(\d+)/(\d+)")
_NON_STANDARD = "NON-STANDARD"


def recorded_counts(source: str) -> tuple[int, int, int] | None:
    """The train/val/test class counts a data ``source`` names first, or None."""
    found = _COUNTS.search(source or "")
    return tuple(int(n) for n in found.groups()) if found else None  # type: ignore[return-value]


def split_label(result: Mapping[str, Any]) -> str:
    """"" when the result's data is its dataset's standard split (or says nothing about its
    split); else what it is: "242-class subset" (fewer classes in all), "1200/200/223-class
    split" (as many or more, split otherwise), or "non-standard split" (the source says so
    without counts)."""
    data = result.get("data") or {}
    source = str(data.get("source", "") if isinstance(data, Mapping) else "")
    name = (result.get("config") or {}).get("dataset")
    standard = tuple(DATASETS.get(name).classes) if name in DATASETS else None
    counts = recorded_counts(source)
    if counts is not None and standard is not None and counts != standard:
        if sum(counts) < sum(standard):
            return f"{sum(counts)}-class subset"
        return f"{'/'.join(map(str, counts))}-class split"
    if _NON_STANDARD in source:
        return "non-standard split"
    return ""


def dataset_label(dataset: str, split: str | None) -> str:
    """``dataset``, with its non-standard ``split`` in brackets where there is one."""
    return f"{dataset} ({split})" if isinstance(split, str) and split else str(dataset)
