"""Low-level readers for the files few-shot researchers already have (docs/references.md#datasets).

Everything here turns a damaged or unexpected file into a :class:`DatasetError` that names the
file and says what to do:

* :func:`sniff` looks at a file's first bytes (pickle, zip/npz, npy, gzip, tar, PNG, or an HTML
  page saved in place of the data: the Google Drive "virus scan warning" page that learn2learn
  issue #367 reports for the mini-ImageNet pickles).
* :func:`load_pickle` unpickles with ``encoding="latin1"`` (the MetaOptNet/Gidaris files are
  Python 2 pickles) through a restricted unpickler that only builds NumPy arrays and plain
  containers, so a dataset file cannot run code.
* :func:`stream_pickled_list` walks a pickled *list* (learn2learn's tiered-ImageNet
  ``*_images_png.pkl``, a list of PNG byte strings) item by item, handing each item to a
  callback and keeping none of them: memory stays at a few images, whatever the file size.
* :func:`npz_member_info` / :func:`iter_npz_rows` read one array of an ``.npz`` archive
  (MetaOptNet's tiered ``*_images.npz``) in row chunks, without loading the whole array.
* :func:`decode_image` turns PNG bytes (or a raw ``H x W x C`` array) into uint8 RGB pixels.
* :func:`find_layout` looks for the first complete set of files among a dataset's accepted
  layouts and, failing that, says where it looked, what it accepts and where to get it.
"""
from __future__ import annotations

import warnings

import hashlib
import importlib
import io
import pickle
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping

import numpy as np
from PIL import Image, UnidentifiedImageError

from datasets.base import DatasetError

__all__ = [
    "Layout", "accept_class_problems", "candidate_folders", "check_kind", "class_size_problems", "decode_image", "describe_size", "file_digest",
    "find_layout", "first_pickled_item", "html_title", "iter_npz_rows", "load_pickle",
    "missing_files_message", "npz_member_info", "sniff", "source_digest", "source_size",
    "stream_pickled_list",
]

_HEAD_BYTES = 4096
#: Objects a dataset pickle may build: arrays, dtypes, scalars and plain containers.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"), ("collections", "defaultdict"),
    *(("builtins", n) for n in ("list", "dict", "tuple", "set", "frozenset", "bytearray",
                                "bytes", "str", "int", "float", "complex", "bool")),
}
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def describe_size(n_bytes: int) -> str:
    """``1.3 GB``-style size for messages."""
    size = float(n_bytes)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def sniff(path: Path) -> str:
    """What a file looks like from its first bytes.

    One of ``"missing"``, ``"empty"``, ``"html"``, ``"pickle"``, ``"zip"`` (also ``.npz``),
    ``"npy"``, ``"gzip"``, ``"tar"``, ``"png"``, ``"lfs"`` (a Git LFS pointer), ``"text"`` or
    ``"unknown"``.
    """
    path = Path(path)
    if not path.is_file():
        return "missing"
    with open(path, "rb") as f:
        head = f.read(_HEAD_BYTES)
    if not head:
        return "empty"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if stripped.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or \
            (stripped.startswith(b"<") and b"<html" in stripped):
        return "html"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    if head.startswith(b"version https://git-lfs"):
        return "lfs"
    if head[0] == 0x80 and len(head) > 1 and 1 <= head[1] <= 5:
        return "pickle"
    if head[:1] in (b"(", b"]", b"}", b"c") and head[1:2] in (b"d", b"l", b"p", b"q", b"(", b"]",
                                                              b"}", b"n", b"_"):
        return "pickle"  # protocol 0/1 (Python 2 default)
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head[:512]):
        return "text"
    return "unknown"


def html_title(path: Path) -> str | None:
    """The ``<title>`` of an HTML file, if it has one in its first 64 KB."""
    with open(path, "rb") as f:
        head = f.read(65536).decode("utf-8", "replace")
    match = re.search(r"<title[^>]*>(.*?)</title>", head, re.IGNORECASE | re.DOTALL)
    return " ".join(match.group(1).split()) if match else None


def _html_message(path: Path, expected: str) -> str:
    title = html_title(path)
    titled = f" titled {title!r}" if title else ""
    return (
        f"{path} is an HTML web page{titled} ({describe_size(path.stat().st_size)}), not "
        f"{expected}. The download saved the page a file host shows instead of the file "
        f"(Google Drive does this for large files: its 'virus scan warning' page; see "
        f"learn2learn issue #367). Delete {path.name} and download it again, in a browser "
        f"(confirm the warning) or with `gdown <file id>`."
    )


