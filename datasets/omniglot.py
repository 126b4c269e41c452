"""Omniglot (Lake, Salakhutdinov & Tenenbaum, 2015), read from torchvision's files.

One class per handwritten character, 20 drawers each. Preprocessing follows learn2learn's
Omniglot benchmark (used by Wang, Zhao & Li, ICML 2021, via [L2L]): grey-scale, resize to 28 px
with LANCZOS, then invert so ink is bright (``1 - x``); stored as uint8 ``255 * (1 - x)``. The
class split is 1100/100/423 as in learn2learn, but drawn with a fixed seed (learn2learn uses the
unseeded global ``random``; docs/references.md#bugs-avoided, B2) and used per split
(learn2learn's benchmark leaks classes across splits). With fewer characters than the full 1623
(for example the 242 of the two "small" background archives) the same proportions are used and
the dataset's ``source`` says so.

Accepted under ``root`` (and under ``root/omniglot-py``, torchvision's layout): the archives
``images_background.zip``, ``images_evaluation.zip``, ``images_background_small1.zip``,
``images_background_small2.zip`` (read in place with :mod:`zipfile`), or folders of the same
names extracted from them. Inside: ``<top>/<Alphabet>/characterNN/<charid>_<drawer>.png``.
Characters found in several sources (Greek and Latin are in both small archives) are
de-duplicated by character id.
"""
from __future__ import annotations

import functools
import io
import logging
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from datasets import DatasetInfo, register_dataset
from datasets.base import ClassSplit, DatasetError, FewShotDataset, default_data_root
from datasets.cache import DatasetSpec, Located, SplitSet, register_spec, split_from_array
from datasets.glyphs import pixel_stats
from datasets.readers import accept_class_problems, class_size_problems

__all__ = ["ARCHIVE_NAMES", "SPEC", "find_sources", "load", "load_omniglot", "split_note",
           "split_sizes"]

logger = logging.getLogger(__name__)

#: Archive stems, in the order sources are read (the first copy of a character wins).
ARCHIVE_NAMES = (
    "images_background", "images_evaluation",
    "images_background_small1", "images_background_small2",
)
FULL_CLASSES = 1623
LEARN2LEARN_SPLIT = (1100, 100, 423)  # train / val / test classes of the full Omniglot
SPLIT_SEED = 0
MIN_CLASSES_PER_SPLIT = 5  # enough for 5-way episodes in every split
IMAGE_SIZE = 28
_FILE_RE = re.compile(r"^(\d+)_(\d+)\.png$")


@dataclass(frozen=True)
class Source:
    """One place Omniglot images are read from: a zip archive or an extracted folder."""

    path: Path
    kind: str  # "zip" or "folder"


@dataclass(frozen=True)
class _Entry:
    """One image file: its character id, drawer, class name and where it is stored."""

    char_id: int
    drawer: int
    class_name: str  # "<Alphabet>/<characterNN>"
    source: Source
    member: str  # path inside the zip or the folder, with "/" separators

    @property
    def where(self) -> str:
        """The file, for error messages."""
        if self.source.kind == "zip":
            return f"{self.source.path}:{self.member}"
        return str(self.source.path / self.member)


def _missing_message(root: Path) -> str:
    accepted = ", ".join(f"{name}.zip" for name in ARCHIVE_NAMES)
    state = "" if root.exists() else " (that path does not exist)"
    return (
        f"Omniglot files not found under {root}{state}; looked in {root} and "
        f"{root / 'omniglot-py'}. Accepted: the archives {accepted}, or folders with the same "
        f"names (without .zip) extracted from them, laid out as "
        f"<top>/<Alphabet>/characterNN/<charid>_<drawer>.png. To get them: `python -m bench "
        f"data prepare omniglot --root {root} --download` (torchvision's mirrors), or on a "
        f"machine with internet torchvision.datasets.Omniglot(ROOT, background=True, "
        f"download=True) and again with background=False, then use ROOT (its omniglot-py/ "
        f"folder is found). Without a root, $BRIDGEBENCH_DATA/omniglot (default "
        f"~/data/omniglot) is used."
    )


def find_sources(root: Path) -> list[Source]:
    """The Omniglot archives/folders under ``root``, one per archive name; raises if none.

    ``root`` may also be a single ``.zip`` archive. For each name an extracted folder is
    preferred over the zip beside it, and ``root`` over ``root/omniglot-py``.
    """
    root = Path(root).expanduser()
    if root.is_file() and root.suffix == ".zip":
        return [Source(root, "zip")]
    sources: list[Source] = []
    for name in ARCHIVE_NAMES:
        for base in (root, root / "omniglot-py"):
            if (base / name).is_dir():
                sources.append(Source(base / name, "folder"))
                break
            if (base / f"{name}.zip").is_file():
                sources.append(Source(base / f"{name}.zip", "zip"))
                break
    if not sources:
        raise DatasetError(_missing_message(root))
    return sources


