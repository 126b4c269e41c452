"""The prepared cache: every file-based dataset converted once into uint8 ``.npy`` arrays.

``python -m bench data prepare <dataset>`` reads the researcher's files (whatever layout they
came in, see the dataset modules), checks the split against the standard one, and writes::

    <cache>/<dataset>/manifest.json        what is in the cache and where it came from
    <cache>/<dataset>/{train,val,test}_images.npy   uint8 [N, C, H, W], C-ordered
    <cache>/<dataset>/{train,val,test}_labels.npy   int64 [N], 0..n_classes-1

``<cache>`` is, in order of precedence: the ``cache`` argument (``--cache DIR``), the
environment variable ``$BRIDGEBENCH_CACHE``, or ``<root>/.bridgebench-cache`` beside the
dataset's files. The manifest records, per split, the class names (label ``k`` is
``classes[k]``), the number of images, the array shape, the class sizes and the sha256 of both
arrays; and for every source file (or folder) its size and sha256, so ``bench data verify``
can tell whether the cache or the files it came from changed.

Loading maps the image arrays into memory (``numpy.load(mmap_mode="c")``): nothing is read
until an episode touches it, so tiered-ImageNet (16.5 GB at 84 px) trains in a few GB of RAM,
and moving a split to a GPU streams it from the page cache. Preparation streams too: a split's
pixels arrive from the reader in chunks and go straight into a memory-mapped ``.npy``.

The rest of this module is the glue every file-based dataset shares: a reader describes its
files as a :class:`Located` (found, not yet read) that reads into a :class:`SplitSet`;
:func:`load_files` loads a dataset from the cache or, for small datasets, directly from the
files; :class:`DatasetSpec` is what ``bench data`` needs to know about a dataset.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from core.atomic import write_json_atomic
from datasets.base import ClassSplit, DatasetError, FewShotDataset, default_data_root
from datasets.readers import describe_size, file_digest, source_digest, source_size

__all__ = [
    "CACHE_DIRNAME", "CACHE_ENV", "FORMAT_VERSION", "SPLITS", "Check", "DatasetSpec", "Located",
    "SplitSet", "SplitSource", "cache_folder", "check_standard", "get_spec", "load_cache",
    "load_files", "read_manifest", "register_spec", "relabel_by_name", "resolve_root",
    "split_from_array", "stale_problems", "verify_cache", "write_cache", "SPECS",
]

CACHE_DIRNAME = ".bridgebench-cache"
CACHE_ENV = "BRIDGEBENCH_CACHE"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
_FLUSH_BYTES = 256 << 20  # write dirty pages back every 256 MB while preparing
_PROGRESS_MIN = 50_000  # report progress every 10% of a split, at most every 50k images

Sink = Callable[[np.ndarray], None]
Log = Callable[[str], None]


@dataclass(frozen=True)
class SplitSource:
    """One split as a reader hands it over: labels and class names up front, pixels streamed.

    ``stream(sink)`` calls ``sink`` with uint8 ``[n, C, H, W]`` chunks, in the order of
    ``labels``. ``whole()``, when given, returns the entire split as a uint8 ``[N, C, H, W]``
    tensor (used when loading directly from files that are already arrays).
    """

    name: str
    labels: np.ndarray
    class_names: tuple[str, ...]
    stream: Callable[[Sink], None]
    whole: Callable[[], torch.Tensor] | None = None
    origin: str = ""  # the files it comes from, for messages

    def where(self) -> str:
        return f"split {self.name!r}" + (f" ({self.origin})" if self.origin else "")

    @property
    def n_images(self) -> int:
        return int(len(self.labels))

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class SplitSet:
    """The three splits read from one layout, plus what departs from the standard split
    (other than the class counts, which :func:`check_standard` compares) and notes."""

    splits: dict[str, SplitSource]
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    mean: tuple[float, ...] | None = None  # data-dependent statistics (else the spec's)
    std: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Located:
    """A dataset's files, found but not read: ``read()`` parses them into a :class:`SplitSet`."""

    dataset: str
    layout: str
    folder: Path
    files: tuple[Path, ...]
    read: Callable[[], SplitSet]

    def size(self) -> int:
        return sum(source_size(p) for p in self.files)