def _wrong_kind_message(path: Path, kind: str, expected: str) -> str:
    hints = {
        "empty": "it is empty (0 bytes): the download or copy failed",
        "zip": "it is a zip archive: extract it (unzip) and point --root at the extracted files",
        "gzip": "it is gzip-compressed: extract it (tar xzf / gunzip) first",
        "tar": "it is a tar archive: extract it (tar xf) first",
        "npy": "it is a .npy array, not the expected format",
        "png": "it is a single PNG image",
        "lfs": "it is a Git LFS pointer, not the data: run `git lfs pull` in its repository",
        "text": "it is a text file",
        "unknown": "its first bytes match no known format: it is corrupt",
    }
    return (f"{path} is not {expected}: {hints.get(kind, kind)}. Replace it with the original "
            f"file (download it again if needed).")


def check_kind(path: Path, expected_kind: str, expected: str) -> None:
    """Raise a :class:`DatasetError` unless ``path`` looks like ``expected_kind``."""
    kind = sniff(path)
    if kind == expected_kind:
        return
    if kind == "missing":
        raise DatasetError(f"{path} does not exist (expected {expected}).")
    if kind == "html":
        raise DatasetError(_html_message(path, expected))
    raise DatasetError(_wrong_kind_message(path, kind, expected))


def _restricted_class(module: str, name: str) -> Any:
    module = _PY2_MODULES.get(module, module)
    if (module, name) not in _ALLOWED_GLOBALS:
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a dataset pickle holds only arrays, numbers, "
            f"strings, lists and dicts")
    return getattr(importlib.import_module(module), name)


