"""One part of what ``bench table`` prints and writes, built before anything is written.

A :class:`Section` holds the Markdown that ``bench table`` prints and the files it writes; each
file is an :class:`OutputFile`, a name and the function that writes it (figures are drawn only
when their files are written). Building never writes, so a folder that cannot be written, or a
write that fails part-way, costs nothing already built: the text is printed all the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable


@dataclass(frozen=True)
class OutputFile:
    """A file of the tables: its name in the output folder and what writes it there."""

    name: str
    write: Callable[[Path], object]  # writes the file at the path given, atomically
    named_errors: bool = False  # an OSError that names no file is raised naming this one


@dataclass(frozen=True)
class Section:
    """The Markdown of one part of the tables and its files, in the order they are written.
    ``unwritten``: the Markdown printed when the files are not written (where it differs: the
    figures' names and notes are left out); None: the same as ``markdown``."""

    markdown: str
    files: tuple[OutputFile, ...] = ()
    unwritten: str | None = None

    def text(self, written: bool = True) -> str:
        """The Markdown printed when the files were written (or were not)."""
        return self.markdown if written or self.unwritten is None else self.unwritten


def write_files(files: Iterable[OutputFile], out_dir: Path) -> None:
    """Write ``files`` into ``out_dir`` one after the other; the first ``OSError`` stops the
    rest (the files written before it are complete, the others untouched)."""
    out_dir = Path(out_dir)
    for output in files:
        path = out_dir / output.name
        try:
            output.write(path)
        except OSError as error:
            if error.filename is not None or not output.named_errors:
                raise
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