@dataclass(frozen=True)
class DatasetSpec:
    """What the loader and ``bench data`` need to know about one file-based dataset.

    ``locate(root)`` finds the files (a :class:`DatasetError` listing every accepted layout
    and where to get them when they are missing); ``standard`` is the standard number of
    train/val/test classes; ``direct_limit`` is the largest total size of source files that
    :func:`load_files` reads directly instead of demanding a prepared cache; ``download``
    (optional) fetches the files into ``root`` from a stable source.
    """

    name: str
    title: str
    standard: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    locate: Callable[[Path], Located]
    direct_limit: int
    default_dirs: tuple[str, ...]
    where_to_get: tuple[str, ...]
    download: Callable[[Path, Log], None] | None = None
    accepted: tuple[str, ...] = field(default=())


SPECS: dict[str, DatasetSpec] = {}


def register_spec(spec: DatasetSpec) -> DatasetSpec:
    """Make ``spec`` known to ``bench data`` (keyed by the dataset's canonical name)."""
    if spec.name in SPECS:
        raise ValueError(f"dataset spec {spec.name!r} is registered twice")
    SPECS[spec.name] = spec
    return spec


def get_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name`` (or an alias); a :class:`DatasetError` for datasets that
    have no files to prepare."""
    from datasets import DATASETS

    canonical = DATASETS.canonical(name)
    if canonical not in SPECS:
        files = sorted(SPECS)
        raise DatasetError(f"dataset {canonical!r} has no files to prepare (it is built in); "
                           f"datasets with files: {', '.join(files)}")
    return SPECS[canonical]


def resolve_root(spec: DatasetSpec, root: Path | str | None) -> Path:
    """``root`` itself, or by default the first existing ``$BRIDGEBENCH_DATA/<dir>`` of the
    spec's default folder names (else ``$BRIDGEBENCH_DATA``, default ``~/data``)."""
    if root is not None:
        return Path(root).expanduser()
    base = default_data_root()
    for sub in spec.default_dirs:
        if (base / sub).is_dir():
            return base / sub
    return base


def cache_folder(name: str, root: Path, cache: Path | str | None = None) -> Path:
    """Where dataset ``name``'s cache lives (see the module docstring for the precedence)."""
    if cache is not None:
        base = Path(cache).expanduser()
    elif os.environ.get(CACHE_ENV):
        base = Path(os.environ[CACHE_ENV]).expanduser()
    else:
        base = Path(root).expanduser() / CACHE_DIRNAME
    return base / name


# ----------------------------------------------------------------------------- reader helpers

def relabel_by_name(raw_labels: np.ndarray, name_of: dict[int, str]) -> tuple[np.ndarray,
                                                                               tuple[str, ...]]:
    """Map raw label ids to ``0..n-1`` in the sorted order of their class names, so every
    layout of a dataset gives the same labels for the same classes."""
    raw_labels = np.asarray(raw_labels, dtype=np.int64)
    ids = np.unique(raw_labels)
    if ids.size and ids[0] < 0:
        raise DatasetError(f"negative label id {int(ids[0])}; labels must be class ids >= 0")
    missing = [int(i) for i in ids if int(i) not in name_of]
    if missing:
        raise DatasetError(f"no class name for label ids {missing[:10]}")
    names = sorted({name_of[int(i)] for i in ids})
    if len(names) != len(ids):
        raise DatasetError("two label ids carry the same class name")
    position = {name: k for k, name in enumerate(names)}
    table = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
    for i in ids:
        table[int(i)] = position[name_of[int(i)]]
    return table[raw_labels], tuple(names)