class _SafeUnpickler(pickle.Unpickler):
    """C unpickler restricted to :data:`_ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        return _restricted_class(module, name)


class _WrongContent(Exception):
    """The pickle is readable but holds something other than what the reader expects."""


def _pickle_failure(path: Path, exc: BaseException, expected: str) -> DatasetError:
    size = describe_size(path.stat().st_size)
    text = str(exc) or type(exc).__name__
    if isinstance(exc, _WrongContent) or "refusing to load" in text:
        return DatasetError(f"{path} is not {expected}: {text}.")
    if isinstance(exc, EOFError) or "truncated" in text.lower() or "ran out of input" in text.lower():
        return DatasetError(
            f"{path} is truncated: the pickle ends early ({size}; {text}). The download or "
            f"copy was interrupted; delete it and download it again.")
    return DatasetError(
        f"{path} is corrupt: it starts like a pickle but cannot be read ({size}; "
        f"{type(exc).__name__}: {text}). Delete it and download it again.")


_PICKLE_ERRORS = (_WrongContent, pickle.UnpicklingError, EOFError, ValueError, TypeError,
                  KeyError, IndexError, AttributeError, UnicodeDecodeError, OverflowError,
                  ImportError, MemoryError)


def load_pickled_dict(path: Path, keys: tuple[str, ...], expected: str, kind: str) -> dict:
    """:func:`load_pickle`, then require a dict holding ``keys``; ``kind`` names the format in
    the error ("a MetaOptNet mini-ImageNet file")."""
    data = load_pickle(path, expected)
    if not isinstance(data, dict) or any(k not in data for k in keys):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        wanted = " and ".join(repr(k) for k in keys)
        raise DatasetError(f"{path} is a pickle but not {kind}: expected keys {wanted}, "
                           f"found {found}")
    return data


def load_pickle(path: Path, expected: str = "a pickle") -> Any:
    """Unpickle ``path`` (latin1 for Python 2 pickles) with clear errors for bad files."""
    path = Path(path)
    check_kind(path, "pickle", expected)
    try:
        with open(path, "rb") as f:
            return _SafeUnpickler(f, encoding="latin1").load()
    except _PICKLE_ERRORS as exc:
        raise _pickle_failure(path, exc, expected) from exc


class _PayloadFreeMemo(dict):
    """Pickle memo that does not keep image payloads (large strings/bytes, arrays, and the
    argument/state tuples carrying them) alive. ``len`` counts dropped entries too, so the
    MEMOIZE opcode (whose index is the memo's length) keeps the writer's numbering; reading
    a dropped entry back raises."""

    def __init__(self) -> None:
        super().__init__()
        self._next = 0

    def __len__(self) -> int:
        return self._next

    def __setitem__(self, key: int, value: Any) -> None:
        self._next = max(self._next, key + 1)
        if _is_payload(value) or (isinstance(value, tuple) and any(map(_is_payload, value))):
            self.pop(key, None)
            return
        super().__setitem__(key, value)

    def __missing__(self, key: int) -> Any:
        raise _WrongContent("an item refers back to an earlier image; this list layout is not "
                            "supported")


def _is_payload(value: Any) -> bool:
    return isinstance(value, np.ndarray) or (
        isinstance(value, (bytes, bytearray, str)) and len(value) > 256)


def _is_finished_item(obj: Any) -> bool:
    """True once a list item is fully built (an array gets its data only at BUILD)."""
    if isinstance(obj, (bytes, bytearray, str)):
        return len(obj) > 0
    return isinstance(obj, np.ndarray) and obj.size > 0


class _ListStreamer(pickle._Unpickler):  # the pure-Python unpickler exposes its opcode table
    """Unpickles a top-level list, passing every item to ``sink`` instead of keeping it.

    Items are taken off the unpickler's stack once two more objects sit above them (so memo
    opcodes after an item still see it, and the module and name strings that protocol 4 pushes
    for STACK_GLOBAL are never mistaken for items), and at every APPEND/APPENDS into the root
    list. At most two items are alive at any time.
    """

    def __init__(self, file: BinaryIO, sink: Callable[[Any], None]) -> None:
        super().__init__(file, encoding="latin1")
        self.memo = _PayloadFreeMemo()
        self._sink = sink
        self._root: list | None = None

    def find_class(self, module: str, name: str) -> Any:
        return _restricted_class(module, name)

    def _emit(self, item: Any) -> None:
        self._sink(item)

    def _after_opcode(self) -> None:
        if self._root is None:
            if not self.metastack and self.stack:
                if not isinstance(self.stack[0], list):
                    raise _WrongContent(f"it holds a {type(self.stack[0]).__name__}, not a list")
                self._root = self.stack[0]
            return
        stack = self.stack
        if len(self.metastack) == 1 and self.metastack[0] and self.metastack[0][-1] is self._root:
            while len(stack) >= 3 and _is_finished_item(stack[0]):
                self._emit(stack.pop(0))

    def _load_appends(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if target is self._root:
            for item in items:
                self._emit(item)
        else:
            for item in items:
                target.append(item)

    def _load_append(self) -> None:
        value = self.stack.pop()
        target = self.stack[-1]
        if target is self._root:
            self._emit(value)
        else:
            target.append(value)


def _stepping(handler: Callable[[Any], None]) -> Callable[[Any], None]:
    def step(self: _ListStreamer) -> None:
        handler(self)
        self._after_opcode()
    return step


_ListStreamer.dispatch = {key: _stepping(handler)
                          for key, handler in pickle._Unpickler.dispatch.items()}
_ListStreamer.dispatch[pickle.APPENDS[0]] = _stepping(_ListStreamer._load_appends)
_ListStreamer.dispatch[pickle.APPEND[0]] = _stepping(_ListStreamer._load_append)


def stream_pickled_list(path: Path, sink: Callable[[int, Any], None],
                        expected: str = "a pickled list of images") -> int:
    """Call ``sink(index, item)`` for every item of the list pickled in ``path``; return the
    number of items. No item is kept after its call, so memory does not grow with the file."""
    path = Path(path)
    check_kind(path, "pickle", expected)
    count = 0

    def counted(item: Any) -> None:
        nonlocal count
        sink(count, item)
        count += 1

    try:
        with open(path, "rb", buffering=1 << 16) as f:
            _ListStreamer(f, counted).load()
    except _PICKLE_ERRORS as exc:
        raise _pickle_failure(path, exc, expected) from exc
    return count


class _FirstItem(Exception):
    def __init__(self, item: Any) -> None:
        super().__init__()
        self.item = item


def first_pickled_item(path: Path, expected: str = "a pickled list of images") -> Any:
    """The first item of a pickled list, reading only as far as needed."""
    def stop(_index: int, item: Any) -> None:
        raise _FirstItem(item)

    try:
        stream_pickled_list(path, stop, expected)
    except _FirstItem as found:
        return found.item
    raise DatasetError(f"{path} holds an empty list; expected {expected}.")


def decode_image(item: Any, where: str, channels: int = 3) -> np.ndarray:
    """uint8 ``[H, W, channels]`` pixels from PNG/JPEG bytes (bytes, a latin1 ``str`` from a
    Python 2 pickle, or a 1-D uint8 array) or from a raw ``[H, W, C]`` uint8 array."""
    if isinstance(item, np.ndarray) and item.ndim == 3:
        if item.dtype != np.uint8 or item.shape[-1] != channels:
            raise DatasetError(f"{where}: expected uint8 [H, W, {channels}] pixels, got "
                               f"{item.dtype} {item.shape}")
        return item
    if isinstance(item, np.ndarray) and item.ndim == 1 and item.dtype == np.uint8:
        data = item.tobytes()
    elif isinstance(item, (bytes, bytearray)):
        data = bytes(item)
    elif isinstance(item, str):
        data = item.encode("latin1")
    else:
        raise DatasetError(f"{where}: expected encoded image bytes, got {type(item).__name__}")
    mode = "RGB" if channels == 3 else "L"
    try:
        with Image.open(io.BytesIO(data)) as img:
            pixels = np.asarray(img.convert(mode), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"cannot decode image {where}: {exc}. The file is corrupt; replace "
                           f"it with a fresh download.") from exc
    return pixels if channels == 3 else pixels[:, :, None]


def _npy_header(f: BinaryIO, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(f)
        return np.lib.format._read_array_header(f, version)  # (3, 0): utf-8 field names
    except (ValueError, EOFError) as exc:
        raise DatasetError(f"{where}: not a valid .npy array header ({exc}); the file is "
                           f"corrupt, download it again.") from exc


def _open_npz_member(archive: zipfile.ZipFile, path: Path, key: str) -> BinaryIO:
    name = f"{key}.npy"
    if name not in archive.namelist():
        keys = ", ".join(n[:-4] for n in archive.namelist() if n.endswith(".npy")) or "none"
        raise DatasetError(f"{path} has no array {key!r} (its arrays: {keys}); is it the "
                           f"right file?")
    return archive.open(name)


def npz_member_info(path: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of array ``key`` in the ``.npz`` at ``path`` (reads only the header)."""
    path = Path(path)
    check_kind(path, "zip", "a NumPy .npz archive")
    try:
        with zipfile.ZipFile(path) as archive, _open_npz_member(archive, path, key) as f:
            shape, fortran, dtype = _npy_header(f, f"{path}:{key}")
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise DatasetError(f"{path} is truncated or corrupt ({exc}); download it "
                           f"again.") from exc
    if fortran or dtype.hasobject:
        raise DatasetError(f"{path}:{key} is stored as {'Fortran-ordered' if fortran else 'object'}"
                           f" data; expected a plain C-ordered uint8 image array")
    return tuple(shape), dtype


