"""tiered-ImageNet (Ren et al., ICLR 2018): 608 classes in 34 categories, 351/97/160 split.

84 px RGB, 779,165 images: 16.5 GB as uint8, so it is always used through the prepared,
memory-mapped cache (``python -m bench data prepare tiered``); preparing streams the images
one at a time (docs/references.md#datasets):

* learn2learn: ``tiered-imagenet/{train,val,test}_images_png.pkl`` (a pickled list of PNG
  byte strings, or of 1-D uint8 arrays holding them) with ``{split}_labels.pkl`` (a dict; the
  ``label_specific`` ids, class names from ``label_specific_str`` when present). The list is
  walked item by item (:func:`datasets.readers.stream_pickled_list`) and decoded in batches
  on a thread pool.
* MetaOptNet / RFS: ``{train,val,test}_images.npz`` (array ``images``, ``N x 84 x 84 x 3``)
  with ``{split}_labels.pkl`` (``labels`` or ``label_specific``); the array is read from the
  zip member in row chunks.

Without class names, classes are named ``<split>:<label id>``. Labels are ``0..n-1`` in the
sorted order of the class names. Normalisation: the mini-ImageNet constants (all four
reference implementations use them for tiered too).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from datasets import DatasetInfo, register_dataset
from datasets.base import DatasetError, FewShotDataset
from datasets.cache import (DatasetSpec, Located, Sink, SplitSet, SplitSource, load_files,
                            register_spec, relabel_by_name)
from datasets.mini_imagenet import IMAGENET_MEAN, IMAGENET_STD
from datasets.readers import (Layout, decode_image, find_layout, iter_npz_rows, load_pickle,
                              stream_pickled_list)

__all__ = ["SPEC", "load", "load_tiered_imagenet", "locate"]

_SPLITS = ("train", "val", "test")
L2L = Layout("learn2learn PNG pickles",
             tuple(f"{s}_{kind}.pkl" for s in _SPLITS for kind in ("images_png", "labels")))
MON = Layout("MetaOptNet/RFS npz",
             tuple(f for s in _SPLITS for f in (f"{s}_images.npz", f"{s}_labels.pkl")))
SUBDIRS = ("tiered-imagenet", "", "tieredImageNet", "tiered_imagenet", "tiered",
           "tiered-imagenet/tiered-imagenet")
WHERE_TO_GET = (
    "learn2learn files: learn2learn.vision.datasets.TieredImagenet(root, mode, download=True) "
    "on a machine with internet (Zenodo record 7978538, files tiered-imagenet-*), or the "
    "Google Drive tar 1g1aIDy2Ar_MViF2gDXFYDBTR-HYecV07 (12 GB; extract with `tar xf`)",
    "MetaOptNet npz files: Google Drive id 1nVGCTd9ttULRXFezh4xILQ9lUkg0WZCG (MetaOptNet README)",
)
_DECODE_BATCH = 256  # encoded images decoded at once (memory: a few MB)
NPZ_CHUNK_BYTES = 64 << 20  # rows of an npz read at once


def _labels(path: Path, split: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels (0..n-1, by sorted class name) and class names from a ``*_labels.pkl``."""
    data = load_pickle(path, "a tiered-ImageNet labels pickle")
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a dict of labels, found {type(data).__name__}")
    key = next((k for k in ("label_specific", "labels") if k in data), None)
    if key is None:
        raise DatasetError(f"{path}: expected a 'label_specific' or 'labels' entry, found "
                           f"{sorted(data)}")
    raw = np.asarray(data[key], dtype=np.int64).reshape(-1)
    names = data.get("label_specific_str") if key == "label_specific" else None
    ids = np.unique(raw)
    if names is not None and len(names) > int(ids.max(initial=-1)):
        name_of = {int(i): str(names[int(i)]) for i in ids}
    else:
        name_of = {int(i): f"{split}:{int(i)}" for i in ids}
    return relabel_by_name(raw, name_of)


