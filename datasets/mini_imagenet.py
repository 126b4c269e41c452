"""mini-ImageNet (Vinyals et al., 2016; Ravi & Larochelle's 64/16/20 class split), 84 px RGB.

Read from either layout researchers have (docs/references.md#datasets):

* learn2learn / MTL (Wang, Zhao & Li, ICML 2021): ``mini-imagenet-cache-{train,validation,
  test}.pkl``, each a dict with ``image_data`` (``N x 84 x 84 x 3``, 0..255) and ``class_dict``
  (class name -> row indices).
* MetaOptNet / RFS (Gidaris & Komodakis' pickles, Python 2, read as latin1):
  ``miniImageNet_category_split_train_phase_train.pickle`` (train),
  ``miniImageNet_category_split_val.pickle`` and ``miniImageNet_category_split_test.pickle``,
  each a dict with ``data`` (uint8 ``N x 84 x 84 x 3``) and ``labels``; class names come from
  ``catname2label`` when the file has it, else are ``<split>:<label id>``.

Labels are ``0..n-1`` in the sorted order of the class names, so both layouts give the same
labels for the same classes. Normalisation: the mean/std all four reference implementations
use (MetaOptNet ``data/mini_imagenet.py``). The whole dataset is 1.3 GB as uint8, small enough
to read directly; a prepared cache (``python -m bench data prepare mini``) only loads faster.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from datasets import DatasetInfo, register_dataset
from datasets.base import DatasetError, FewShotDataset
from datasets.cache import (DatasetSpec, Located, SplitSet, SplitSource, load_files,
                            register_spec, relabel_by_name, split_from_array)
from datasets.readers import Layout, find_layout, load_pickled_dict

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "SPEC", "load", "load_mini_imagenet", "locate"]

#: mini/tiered-ImageNet pixel statistics (docs/references.md#datasets), as fractions of 255.
IMAGENET_MEAN = tuple(v / 255.0 for v in (120.39586422, 115.59361427, 104.54012653))
IMAGENET_STD = tuple(v / 255.0 for v in (70.68188272, 68.27635443, 72.54505529))

L2L = Layout("learn2learn/MTL pickles", ("mini-imagenet-cache-train.pkl",
                                         "mini-imagenet-cache-validation.pkl",
                                         "mini-imagenet-cache-test.pkl"))
GIDARIS = Layout("MetaOptNet/RFS pickles", ("miniImageNet_category_split_train_phase_train.pickle",
                                            "miniImageNet_category_split_val.pickle",
                                            "miniImageNet_category_split_test.pickle"))
SUBDIRS = ("", "mini-imagenet", "miniImageNet", "miniimagenet", "mini_imagenet", "mini",
           "MiniImagenet")
WHERE_TO_GET = (
    "learn2learn pickles: learn2learn.vision.datasets.MiniImagenet(root, mode, download=True) "
    "on a machine with internet, or Google Drive ids train 1I3itTXpXxGV68olxM5roceUMG8itH9Xj, "
    "validation 1KY5e491bkLFqJDp0-UWou3463Mo8AOco, test 1wpmY-hmiJUUlRBkO9ZDCXAcIpHEFdOhD "
    "(`gdown <id>`), or Zenodo record 7978538 (files mini-imagenet-cache-<mode>.pkl)",
    "MetaOptNet pickles: Google Drive id 12V7qi-AjrYi6OoJdYcN_k502BM_jcP8D (MetaOptNet README)",
)


def _l2l_split(path: Path, split: str) -> SplitSource:
    """A learn2learn ``mini-imagenet-cache-*.pkl``: labels follow the sorted class names."""
    data = load_pickled_dict(path, ("image_data", "class_dict"),
                             "a learn2learn mini-ImageNet cache pickle",
                             "a learn2learn mini-ImageNet cache")
    images = _uint8_images(data["image_data"], path)
    labels = np.full(len(images), -1, dtype=np.int64)
    class_dict: dict[str, Any] = data["class_dict"]
    names = sorted(class_dict)
    for k, name in enumerate(names):
        rows = np.asarray(class_dict[name], dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(images)):
            raise DatasetError(f"{path}: class {name!r} lists rows outside 0..{len(images) - 1}")
        if (labels[rows] != -1).any():
            raise DatasetError(f"{path}: some images are listed under two classes")
        labels[rows] = k
    if (labels == -1).any():
        raise DatasetError(f"{path}: {int((labels == -1).sum())} images belong to no class")
    return split_from_array(split, images, labels, names, channels_last=True)


def _gidaris_split(path: Path, split: str) -> SplitSource:
    """A Gidaris/MetaOptNet ``miniImageNet_category_split_*.pickle``."""
    data = load_pickled_dict(path, ("data", "labels"), "a MetaOptNet mini-ImageNet pickle",
                             "a MetaOptNet mini-ImageNet file")
    images = _uint8_images(data["data"], path)
    raw = np.asarray(data["labels"], dtype=np.int64)
    named = {int(v): str(k) for k, v in dict(data.get("catname2label") or {}).items()}
    name_of = {int(i): named.get(int(i), f"{split}:{int(i)}") for i in np.unique(raw)}
    labels, names = relabel_by_name(raw, name_of)
    return split_from_array(split, images, labels, names, channels_last=True)


def _uint8_images(array: Any, path: Path) -> np.ndarray:
    """``N x H x W x 3`` uint8 pixels (float/int arrays holding 0..255 integers accepted)."""
    array = np.asarray(array)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise DatasetError(f"{path}: expected images N x H x W x 3, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    if array.size and (array.min() < 0 or array.max() > 255 or
                       (array.dtype.kind == "f" and not np.all(array == np.round(array)))):
        raise DatasetError(f"{path}: pixels must be integers in 0..255, got {array.dtype} in "
                           f"[{array.min()}, {array.max()}]")
    return array.astype(np.uint8)


_READERS = {L2L.name: _l2l_split, GIDARIS.name: _gidaris_split}


def locate(root: Path) -> Located:
    """Find mini-ImageNet's files under ``root`` (see the module docstring)."""
    layout, folder = find_layout("mini-ImageNet", root, SUBDIRS, (L2L, GIDARIS), WHERE_TO_GET)
    files = tuple(folder / name for name in layout.required)
    reader = _READERS[layout.name]

    def read() -> SplitSet:
        return SplitSet({split: reader(path, split)
                         for split, path in zip(("train", "val", "test"), files)})

    return Located("mini", layout.name, folder, files, read)


