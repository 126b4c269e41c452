"""The one atomic file write of the project: a crash never leaves a half-written file.

:func:`atomic_file` writes into a temporary file in the destination's own folder (so the final
rename never crosses a file system), flushes it and ``fsync``\\ s it, gives it the permissions of
an ordinary new file (:func:`file_mode`: ``0o666`` minus the umask; ``mkstemp`` would leave
``0o600``), and ``os.replace``\\ s the destination: readers see the old file or the new one,
never a mixture. On any error the temporary file is removed and the error propagates
(``OSError`` for storage problems; callers that owe the user a message naming the file, such as
result files and checkpoints, translate it).

Front-ends: :func:`write_bytes_atomic`, :func:`write_text_atomic`, :func:`write_json_atomic`,
:func:`save_torch_atomic`. :func:`create_new` is the other half: create a file only if the name
is free (claims), atomically, with the same permission rule.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_file", "create_new", "file_mode", "save_torch_atomic", "write_bytes_atomic",
           "write_json_atomic", "write_text_atomic"]


def file_mode() -> int:
    """Permissions of an ordinary new file under the current umask: ``0o666 & ~umask``."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_file(path: Path | str, text: bool = False) -> Iterator[IO[Any]]:
    """A handle to write ``path``'s new content into; the file appears (whole) when the block
    ends without an error. ``text=True`` gives a UTF-8 text handle (no newline translation)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with (os.fdopen(fd, "w", encoding="utf-8", newline="") if text
              else os.fdopen(fd, "wb")) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    with atomic_file(path) as handle:
        handle.write(data)


def write_text_atomic(path: Path | str, text: str) -> None:
    with atomic_file(path, text=True) as handle:
        handle.write(text)


def write_json_atomic(path: Path | str, data: Any, indent: int = 1,
                      sort_keys: bool = False) -> None:
    """``data`` as JSON (NaN allowed, as Python writes it) and a final newline."""
    with atomic_file(path, text=True) as handle:
        json.dump(data, handle, indent=indent, sort_keys=sort_keys, allow_nan=True)
        handle.write("\n")


def save_torch_atomic(path: Path | str, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    with atomic_file(path) as handle:
        torch.save(obj, handle)


def create_new(path: Path | str, text: str) -> bool:
    """Create ``path`` holding ``text`` only if no file of that name exists; False if one does.

    The content goes to a temporary file first (flushed and synced), which is then *hard-linked*
    to ``path``: a link fails when the name exists, so of several processes exactly one wins,
    on a local disk as on NFS, and nobody ever sees the file half-written. On a file system
    without hard links an exclusive create (``O_EXCL``) is used instead.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:  # open() applies the umask itself
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        return True
    finally:
        tmp.unlink(missing_ok=True)