def _parse(source: Source, member: str) -> _Entry | None:
    """An entry for ``.../<Alphabet>/<characterNN>/<charid>_<drawer>.png``; None otherwise."""
    parts = member.replace("\\", "/").split("/")
    match = _FILE_RE.match(parts[-1])
    if match is None or len(parts) < 3 or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None
    return _Entry(int(match.group(1)), int(match.group(2)), f"{parts[-3]}/{parts[-2]}", source,
                  member)


def _list_members(source: Source) -> list[str]:
    """Every member of a zip (folders end in ``/``), or every file and folder under an
    extracted source (folders with a trailing ``/``), relative to it."""
    if source.kind == "zip":
        with zipfile.ZipFile(source.path) as archive:
            return archive.namelist()
    return sorted(p.relative_to(source.path).as_posix() + ("/" if p.is_dir() else "")
                  for p in source.path.rglob("*"))


def class_folder_counts(sources: tuple[Source, ...], entries: list[_Entry]) -> dict[str, int]:
    """Images per character folder (``<source>/<Alphabet>/<characterNN>``), counting every
    folder that sits beside character folders, so an empty one shows as 0 (it would
    otherwise vanish from the class list and change the split)."""
    counts: dict[str, int] = {}
    for e in entries:
        folder = f"{e.source.path}/{e.member.replace(chr(92), '/').rsplit('/', 1)[0]}"
        counts[folder] = counts.get(folder, 0) + 1
    alphabets = {folder.rsplit("/", 1)[0] for folder in counts}
    for source in sources:
        for member in _list_members(source):
            if not member.endswith("/") or any(p.startswith(".") or p == "__MACOSX"
                                               for p in member.strip("/").split("/")):
                continue
            folder = f"{source.path}/{member.strip('/')}"
            if folder.rsplit("/", 1)[0] in alphabets:
                counts.setdefault(folder, 0)
    return counts


def _list_entries(source: Source) -> list[_Entry]:
    """Every Omniglot image file of one source; a corrupt zip raises a DatasetError naming it."""
    if source.kind == "zip":
        try:
            with zipfile.ZipFile(source.path) as archive:
                members = archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DatasetError(
                f"cannot read Omniglot archive {source.path}: {exc}. The file is corrupt or "
                f"truncated; delete it and download it again."
            ) from exc
    else:
        members = sorted(p.relative_to(source.path).as_posix()
                         for p in source.path.rglob("*.png"))
    entries = [e for e in (_parse(source, m) for m in members) if e is not None]
    if not entries:
        raise DatasetError(
            f"{source.path} holds no Omniglot images (<Alphabet>/characterNN/<charid>_<drawer>"
            f".png); is it the right {source.kind}?"
        )
    return entries


def _fingerprint(source: Source) -> tuple:
    """What identifies a source's content for the in-process cache (sizes and mtimes)."""
    if source.kind == "zip":
        stat = source.path.stat()
        return (str(source.path.resolve()), stat.st_size, stat.st_mtime_ns)
    stats = [p.stat() for p in source.path.rglob("*.png")]
    folders = sum(1 for p in source.path.rglob("*") if p.is_dir())  # an emptied folder too
    return (str(source.path.resolve()), len(stats), sum(s.st_size for s in stats),
            max((s.st_mtime_ns for s in stats), default=0), folders)


def _deduplicate(entries: list[_Entry]) -> dict[int, list[_Entry]]:
    """Group by character id, first copy of each (character, drawer) wins; names must agree."""
    names: dict[int, str] = {}
    owners: dict[str, int] = {}
    chosen: dict[tuple[int, int], _Entry] = {}
    for e in entries:
        if names.setdefault(e.char_id, e.class_name) != e.class_name:
            raise DatasetError(
                f"character id {e.char_id} is {names[e.char_id]!r} in one source but "
                f"{e.class_name!r} in {e.source.path}; the Omniglot files are inconsistent"
            )
        if owners.setdefault(e.class_name, e.char_id) != e.char_id:
            raise DatasetError(
                f"{e.class_name!r} holds character ids {owners[e.class_name]} and {e.char_id} "
                f"({e.source.path}); each characterNN folder must hold one character"
            )
        chosen.setdefault((e.char_id, e.drawer), e)
    grouped: dict[int, list[_Entry]] = {}
    for key in sorted(chosen):
        grouped.setdefault(key[0], []).append(chosen[key])
    return grouped