SPEC = register_spec(DatasetSpec(
    name="mini", title="mini-ImageNet", standard=(64, 16, 20), mean=IMAGENET_MEAN,
    std=IMAGENET_STD, locate=locate, direct_limit=4 << 30,
    default_dirs=("mini", "mini-imagenet", "miniImageNet", "miniimagenet"),
    where_to_get=WHERE_TO_GET, accepted=(L2L.describe(), GIDARIS.describe()),
))


def load_mini_imagenet(root: Path | str | None = None, *, allow_nonstandard: bool = False,
                       cache: Path | str | None = None) -> FewShotDataset:
    """mini-ImageNet from its prepared cache, else from the pickles under ``root``."""
    return load_files(SPEC, root, allow_nonstandard=allow_nonstandard, cache=cache)


def load(root: Path | None, *, allow_nonstandard: bool = False) -> FewShotDataset:
    """Registry entry point (see :func:`load_mini_imagenet`)."""
    return load_mini_imagenet(root, allow_nonstandard=allow_nonstandard)


register_dataset(
    DatasetInfo(name="mini", load=load,
                description="mini-ImageNet 64/16/20 classes x 600 (learn2learn or MetaOptNet "
                            "pickles, or a prepared cache)",
                benchmark="mini-imagenet", channels=3, image_size=84, classes=SPEC.standard,
                mean=SPEC.mean, std=SPEC.std, train_augmentation="lee2019",
                small_images=False, needs_files=True, efficiency_reference=True),
    "mini-imagenet", "miniimagenet",
)