def split_from_array(name: str, images: np.ndarray, labels: np.ndarray,
                     class_names: Sequence[str], channels_last: bool,
                     chunk_images: int = 4096) -> SplitSource:
    """A :class:`SplitSource` over an in-memory uint8 array (``[N, H, W, C]`` when
    ``channels_last``, else ``[N, C, H, W]``)."""
    if images.ndim != 4 or images.dtype != np.uint8:
        raise DatasetError(f"split {name!r}: expected uint8 images with 4 axes, got "
                           f"{images.dtype} {images.shape}")
    if len(images) != len(labels):
        raise DatasetError(f"split {name!r}: {len(images)} images but {len(labels)} labels")
    order = (0, 3, 1, 2) if channels_last else (0, 1, 2, 3)

    def stream(sink: Sink) -> None:
        for start in range(0, len(images), chunk_images):
            sink(images[start:start + chunk_images].transpose(order))

    def whole() -> torch.Tensor:  # C-contiguous NCHW: fast gathers and device copies
        return torch.from_numpy(np.ascontiguousarray(images.transpose(order)))

    return SplitSource(name, np.asarray(labels, dtype=np.int64), tuple(class_names), stream,
                       whole)


def _class_counts(splits: SplitSet) -> tuple[int, ...]:
    return tuple(splits.splits[s].n_classes for s in SPLITS)


def nonstandard_problems(spec: DatasetSpec, splits: SplitSet) -> list[str]:
    """Every way ``splits`` departs from the standard split of ``spec``."""
    counts = _class_counts(splits)
    problems = list(splits.problems)
    if counts != spec.standard:
        problems.insert(0, f"{'/'.join(map(str, counts))} classes (train/val/test) instead of "
                           f"the standard {'/'.join(map(str, spec.standard))}")
    return problems


def check_standard(spec: DatasetSpec, located: Located, splits: SplitSet,
                   allow_nonstandard: bool, root: Path | None = None) -> list[str]:
    """The departures from the standard split; raises unless ``allow_nonstandard``
    (``root``: the data root the user gave, for the suggested command)."""
    problems = nonstandard_problems(spec, splits)
    if problems and not allow_nonstandard:
        raise DatasetError(
            f"{spec.title} in {located.folder} ({located.layout}) is not the standard split: "
            f"{'; '.join(problems)}. Results on it are not comparable with published numbers. "
            f"To use it anyway (e.g. a subset for a quick check), run `python -m bench data "
            f"prepare {spec.name} --root {root or located.folder} --allow-nonstandard` (from "
            f"Python: allow_nonstandard=True).")
    return problems


def _to_class_split(split: SplitSource) -> ClassSplit:
    if split.whole is not None:
        images = split.whole()
    else:
        chunks: list[np.ndarray] = []
        split.stream(lambda chunk: chunks.append(np.ascontiguousarray(chunk)))
        if not chunks:
            raise DatasetError(f"{split.where()} has no images")
        shapes = {c.shape[1:] for c in chunks}
        if len(shapes) != 1:
            raise DatasetError(f"{split.where()}: images have different sizes {shapes}")
        images = torch.from_numpy(np.concatenate(chunks))
    if images.shape[0] != split.n_images:
        raise DatasetError(f"{split.where()}: {images.shape[0]} images but {split.n_images} "
                           f"labels")
    return ClassSplit(split.name, images, torch.from_numpy(split.labels), split.class_names)


def _dataset(spec: DatasetSpec, read: SplitSet, source: str) -> FewShotDataset:
    splits = {name: _to_class_split(read.splits[name]) for name in SPLITS}
    return FewShotDataset(name=spec.name, train=splits["train"], val=splits["val"],
                          test=splits["test"], mean=read.mean or spec.mean,
                          std=read.std or spec.std, source=source)


# ------------------------------------------------------------------------------------ writing