def _decode(data: bytes, where: str) -> np.ndarray:
    """PNG bytes -> uint8 ``[28, 28]``: grey, LANCZOS resize, inverted (ink bright)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            grey = img.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"cannot decode Omniglot image {where}: {exc}; the file is "
                           f"corrupt, replace it") from exc
    return 255 - np.asarray(grey, dtype=np.uint8)


def _read_images(entries: list[_Entry]) -> Iterator[np.ndarray]:
    """Decode entries in order, opening each zip once."""
    open_zips: dict[Path, zipfile.ZipFile] = {}
    try:
        for e in entries:
            try:
                if e.source.kind == "zip":
                    if e.source.path not in open_zips:
                        open_zips[e.source.path] = zipfile.ZipFile(e.source.path)
                    data = open_zips[e.source.path].read(e.member)
                else:
                    data = (e.source.path / e.member).read_bytes()
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
                raise DatasetError(f"cannot read Omniglot image {e.where}: {exc}; the file is "
                                   f"corrupt or truncated, replace it") from exc
            yield _decode(data, e.where)
    finally:
        for archive in open_zips.values():
            archive.close()


def split_sizes(n_classes: int) -> tuple[int, int, int]:
    """Train/val/test class counts: learn2learn's 1100/100/423, or those proportions for
    another number of classes (every split at least 5 classes)."""
    if n_classes == FULL_CLASSES:
        return LEARN2LEARN_SPLIT
    if n_classes < 3 * MIN_CLASSES_PER_SPLIT:
        raise DatasetError(
            f"only {n_classes} Omniglot characters found; at least {3 * MIN_CLASSES_PER_SPLIT} "
            f"are needed ({MIN_CLASSES_PER_SPLIT} per split)"
        )
    n_val = max(MIN_CLASSES_PER_SPLIT, round(n_classes * LEARN2LEARN_SPLIT[1] / FULL_CLASSES))
    n_test = max(MIN_CLASSES_PER_SPLIT, round(n_classes * LEARN2LEARN_SPLIT[2] / FULL_CLASSES))
    return n_classes - n_val - n_test, n_val, n_test


def split_note(n_classes: int) -> str:
    """How ``n_classes`` characters are split, for logs and the dataset's ``source``."""
    split = "/".join(map(str, split_sizes(n_classes)))
    if n_classes == FULL_CLASSES:
        return f"split {split} (learn2learn's sizes, seed {SPLIT_SEED})"
    return (f"split {split}: learn2learn's 1100/100/423 proportions scaled to {n_classes} "
            f"classes (not the full {FULL_CLASSES}), seed {SPLIT_SEED}")


def _assign_splits(class_names: list[str]) -> dict[str, list[str]]:
    """Permute the sorted class names with ``PCG64(SPLIT_SEED)`` and cut train/val/test."""
    ordered = sorted(class_names)
    n_train, n_val, _ = split_sizes(len(ordered))
    perm = np.random.Generator(np.random.PCG64(SPLIT_SEED)).permutation(len(ordered))
    shuffled = [ordered[i] for i in perm]
    return {
        "train": sorted(shuffled[:n_train]),
        "val": sorted(shuffled[n_train:n_train + n_val]),
        "test": sorted(shuffled[n_train + n_val:]),
    }


def _build_split(name: str, class_names: list[str],
                 by_name: dict[str, list[_Entry]]) -> ClassSplit:
    entries = [e for cname in class_names for e in by_name[cname]]
    labels = [k for k, cname in enumerate(class_names) for _ in by_name[cname]]
    images = np.stack(list(_read_images(entries)))[:, None]
    return ClassSplit(name, torch.from_numpy(images), torch.tensor(labels, dtype=torch.int64),
                      tuple(class_names))


def _describe(sources: tuple[Source, ...], n_classes: int, note: str) -> str:
    where = ", ".join(str(s.path) + ("/" if s.kind == "folder" else "") for s in sources)
    return f"omniglot from {where}; {n_classes} characters after de-duplication; {note}"


