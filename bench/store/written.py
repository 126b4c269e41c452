"""Which files a command wrote into a folder: whether it can write there, a snapshot before,
a comparison after.

Every table and figure file is written atomically (:mod:`core.atomic`: a new file renamed over
the old one), so a file written by the command has a new inode or modification time even where
its bytes are unchanged; files it did not write keep both. ``bench table`` lists exactly the
files it wrote this way, whichever module wrote them.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

Snapshot = dict[str, tuple[int, int]]


def output_problem(folder: Path) -> str | None:
    """Why files cannot be written into ``folder`` (created if missing), or None."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        return error.strerror or str(error)
    return None


def snapshot(folder: Path) -> Snapshot:
    """(inode, modification time in ns) of every file directly in ``folder`` (none when it
    does not exist)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return {}
    found = {}
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False):
                stat = entry.stat(follow_symlinks=False)
                found[entry.name] = (stat.st_ino, stat.st_mtime_ns)
        except OSError:
            continue
    return found


def written_since(folder: Path, before: Snapshot) -> list[Path]:
    """The files directly in ``folder`` that are new or rewritten since ``before``, by name."""
    after = snapshot(folder)
    return [Path(folder) / name for name in sorted(after) if before.get(name) != after[name]]