def iter_npz_rows(path: Path, key: str, max_chunk_bytes: int = 64 << 20) -> Iterator[np.ndarray]:
    """Array ``key`` of ``path`` in chunks of whole rows (first axis), at most
    ``max_chunk_bytes`` each (at least one row); works for stored and deflated members."""
    path = Path(path)
    shape, dtype = npz_member_info(path, key)
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    rows = max(1, max_chunk_bytes // max(row_bytes, 1))
    try:
        with zipfile.ZipFile(path) as archive, _open_npz_member(archive, path, key) as f:
            _npy_header(f, f"{path}:{key}")
            for start in range(0, shape[0], rows):
                count = min(rows, shape[0] - start)
                data = f.read(count * row_bytes)
                if len(data) != count * row_bytes:
                    raise EOFError(f"array data ends at row {start + len(data) // row_bytes} "
                                   f"of {shape[0]}")
                yield np.frombuffer(data, dtype=dtype).reshape(count, *shape[1:])
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise DatasetError(f"{path} is truncated or corrupt ({exc}); delete it and download it "
                           f"again.") from exc


def file_digest(path: Path, chunk: int = 1 << 18) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _files_under(folder: Path) -> list[Path]:
    return sorted((p for p in folder.rglob("*") if p.is_file()),
                  key=lambda p: p.relative_to(folder).as_posix())


def source_digest(path: Path) -> tuple[int, str]:
    """(size in bytes, sha256) of a source: a file, or a folder (sha256 over the sorted
    ``relative path, file sha256`` lines of every file in it)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size, file_digest(path)
    h = hashlib.sha256()
    total = 0
    for file in _files_under(path):
        total += file.stat().st_size
        h.update(f"{file.relative_to(path).as_posix()}\0{file_digest(file)}\n".encode())
    return total, h.hexdigest()


def source_size(path: Path) -> int:
    """Bytes in a source file or folder (cheap: no hashing)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in _files_under(path))