@functools.lru_cache(maxsize=4)
def _load_cached(sources: tuple[Source, ...], fingerprint: tuple,
                 allow_nonstandard: bool = False) -> FewShotDataset:
    """Read and preprocess ``sources``; cached on their fingerprint (sizes and mtimes). An
    empty character folder, or one with fewer images than the others, is refused naming it
    unless ``allow_nonstandard`` (then the other classes are used, with a warning)."""
    entries = [e for s in sources for e in _list_entries(s)]
    grouped = _deduplicate(entries)
    by_name = {group[0].class_name: group for group in grouped.values()}
    counts = {folder: n for folder, n in class_folder_counts(sources, entries).items()
              if n or "/".join(folder.rsplit("/", 2)[-2:]) not in by_name}  # not in another source
    problems = class_size_problems(counts)
    if problems:
        usual = max(len(group) for group in by_name.values())
        if allow_nonstandard:  # characters with fewer drawers than the others are left out
            by_name = {name: group for name, group in by_name.items() if len(group) == usual}
        accept_class_problems(problems, "omniglot", len(by_name), allow_nonstandard)
    assignment = _assign_splits(list(by_name))
    note = split_note(len(by_name))
    logger.info("omniglot: %d characters; %s", len(by_name), note)
    splits = {name: _build_split(name, names, by_name) for name, names in assignment.items()}
    mean, std = pixel_stats(splits["train"].images)
    return FewShotDataset(
        name="omniglot", train=splits["train"], val=splits["val"], test=splits["test"],
        mean=(mean,), std=(std,),
        source=_describe(sources, len(by_name), note),
    )


def load_omniglot(root: Path | str | None = None, *,
                  allow_nonstandard: bool = False) -> FewShotDataset:
    """Load Omniglot from ``root`` (default ``default_data_root() / "omniglot"``).

    An empty character folder, or one with fewer images than the others, is a
    :class:`DatasetError` naming it (it would silently leave the class list and change the
    split); ``allow_nonstandard`` uses the complete characters instead, with a warning saying
    how many remain. Cached in-process: a second call with unchanged files returns the same
    object (treat its tensors as read-only).
    """
    root = Path(root).expanduser() if root is not None else default_data_root() / "omniglot"
    sources = tuple(find_sources(root))
    return _load_cached(sources, tuple(_fingerprint(s) for s in sources), allow_nonstandard)


def load(root: Path | None, *, allow_nonstandard: bool = False) -> FewShotDataset:
    """Registry entry point (see :func:`load_omniglot`)."""
    return load_omniglot(root, allow_nonstandard=allow_nonstandard)


def _locate(root: Path) -> Located:
    sources = find_sources(root)

    def read() -> SplitSet:
        data = load_omniglot(root)
        splits = {s.name: split_from_array(s.name, s.images.numpy(), s.labels.numpy(),
                                           s.class_names, channels_last=False)
                  for s in (data.train, data.val, data.test)}
        return SplitSet(splits, notes=(data.source,), mean=data.mean, std=data.std)

    kind = "+".join(sorted({s.kind for s in sources}))
    return Located("omniglot", f"torchvision Omniglot ({kind})", root,
                   tuple(s.path for s in sources), read)


def _download(root: Path, log: Callable[[str], None]) -> None:
    import torchvision.datasets

    log(f"downloading Omniglot with torchvision into {root / 'omniglot-py'}")
    try:
        for background in (True, False):
            torchvision.datasets.Omniglot(str(root), background=background, download=True)
    except Exception as exc:  # network and archive errors come in many types
        raise DatasetError(f"downloading Omniglot into {root} failed ({type(exc).__name__}:"
                           f" {exc}); fetch images_background.zip and images_evaluation.zip"
                           f" from https://github.com/brendenlake/omniglot (python/) into "
                           f"{root}") from exc


#: So ``bench data prepare/verify omniglot`` can prepare, split-check and verify it like the
#: others (the registry loader reads the archives directly and ignores the cache).
SPEC = register_spec(DatasetSpec(
    name="omniglot", title="Omniglot", standard=LEARN2LEARN_SPLIT,
    mean=(0.0,), std=(1.0,), locate=_locate, direct_limit=1 << 40,
    default_dirs=("omniglot",),
    where_to_get=("torchvision.datasets.Omniglot(ROOT, background=True/False, "
                  "download=True), or `--download`",),
    download=_download,
    accepted=tuple(f"{n}.zip or the folder {n}/" for n in ARCHIVE_NAMES)))


register_dataset(
    DatasetInfo(
        name="omniglot",
        load=load,
        description=("Omniglot handwritten characters (torchvision archives or folders), "
                     "28 px, ink bright; split 1100/100/423 or proportional"),
        benchmark="omniglot",
        channels=1,
        image_size=IMAGE_SIZE,
        classes=LEARN2LEARN_SPLIT,
        mean=None, std=None,  # the train split's pixel statistics (load_omniglot)
        train_augmentation=None,  # learn2learn's Omniglot benchmark: resize and invert only
        small_images=True,
        needs_files=True,
    ),
)