class _SplitWriter:
    """Receives a split's chunks and writes them into a memory-mapped ``.npy``."""

    def __init__(self, path: Path, split: SplitSource, log: Log) -> None:
        self.path, self.split, self.log = path, split, log
        self.array: np.memmap | None = None
        self.filled = 0
        self.unflushed = 0
        self.report_every = max(_PROGRESS_MIN, split.n_images // 10)
        self.next_report = self.report_every

    def __call__(self, chunk: np.ndarray) -> None:
        chunk = np.asarray(chunk)
        if chunk.dtype != np.uint8 or chunk.ndim != 4:
            raise DatasetError(f"{self.split.where()}: reader gave {chunk.dtype} "
                               f"{chunk.shape}, expected uint8 [n, C, H, W]")
        if self.array is None:
            shape = (self.split.n_images, *chunk.shape[1:])
            self.array = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.uint8,
                                                   shape=shape)
        elif chunk.shape[1:] != self.array.shape[1:]:
            raise DatasetError(
                f"{self.split.where()}: image {self.filled} is {chunk.shape[1:]} (C, H, W) "
                f"but earlier ones are {self.array.shape[1:]}; all images must have one size")
        end = self.filled + len(chunk)
        if end > self.split.n_images:
            raise DatasetError(f"{self.split.where()}: more images than the "
                               f"{self.split.n_images} labels")
        self.array[self.filled:end] = chunk
        self.filled = end
        self.unflushed += chunk.nbytes
        if self.unflushed >= _FLUSH_BYTES:
            self.array.flush()
            self.unflushed = 0
        if self.filled >= self.next_report and self.filled < self.split.n_images:
            self.log(f"    {self.split.name}: {self.filled}/{self.split.n_images} images")
            self.next_report += self.report_every

    def close(self) -> tuple[int, ...]:
        if self.array is None or self.filled != self.split.n_images:
            raise DatasetError(f"{self.split.where()}: {self.filled} images but "
                               f"{self.split.n_images} labels")
        self.array.flush()
        shape = tuple(self.array.shape)
        del self.array
        self.array = None
        return shape


def _write_split(folder: Path, split: SplitSource, log: Log) -> dict[str, Any]:
    started = time.perf_counter()
    images_file, labels_file = f"{split.name}_images.npy", f"{split.name}_labels.npy"
    if split.n_images == 0:
        raise DatasetError(f"{split.where()} has no images")
    writer = _SplitWriter(folder / images_file, split, log)
    split.stream(writer)
    shape = writer.close()
    np.save(folder / labels_file, split.labels.astype("<i8"))
    sizes = np.bincount(split.labels, minlength=split.n_classes).tolist()
    log(f"  {split.name}: {split.n_classes} classes, {split.n_images} images "
        f"{'x'.join(map(str, shape[1:]))} in {time.perf_counter() - started:.1f} s")
    return {
        "classes": list(split.class_names), "n_classes": split.n_classes,
        "images": split.n_images, "shape": list(shape), "class_sizes": sizes,
        "images_file": images_file, "images_bytes": (folder / images_file).stat().st_size,
        "images_sha256": file_digest(folder / images_file),
        "labels_file": labels_file, "labels_bytes": (folder / labels_file).stat().st_size,
        "labels_sha256": file_digest(folder / labels_file),
    }


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def _source_entries(files: Iterable[Path], root: Path, log: Log) -> list[dict[str, Any]]:
    entries = []
    for path in files:
        size, digest = source_digest(path)
        entries.append({"path": _relative(path, root), "kind": "file" if path.is_file()
                        else "folder", "bytes": size, "sha256": digest})
        log(f"  source {path}: {describe_size(size)}, sha256 {digest[:12]}...")
    return entries


def write_cache(spec: DatasetSpec, located: Located, splits: SplitSet, root: Path,
                folder: Path, problems: Sequence[str], log: Log = print) -> dict[str, Any]:
    """Write the cache for ``splits`` into ``folder`` (replacing what is there, atomically:
    a partial folder is removed on failure) and return its manifest."""
    folder = Path(folder)
    partial = folder.parent / f".{folder.name}.partial-{os.getpid()}"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
    except OSError as exc:
        raise DatasetError(f"cannot write the cache into {folder.parent} ({exc}); choose a "
                           f"writable place with --cache DIR and set {CACHE_ENV}=DIR for "
                           f"runs") from exc
    try:
        written = {name: _write_split(partial, splits.splits[name], log) for name in SPLITS}
        manifest = {
            "format": FORMAT_VERSION, "dataset": spec.name, "title": spec.title,
            "layout": located.layout, "root": str(Path(root).resolve()),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "mean": list(splits.mean or spec.mean), "std": list(splits.std or spec.std),
            "standard_classes": list(spec.standard), "nonstandard": list(problems),
            "notes": list(splits.notes),
            "sources": _source_entries(located.files, root, log),
            "splits": written,
        }
        write_json_atomic(partial / "manifest.json", manifest)
        if folder.exists():
            shutil.rmtree(folder)
        partial.rename(folder)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise DatasetError(f"writing the cache into {folder} failed ({exc}); is the disk "
                           f"full? Choose another place with --cache DIR") from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


