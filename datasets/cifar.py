"""CIFAR-FS (Bertinetto et al., ICLR 2019) and FC100 (Oreshkin et al., NeurIPS 2018): 32 px
few-shot splits of CIFAR-100's 100 classes x 600 images.

* CIFAR-FS: 64/16/20 classes drawn at random (the ``splits/bertinetto/*.txt`` lists of the
  ``cifar100.zip`` learn2learn uses).
* FC100: split by superclass, 12/4/4 superclasses = 60/20/20 classes, so train and test
  share no superclass.

The standard class lists are kept in this repository (``datasets/splits/``): CIFAR-FS as
fine class names, FC100 as superclass names, and ``cifar100_classes.txt`` (every fine class
with its superclass, in CIFAR-100 label-id order). Accepted layouts (docs/references.md#datasets):

* MetaOptNet pickles ``CIFAR_FS_{train,val,test}.pickle`` / ``FC100_{train,val,test}.pickle``
  (``data`` N x 32 x 32 x 3, ``labels`` = CIFAR-100 fine label ids), also RFS's renamed copies
  ``CIFAR-FS/{train,val,test}.pickle`` and ``FC100/{train,val,test}.pickle``;
* CIFAR-FS only: learn2learn's folder layout ``cifar100/data/<class>/*.png`` with
  ``cifar100/splits/bertinetto/{train,val,test}.txt``;
* raw CIFAR-100 as torchvision downloads it, ``cifar-100-python/{train,test,meta}``, split by
  the repository's lists (train images first, then test images, in file order).
  ``python -m bench data prepare cifar-fs --download`` fetches it through torchvision.

Classes are named by their CIFAR-100 fine label names, so every layout gives the same labels
(``0..n-1`` in sorted name order); a layout whose classes differ from the standard lists is
refused unless ``allow_nonstandard``. Normalisation: MetaOptNet's CIFAR-FS/FC100 constants
(mean [129.378, 124.106, 112.478]/255, std [68.209, 65.431, 70.459]/255); RFS/MTL use the same
statistics rounded to four digits (docs/references.md#datasets).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import numpy as np

from datasets import DatasetInfo, register_dataset
from datasets.base import DatasetError, FewShotDataset
from datasets.cache import (DatasetSpec, Located, Log, Sink, SplitSet, SplitSource, load_files,
                            register_spec, relabel_by_name, split_from_array)
from datasets.readers import Layout, decode_image, find_layout, load_pickle, load_pickled_dict

__all__ = [
    "CIFAR_MEAN", "CIFAR_STD", "CIFAR_FS_SPEC", "FC100_SPEC", "cifar100_classes",
    "download_cifar100", "load_cifar_fs", "load_fc100", "standard_classes",
]

CIFAR_MEAN = tuple(v / 255.0 for v in (129.37731888, 124.10583864, 112.47758569))
CIFAR_STD = tuple(v / 255.0 for v in (68.20947949, 65.43124043, 70.45866994))
SPLIT_DIR = Path(__file__).with_name("splits")
_SPLITS = ("train", "val", "test")

RAW = Layout("raw CIFAR-100 (torchvision's cifar-100-python)",
             ("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"))
RAW_INNER = Layout("raw CIFAR-100 (inside cifar-100-python)", ("train", "test", "meta"))
FOLDER = Layout("learn2learn CIFAR-FS folders (cifar100.zip)",
                ("cifar100/data", *(f"cifar100/splits/bertinetto/{s}.txt" for s in _SPLITS)))
FOLDER_INNER = Layout("learn2learn CIFAR-FS folders (inside cifar100/)",
                      ("data", *(f"splits/bertinetto/{s}.txt" for s in _SPLITS)))
MON_FS = Layout("MetaOptNet CIFAR-FS pickles", tuple(f"CIFAR_FS_{s}.pickle" for s in _SPLITS))
MON_FC = Layout("MetaOptNet/learn2learn FC100 pickles", tuple(f"FC100_{s}.pickle" for s in _SPLITS))
RFS_FS = Layout("RFS CIFAR-FS pickles", tuple(f"CIFAR-FS/{s}.pickle" for s in _SPLITS))
RFS_FC = Layout("RFS FC100 pickles", tuple(f"FC100/{s}.pickle" for s in _SPLITS))
GENERIC = Layout("RFS pickles (inside CIFAR-FS/ or FC100/)", tuple(f"{s}.pickle" for s in _SPLITS))

RAW_SOURCE = ("raw CIFAR-100: `python -m bench data prepare {name} --root DIR --download` "
              "(torchvision), or https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz "
              "extracted under DIR (`tar xzf`)")
CIFAR_FS_WHERE = (
    RAW_SOURCE.format(name="cifar-fs"),
    "learn2learn folders: cifar100.zip from Zenodo record 7978538 or Google Drive id "
    "1pTsCCMDj45kzFYgrnO67BWVbKs48Q3NI (unzip it)",
    "MetaOptNet pickles: Google Drive id 1GjGMI0q3bgcpcB_CjI40fX54WgLPuTpS",
)
FC100_WHERE = (
    RAW_SOURCE.format(name="fc100"),
    "FC100 pickles: fc100.zip from Zenodo record 7978538, Google Drive id "
    "1_ZsLyqI487NRDQhwvI7rg86FK3YAZvz1 or Dropbox s/ftsjuwsu6lfp0fz/FC100.zip (unzip it)",
)


# ------------------------------------------------------------------------ the standard splits

def _read_list(name: str) -> tuple[str, ...]:
    path = SPLIT_DIR / name
    lines = (line.strip() for line in path.read_text().splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


@functools.cache
def cifar100_classes() -> tuple[tuple[str, ...], dict[str, str]]:
    """CIFAR-100's fine class names in label-id order, and each one's superclass."""
    pairs = [line.split() for line in _read_list("cifar100_classes.txt")]
    if len(pairs) != 100 or any(len(p) != 2 for p in pairs):
        raise DatasetError(f"{SPLIT_DIR / 'cifar100_classes.txt'} must have 100 lines "
                           f"'<fine name> <superclass>'")
    return tuple(p[0] for p in pairs), {p[0]: p[1] for p in pairs}


@functools.cache
def standard_classes(dataset: str, split: str) -> tuple[str, ...]:
    """The fine class names of ``split`` in the standard ``dataset`` ("cifar-fs"/"fc100")
    split, sorted."""
    if dataset == "cifar-fs":
        return tuple(sorted(_read_list(f"cifarfs_{split}.txt")))
    if dataset == "fc100":
        supers = set(_read_list(f"fc100_{split}.txt"))
        _, superclass = cifar100_classes()
        return tuple(sorted(c for c, s in superclass.items() if s in supers))
    raise ValueError(f"dataset must be cifar-fs or fc100, not {dataset!r}")


def _membership_problem(dataset: str, split: str, names: set[str]) -> str | None:
    standard = set(standard_classes(dataset, split))
    if names == standard:
        return None
    extra, missing = sorted(names - standard), sorted(standard - names)
    return (f"{split} classes differ from the standard {dataset} {split} split (not in it: "
            f"{', '.join(extra[:5]) or 'none'}{' ...' if len(extra) > 5 else ''}; missing: "
            f"{', '.join(missing[:5]) or 'none'}{' ...' if len(missing) > 5 else ''})")


# ----------------------------------------------------------------------------------- pickles

def _read_pickled_split(path: Path, title: str) -> tuple[np.ndarray, np.ndarray]:
    data = load_pickled_dict(path, ("data", "labels"), f"a {title} pickle", f"a {title} file")
    images = np.asarray(data["data"])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DatasetError(f"{path}: expected uint8 images N x 32 x 32 x 3, got {images.dtype} "
                           f"{images.shape}")
    return images, np.asarray(data["labels"], dtype=np.int64).reshape(-1)


def _are_cifar_ids(id_sets: list[set[int]]) -> bool:
    """Whether per-split label ids look like CIFAR-100 fine ids: within 0..99, disjoint
    across splits, and not simply consecutive blocks 0..a-1, a..b-1, ... (a relabelling)."""
    every = [i for ids in id_sets for i in ids]
    if not every or min(every) < 0 or max(every) > 99 or len(every) != len(set(every)):
        return False
    start, blocks = 0, True
    for ids in id_sets:
        blocks &= ids == set(range(start, start + len(ids)))
        start += len(ids)
    return not blocks


def _pickled_reader(dataset: str, title: str, files: tuple[Path, ...]) -> Callable[[], SplitSet]:
    def read() -> SplitSet:
        arrays = {s: _read_pickled_split(p, title) for s, p in zip(_SPLITS, files)}
        id_sets = [set(np.unique(arrays[s][1]).tolist()) for s in _SPLITS]
        fine_names, _ = cifar100_classes()
        problems, notes, splits = [], [], {}
        cifar_ids = _are_cifar_ids(id_sets)
        if not cifar_ids:
            notes.append("labels are not CIFAR-100 class ids, so the classes were not checked "
                         "against the standard lists; classes are named <split>:<label>")
        for split, ids in zip(_SPLITS, id_sets):
            images, raw = arrays[split]
            name_of = {i: fine_names[i] if cifar_ids else f"{split}:{i}" for i in ids}
            if cifar_ids:
                problem = _membership_problem(dataset, split, set(name_of.values()))
                problems += [problem] if problem else []
            labels, names = relabel_by_name(raw, name_of)
            splits[split] = split_from_array(split, images, labels, names, channels_last=True)
        return SplitSet(splits, tuple(problems), tuple(notes))
    return read


# ------------------------------------------------------------------- learn2learn folder layout

def _folder_split(data_dir: Path, txt: Path, split: str) -> SplitSource:
    names = sorted({line.strip() for line in txt.read_text().splitlines() if line.strip()})
    files: list[list[Path]] = []
    for name in names:
        folder = data_dir / name
        pngs = sorted(folder.glob("*.png")) if folder.is_dir() else []
        if not pngs:
            raise DatasetError(f"{txt} lists class {name!r} but {folder} has no PNG images")
        files.append(pngs)
    labels = np.repeat(np.arange(len(names)), [len(f) for f in files])

    def stream(sink: Sink) -> None:
        for pngs in files:
            pixels = [decode_image(p.read_bytes(), str(p)) for p in pngs]
            if len({p.shape for p in pixels}) != 1:
                raise DatasetError(f"{pngs[0].parent}: images of different sizes")
            sink(np.stack(pixels).transpose(0, 3, 1, 2))

    return SplitSource(split, labels, tuple(names), stream)


def _folder_reader(files: tuple[Path, ...]) -> Callable[[], SplitSet]:
    data_dir, txts = files[0], files[1:]

    def read() -> SplitSet:
        splits = {s: _folder_split(data_dir, txt, s) for s, txt in zip(_SPLITS, txts)}
        problems = [p for s in _SPLITS
                    if (p := _membership_problem("cifar-fs", s, set(splits[s].class_names)))]
        return SplitSet(splits, tuple(problems))
    return read


# ------------------------------------------------------------------------------ raw CIFAR-100

def _raw_batch(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    batch = load_pickle(path, "a CIFAR-100 python batch")
    needed = ("data", "fine_labels", "coarse_labels")
    if not isinstance(batch, dict) or any(k not in batch for k in needed):
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DatasetError(f"{path} is not a CIFAR-100 python batch: expected keys "
                           f"{', '.join(needed)}, found {keys}")
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"{path}: expected uint8 data N x 3072, got {data.dtype} {data.shape}")
    return (data.reshape(-1, 3, 32, 32), np.asarray(batch["fine_labels"], dtype=np.int64),
            np.asarray(batch["coarse_labels"], dtype=np.int64))


def _check_raw_meta(path: Path, fine: np.ndarray, coarse: np.ndarray) -> None:
    """The files' class names and superclasses must be the repository's."""
    meta = load_pickle(path, "the CIFAR-100 meta pickle")
    fine_names, superclass = cifar100_classes()
    if not isinstance(meta, dict) or tuple(meta.get("fine_label_names", ())) != fine_names:
        raise DatasetError(f"{path}: its fine_label_names differ from "
                           f"{SPLIT_DIR / 'cifar100_classes.txt'}; is this CIFAR-100?")
    coarse_names = list(meta.get("coarse_label_names", ()))
    pairs = set(zip(fine.tolist(), coarse.tolist()))
    for f, c in pairs:
        if c >= len(coarse_names) or coarse_names[c] != superclass[fine_names[f]]:
            raise DatasetError(f"{path.parent}: class {fine_names[f]!r} has superclass "
                               f"{coarse_names[c] if c < len(coarse_names) else c!r}, the "
                               f"repository says {superclass[fine_names[f]]!r}")


def _raw_reader(dataset: str, files: tuple[Path, ...]) -> Callable[[], SplitSet]:
    def read() -> SplitSet:
        parts = [_raw_batch(p) for p in files[:2]]
        images = np.concatenate([p[0] for p in parts])
        fine = np.concatenate([p[1] for p in parts])
        _check_raw_meta(files[2], fine, np.concatenate([p[2] for p in parts]))
        fine_names, _ = cifar100_classes()
        splits = {}
        for split in _SPLITS:
            ids = [fine_names.index(name) for name in standard_classes(dataset, split)]
            rows = np.flatnonzero(np.isin(fine, ids))
            labels, names = relabel_by_name(fine[rows], {i: fine_names[i] for i in ids})
            splits[split] = split_from_array(split, images[rows], labels, names,
                                             channels_last=False)
        return SplitSet(splits, notes=(f"split by the repository's {dataset} class lists "
                                       f"({SPLIT_DIR})",))
    return read


# ------------------------------------------------------------------------------------ locating

def _locate(dataset: str, title: str, root: Path, subdirs: tuple[str, ...],
            layouts: tuple[Layout, ...], where: tuple[str, ...]) -> Located:
    layout, folder = find_layout(title, root, subdirs, layouts, where)
    files = tuple(folder / name for name in layout.required)
    if layout in (RAW, RAW_INNER):
        split_files = [SPLIT_DIR / "cifar100_classes.txt"]
        split_files += [SPLIT_DIR / f"{'cifarfs' if dataset == 'cifar-fs' else 'fc100'}_{s}.txt"
                        for s in _SPLITS]
        return Located(dataset, layout.name, folder, files + tuple(split_files),
                       _raw_reader(dataset, files))
    if layout in (FOLDER, FOLDER_INNER):
        return Located(dataset, layout.name, folder, files, _folder_reader(files))
    return Located(dataset, layout.name, folder, files, _pickled_reader(dataset, title, files))


def locate_cifar_fs(root: Path) -> Located:
    """Find CIFAR-FS's files under ``root`` (see the module docstring)."""
    return _locate("cifar-fs", "CIFAR-FS", root,
                   ("", "cifarfs", "cifar-fs", "CIFAR-FS", "CIFAR_FS", "cifar100", "cifar"),
                   (MON_FS, RFS_FS, FOLDER, FOLDER_INNER, RAW, RAW_INNER, GENERIC),
                   CIFAR_FS_WHERE)


