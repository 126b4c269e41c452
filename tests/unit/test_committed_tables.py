"""The tables committed under ``docs/results/`` are what ``python -m bench table`` makes of the
result files and study journals committed beside them (issue 22: the evidence ships with the
answer). Every table file (``*.csv``, ``*.md`` but the folder's README) of every results folder
is deleted from a copy, regenerated from the copy's results and compared byte for byte; the
figures are regenerated too, and checked to be PNG files (their bytes depend on the fonts)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.commands.main import main

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"
TABLE_SUFFIXES = (".csv", ".md")
#: The folder behind docs/findings.md's tables: it must hold them.
FINDINGS_FOLDER = RESULTS / "omniglot"


def _outputs(folder: Path, suffixes: tuple[str, ...]) -> set[str]:
    """The names of the files ``bench table`` writes at the top of ``folder``."""
    return {p.name for p in folder.iterdir()
            if p.is_file() and p.suffix in suffixes and p.name != "README.md"}


def _tables_folders() -> list[Path]:
    return sorted(p for p in RESULTS.iterdir() if p.is_dir() and _outputs(p, TABLE_SUFFIXES))


def test_the_findings_folder_holds_its_tables():
    assert {"accuracy.md", "comparison.md", "tuning.md"} <= _outputs(FINDINGS_FOLDER,
                                                                      TABLE_SUFFIXES)


@pytest.mark.parametrize("folder", _tables_folders(), ids=lambda p: p.name)
def test_the_committed_tables_regenerate(folder: Path, tmp_path: Path, capsys):
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    tables, figures = _outputs(folder, TABLE_SUFFIXES), _outputs(folder, (".png",))
    for name in tables | figures:
        (copy / name).unlink()
    assert main(["table", str(copy)]) == 0, capsys.readouterr().out
    assert _outputs(copy, TABLE_SUFFIXES) == tables  # no table missing, none left uncommitted
    for name in sorted(tables):
        assert (copy / name).read_text() == (folder / name).read_text(), \
            f"{folder.name}/{name} differs from `python -m bench table {folder}`'s"
    assert _outputs(copy, (".png",)) == figures
    for name in figures:
        assert (copy / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