def _png_stream(path: Path, workers: int) -> Any:
    """``stream(sink)`` over a pickled list of encoded images: decoded in batches on a thread
    pool (PIL releases the GIL), handed on in order, one batch alive at a time."""
    def stream(sink: Sink) -> None:
        pending: list[tuple[int, Any]] = []
        with ThreadPoolExecutor(max_workers=workers) as pool:
            def flush() -> None:
                pixels = list(pool.map(lambda item: decode_image(item[1], f"{path} item "
                                                                 f"{item[0]}"), pending))
                pending.clear()
                shapes = {p.shape for p in pixels}
                if len(shapes) != 1:
                    raise DatasetError(f"{path}: images of different sizes {sorted(shapes)}")
                sink(np.stack(pixels).transpose(0, 3, 1, 2))

            def collect(index: int, item: Any) -> None:
                pending.append((index, item))
                if len(pending) == _DECODE_BATCH:
                    flush()

            stream_pickled_list(path, collect, "a pickled list of PNG images "
                                               "(learn2learn tiered-ImageNet)")
            if pending:
                flush()
    return stream


def _npz_stream(path: Path) -> Any:
    """``stream(sink)`` over the ``images`` array of an npz, in row chunks."""
    def stream(sink: Sink) -> None:
        for rows in iter_npz_rows(path, "images", NPZ_CHUNK_BYTES):
            if rows.ndim != 4 or rows.dtype != np.uint8 or 3 not in (rows.shape[1], rows.shape[3]):
                raise DatasetError(f"{path}: expected uint8 images N x H x W x 3, got "
                                   f"{rows.dtype} {rows.shape}")
            sink(rows.transpose(0, 3, 1, 2) if rows.shape[3] == 3 else rows)
    return stream


def locate(root: Path, workers: int | None = None) -> Located:
    """Find tiered-ImageNet's files under ``root`` (see the module docstring)."""
    layout, folder = find_layout("tiered-ImageNet", root, SUBDIRS, (L2L, MON), WHERE_TO_GET)
    files = tuple(folder / name for name in layout.required)
    workers = workers or min(8, os.cpu_count() or 1)

    def read() -> SplitSet:
        splits = {}
        for split in _SPLITS:
            labels, names = _labels(folder / f"{split}_labels.pkl", split)
            if layout is L2L:
                stream = _png_stream(folder / f"{split}_images_png.pkl", workers)
            else:
                stream = _npz_stream(folder / f"{split}_images.npz")
            images = f"{split}_images_png.pkl" if layout is L2L else f"{split}_images.npz"
            splits[split] = SplitSource(split, labels, names, stream,
                                        origin=f"{folder / images} with {split}_labels.pkl")
        return SplitSet(splits)

    return Located("tiered", layout.name, folder, files, read)


SPEC = register_spec(DatasetSpec(
    name="tiered", title="tiered-ImageNet", standard=(351, 97, 160), mean=IMAGENET_MEAN,
    std=IMAGENET_STD, locate=locate, direct_limit=1 << 30,
    default_dirs=("tiered", "tiered-imagenet", "tieredImageNet"),
    where_to_get=WHERE_TO_GET, accepted=(L2L.describe(), MON.describe()),
))


def load_tiered_imagenet(root: Path | str | None = None, *, allow_nonstandard: bool = False,
                         cache: Path | str | None = None) -> FewShotDataset:
    """tiered-ImageNet from its prepared (memory-mapped) cache; reading the files directly is
    only done when they are under 1 GB (small subsets)."""
    return load_files(SPEC, root, allow_nonstandard=allow_nonstandard, cache=cache)


def load(root: Path | None, *, allow_nonstandard: bool = False) -> FewShotDataset:
    """Registry entry point (see :func:`load_tiered_imagenet`)."""
    return load_tiered_imagenet(root, allow_nonstandard=allow_nonstandard)


register_dataset(
    DatasetInfo(name="tiered", load=load,
                description="tiered-ImageNet 351/97/160 classes (learn2learn PNG pickles or "
                            "MetaOptNet npz, used through a prepared memory-mapped cache)",
                benchmark="tiered-imagenet", channels=3, image_size=84, classes=SPEC.standard,
                mean=SPEC.mean, std=SPEC.std, train_augmentation="lee2019",
                small_images=False, needs_files=True),
    "tiered-imagenet", "tieredimagenet",
)