def locate_fc100(root: Path) -> Located:
    """Find FC100's files under ``root`` (see the module docstring)."""
    return _locate("fc100", "FC100", root, ("", "FC100", "fc100", "cifar100", "cifar"),
                   (MON_FC, RFS_FC, RAW, RAW_INNER, GENERIC), FC100_WHERE)


def download_cifar100(root: Path, log: Log = print) -> None:
    """Fetch raw CIFAR-100 into ``root/cifar-100-python`` with torchvision (checksummed)."""
    import torchvision.datasets

    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    log(f"downloading CIFAR-100 with torchvision into {root / 'cifar-100-python'}")
    try:
        for train in (True, False):
            torchvision.datasets.CIFAR100(str(root), train=train, download=True)
    except Exception as exc:  # network and archive errors come in many types
        raise DatasetError(
            f"downloading CIFAR-100 into {root} failed ({type(exc).__name__}: {exc}). Download "
            f"https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz yourself and extract it "
            f"there (`tar xzf cifar-100-python.tar.gz`).") from exc


def _spec(name: str, title: str, standard: tuple[int, int, int],
          locate: Callable[[Path], Located], default_dirs: tuple[str, ...],
          where: tuple[str, ...], layouts: tuple[Layout, ...]) -> DatasetSpec:
    return register_spec(DatasetSpec(
        name=name, title=title, standard=standard, mean=CIFAR_MEAN, std=CIFAR_STD,
        locate=locate, direct_limit=4 << 30, default_dirs=default_dirs, where_to_get=where,
        download=download_cifar100, accepted=tuple(l.describe() for l in layouts)))