def missing_files_message(dataset: str, looked_in: Iterable[Path], accepted: Iterable[str],
                          sources: Iterable[str], found_partial: Iterable[str] = ()) -> str:
    """The error for a dataset whose files are not found: where we looked, every accepted
    file name or layout, and where to get them."""
    where = ", ".join(str(p) for p in looked_in)
    lines = [f"{dataset} files not found. Looked in: {where}."]
    partial = list(found_partial)
    if partial:
        lines.append("Incomplete sets found: " + "; ".join(partial) + ".")
    lines.append("Accepted layouts (any one of):")
    lines += [f"  - {a}" for a in accepted]
    lines.append("Where to get them:")
    lines += [f"  - {s}" for s in sources]
    lines.append("Pass the folder with --data-root (bench run) or --root (bench data prepare).")
    return "\n".join(lines)


class Layout:
    """One accepted file layout: a description and the paths (relative to a candidate
    folder) that must all exist for it to be used."""

    def __init__(self, name: str, required: Iterable[str]) -> None:
        self.name = name
        self.required = tuple(required)

    def describe(self) -> str:
        return f"{self.name}: {', '.join(self.required)}"


def candidate_folders(root: Path, subdirs: Iterable[str]) -> list[Path]:
    """``root`` joined with each of ``subdirs`` ("" is ``root`` itself), existing folders only,
    without duplicates, in order."""
    seen: list[Path] = []
    for sub in subdirs:
        folder = root / sub if sub else root
        if folder.is_dir() and folder not in seen:
            seen.append(folder)
    return seen


def find_layout(title: str, root: Path, subdirs: Iterable[str], layouts: Iterable[Layout],
                where_to_get: Iterable[str]) -> tuple[Layout, Path]:
    """The first (folder, layout) whose required files all exist, trying the folders in
    order and, in each, the layouts in order; a :class:`DatasetError` listing the folders
    looked in, every accepted layout and where to get the files otherwise."""
    root = Path(root).expanduser()
    subdirs, layouts = tuple(subdirs), tuple(layouts)
    folders = candidate_folders(root, subdirs)
    partial: list[str] = []
    for folder in folders:
        for layout in layouts:
            present = [r for r in layout.required if (folder / r).exists()]
            if len(present) == len(layout.required):
                return layout, folder
            if present:
                missing = [r for r in layout.required if r not in present]
                partial.append(f"{layout.name} in {folder}: has {', '.join(present)} but not "
                               f"{', '.join(missing)}")
    looked = folders or [root]
    note = "" if root.exists() else f" ({root} does not exist)"
    message = missing_files_message(title, looked, [l.describe() for l in layouts], where_to_get,
                                    partial)
    sub_names = ", ".join(s or "." for s in subdirs)
    raise DatasetError(message.replace("Looked in:", f"Looked in (subfolders {sub_names} of the "
                                       f"root{note}):", 1))


def class_size_problems(counts: Mapping[str, int], what: str = "images") -> list[str]:
    """One line per class folder that holds no ``what`` or fewer than the most common count
    (``counts``: folder -> number of files), naming the folder. A reader that would otherwise
    drop such a folder silently (and so change every split drawn from the class list) refuses
    it instead, unless the user accepts it (:func:`accept_class_problems`)."""
    if not counts:
        return []
    sizes = [n for n in counts.values() if n > 0]
    usual = max(set(sizes), key=lambda n: (sizes.count(n), n)) if sizes else 0
    problems = []
    for folder, n in sorted(counts.items()):
        if n == 0:
            problems.append(f"class folder {folder} holds no {what}")
        elif n < usual:
            problems.append(f"class folder {folder} holds {n} {what}, fewer than the "
                            f"{usual} of the others")
    return problems


def accept_class_problems(problems: list[str], dataset: str, remaining: int,
                          allow_nonstandard: bool) -> None:
    """A :class:`DatasetError` listing ``problems`` (:func:`class_size_problems`) unless
    ``allow_nonstandard``; then one warning saying how many classes remain."""
    if not problems:
        return
    shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5
                                       else "")
    if not allow_nonstandard:
        raise DatasetError(
            f"{dataset}: {shown}. Such a folder would be dropped or unbalanced, changing the "
            "class split; restore its files, or pass --allow-nonstandard (Python: "
            "allow_nonstandard=True) to use the other classes anyway.")
    warnings.warn(f"{dataset}: non-standard data accepted (--allow-nonstandard): {shown}; "
                  f"{remaining} classes remain", stacklevel=3)