# ------------------------------------------------------------------------------------ reading

def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest in ``folder``; None when there is none; a DatasetError when unreadable."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is corrupt ({exc}); prepare the dataset again with "
                           f"`python -m bench data prepare <dataset> --force`") from exc
    if manifest.get("format") != FORMAT_VERSION:
        raise DatasetError(f"{path} has cache format {manifest.get('format')!r}, this version "
                           f"reads {FORMAT_VERSION}; prepare the dataset again with --force")
    return manifest


def stale_problems(folder: Path, manifest: dict[str, Any], root: Path) -> list[str]:
    """Cheap staleness checks (sizes only): cache arrays present and complete, source files
    that still exist unchanged in size."""
    problems = []
    for name in SPLITS:
        entry = manifest["splits"][name]
        for kind in ("images", "labels"):
            path = folder / entry[f"{kind}_file"]
            if not path.is_file():
                problems.append(f"{path} is missing")
            elif path.stat().st_size != entry[f"{kind}_bytes"]:
                problems.append(f"{path} has {path.stat().st_size} bytes, the manifest says "
                                f"{entry[f'{kind}_bytes']}")
    for source in manifest["sources"]:
        path = _source_path(source, root)
        if source["kind"] == "file" and path.is_file() and path.stat().st_size != source["bytes"]:
            problems.append(f"source {path} changed since it was prepared "
                            f"({path.stat().st_size} bytes, was {source['bytes']})")
    return problems


def _source_path(source: dict[str, Any], root: Path) -> Path:
    path = Path(source["path"])
    return path if path.is_absolute() else Path(root) / path


def _open_split(folder: Path, name: str, entry: dict[str, Any]) -> ClassSplit:
    images = np.load(folder / entry["images_file"], mmap_mode="c")
    labels = np.load(folder / entry["labels_file"])
    if list(images.shape) != entry["shape"] or images.dtype != np.uint8:
        raise DatasetError(f"{folder / entry['images_file']} is {images.dtype} {images.shape}, "
                           f"the manifest says uint8 {entry['shape']}; run `bench data verify`")
    return ClassSplit(name, torch.from_numpy(images), torch.from_numpy(labels),
                      tuple(entry["classes"]))


def load_cache(spec: DatasetSpec, root: Path, cache: Path | str | None = None
               ) -> FewShotDataset | None:
    """The dataset from its prepared cache (memory-mapped), or None when not prepared."""
    folder = cache_folder(spec.name, root, cache)
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    problems = stale_problems(folder, manifest, root)
    if problems:
        raise DatasetError(
            f"the prepared cache {folder} is stale or damaged: {'; '.join(problems)}. Check it "
            f"with `python -m bench data verify {spec.name} --root {root}` and rebuild it with "
            f"`python -m bench data prepare {spec.name} --root {root} --force`.")
    splits = {name: _open_split(folder, name, manifest["splits"][name]) for name in SPLITS}
    note = ""
    if manifest["nonstandard"]:
        note = f"; NON-STANDARD split: {'; '.join(manifest['nonstandard'])}"
    source = (f"{spec.title} from the prepared cache {folder} (of {manifest['layout']} in "
              f"{manifest['root']}, prepared {manifest['created']}){note}")
    return FewShotDataset(name=spec.name, train=splits["train"], val=splits["val"],
                          test=splits["test"], mean=tuple(manifest["mean"]),
                          std=tuple(manifest["std"]), source=source)