CIFAR_FS_SPEC = _spec("cifar-fs", "CIFAR-FS", (64, 16, 20), locate_cifar_fs,
                      ("cifar-fs", "cifarfs", "CIFAR-FS", "cifar100"), CIFAR_FS_WHERE,
                      (MON_FS, RFS_FS, FOLDER, RAW, GENERIC))
FC100_SPEC = _spec("fc100", "FC100", (60, 20, 20), locate_fc100,
                   ("fc100", "FC100", "cifar100"), FC100_WHERE, (MON_FC, RFS_FC, RAW, GENERIC))


def load_cifar_fs(root: Path | str | None = None, *, allow_nonstandard: bool = False,
                  cache: Path | str | None = None) -> FewShotDataset:
    """CIFAR-FS from its prepared cache, else from the files under ``root``."""
    return load_files(CIFAR_FS_SPEC, root, allow_nonstandard=allow_nonstandard, cache=cache)


def load_fc100(root: Path | str | None = None, *, allow_nonstandard: bool = False,
               cache: Path | str | None = None) -> FewShotDataset:
    """FC100 from its prepared cache, else from the files under ``root``."""
    return load_files(FC100_SPEC, root, allow_nonstandard=allow_nonstandard, cache=cache)


def _load_cifar_fs(root: Path | None, *, allow_nonstandard: bool = False) -> FewShotDataset:
    return load_cifar_fs(root, allow_nonstandard=allow_nonstandard)


def _load_fc100(root: Path | None, *, allow_nonstandard: bool = False) -> FewShotDataset:
    return load_fc100(root, allow_nonstandard=allow_nonstandard)


register_dataset(
    DatasetInfo(name="cifar-fs", load=_load_cifar_fs,
                description="CIFAR-FS 64/16/20 classes x 600, 32 px (raw CIFAR-100, "
                            "learn2learn folders or MetaOptNet pickles)",
                benchmark="cifar-fs", channels=3, image_size=32,
                classes=CIFAR_FS_SPEC.standard, mean=CIFAR_FS_SPEC.mean, std=CIFAR_FS_SPEC.std,
                train_augmentation="lee2019", small_images=False, needs_files=True),
    "cifarfs", "cifar_fs",
)
register_dataset(
    DatasetInfo(name="fc100", load=_load_fc100,
                description="FC100 60/20/20 classes by superclass, 32 px (raw CIFAR-100 or "
                            "MetaOptNet pickles)",
                benchmark="fc100", channels=3, image_size=32, classes=FC100_SPEC.standard,
                mean=FC100_SPEC.mean, std=FC100_SPEC.std, train_augmentation="lee2019",
                small_images=False, needs_files=True),
    "fc-100",
)