def load_files(spec: DatasetSpec, root: Path | str | None = None, *,
               allow_nonstandard: bool = False, cache: Path | str | None = None
               ) -> FewShotDataset:
    """Load ``spec``'s dataset: from the prepared cache if there is one, else directly from
    the files when they are small enough, else a DatasetError saying how to prepare them."""
    root = resolve_root(spec, root)
    cached = load_cache(spec, root, cache)
    if cached is not None:
        return cached
    located = spec.locate(root)
    size = located.size()
    if size > spec.direct_limit:
        raise DatasetError(
            f"{spec.title} in {located.folder} ({located.layout}) is {describe_size(size)}: too "
            f"large to decode at every start. Prepare it once into a memory-mapped cache: "
            f"`python -m bench data prepare {spec.name} --root {root}` (see `python -m bench "
            f"data prepare --help`).")
    splits = located.read()
    problems = check_standard(spec, located, splits, allow_nonstandard, root)
    note = f"; NON-STANDARD split: {'; '.join(problems)}" if problems else ""
    source = f"{spec.title} read directly from {located.layout} in {located.folder}{note}"
    return _dataset(spec, splits, source)


# ----------------------------------------------------------------------------------- verifying

@dataclass(frozen=True)
class Check:
    """One line of ``bench data verify``: what was checked, whether it passed, details."""

    what: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.what}: {self.detail}"


def _check_array(folder: Path, entry: dict[str, Any], kind: str) -> Check:
    path = folder / entry[f"{kind}_file"]
    if not path.is_file():
        return Check(str(path), False, "missing")
    digest = file_digest(path)
    if digest != entry[f"{kind}_sha256"]:
        return Check(str(path), False, f"sha256 {digest[:12]}... differs from the manifest's "
                                       f"{entry[f'{kind}_sha256'][:12]}...: the cache changed")
    return Check(str(path), True, f"sha256 {digest[:12]}... matches")


def _check_split_content(folder: Path, name: str, entry: dict[str, Any]) -> Check:
    images = np.load(folder / entry["images_file"], mmap_mode="r")
    labels = np.load(folder / entry["labels_file"])
    what = f"split {name}"
    if list(images.shape) != entry["shape"]:
        return Check(what, False, f"images {images.shape}, manifest {entry['shape']}")
    if len(labels) != entry["images"] or (len(labels) and (labels.min() < 0 or
                                                            labels.max() >= entry["n_classes"])):
        return Check(what, False, f"labels do not match {entry['images']} images of "
                                  f"{entry['n_classes']} classes")
    sizes = np.bincount(labels, minlength=entry["n_classes"]).tolist()
    if sizes != entry["class_sizes"]:
        return Check(what, False, "class sizes differ from the manifest")
    return Check(what, True, f"{entry['n_classes']} classes, {entry['images']} images "
                             f"{'x'.join(map(str, entry['shape'][1:]))}")


def _check_source(source: dict[str, Any], root: Path) -> Check:
    path = _source_path(source, root)
    if not path.exists():
        return Check(f"source {path}", True, "not found, not checked (the cache does not need "
                                             "it)")
    size, digest = source_digest(path)
    if digest != source["sha256"]:
        return Check(f"source {path}", False,
                     f"changed since it was prepared: sha256 {digest[:12]}... ({size} bytes), "
                     f"was {source['sha256'][:12]}... ({source['bytes']} bytes)")
    return Check(f"source {path}", True, f"sha256 {digest[:12]}... matches")


def verify_cache(spec: DatasetSpec, root: Path | str | None = None,
                 cache: Path | str | None = None) -> list[Check]:
    """Recheck a prepared cache: every array's sha256, shapes, labels and class sizes, and
    every source file or folder that still exists against its recorded sha256."""
    given = root is not None
    root = resolve_root(spec, root)
    folder = cache_folder(spec.name, root, cache)
    manifest = read_manifest(folder)
    if manifest is None:
        raise DatasetError(f"{spec.title} is not prepared: no {folder / 'manifest.json'}. Run "
                           f"`python -m bench data prepare {spec.name} --root {root}` first.")
    source_root = root if given else Path(manifest["root"])
    checks = []
    for name in SPLITS:
        entry = manifest["splits"][name]
        checks += [_check_array(folder, entry, "images"), _check_array(folder, entry, "labels")]
        if checks[-1].ok and checks[-2].ok:
            checks.append(_check_split_content(folder, name, entry))
    checks += [_check_source(s, source_root) for s in manifest["sources"]]
    if manifest["nonstandard"]:
        checks.append(Check("split", True, "prepared with --allow-nonstandard: "
                                           + "; ".join(manifest["nonstandard"])))
    return checks
