"""A results folder read once: which files it holds and what they say.

``bench table``, ``--brief`` and ``bench report`` read a results folder through this module
only. :func:`find_result_files` says which files are there (run results anywhere outside the
folders that hold none, eval results in ``evals/`` folders, ``bench tune`` studies in
``tuned/``); :func:`load_result_set` reads each of them once into a :class:`ResultSet`: the
checked records, the saved plan, and every file that could not be used with its error.

Files from elsewhere are data: a file's contents never raise here and never choose a path; an
invalid file is kept in :attr:`ResultSet.skipped` with the error that names it, and its reader
decides whether that stops everything (``--strict``) or lists it under the tables.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.store.eval_files import EvalFileError, eval_files, read_eval
from bench.store.plan_file import read_plan
from bench.store.results import ResultFileError, RunResult, read_each, read_result
from bench.store.tuned_files import TunedError, TunedStudy, read_tuned_study

TUNED_DIR = "tuned"
"""Folder of a results folder that holds ``bench tune``'s studies (``tuned/*.json``)."""

SKIP_DIRS = {"reference", "speed", "theory", "evals", "models", "plans", TUNED_DIR}
"""Folders of a results folder that hold no run results (evals: ``bench eval``'s, models: model
files, plans: ``bench plan``'s, tuned: ``bench tune``'s studies)."""

RESULTS, EVALS, TUNED = "results", "evals", "tuned"
"""The kinds of file a results folder holds (:attr:`Skipped.kind`)."""


def check_results_folder(folder: Path) -> None:
    """``FileNotFoundError`` or ``NotADirectoryError`` (saying what to do) unless ``folder``
    is a folder."""
    folder = Path(folder)
    if folder.is_file():
        raise NotADirectoryError(f"{folder} is a file, not a folder; pass the results folder "
                                 "(the --out of `python -m bench run`)")
    if not folder.is_dir():
        raise FileNotFoundError(f"results folder {folder} does not exist; run `python -m bench "
                                "run ... --out DIR` first")


def result_files(folder: Path) -> list[Path]:
    """Every ``.json`` file under ``folder`` (recursively, skipping :data:`SKIP_DIRS`)."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*.json")
                  if not SKIP_DIRS.intersection(p.relative_to(folder).parts[:-1]))


def tuned_files(folder: Path) -> list[Path]:
    """Every ``.json`` file directly in ``folder/tuned`` (``bench tune``'s studies), sorted."""
    return sorted((Path(folder) / TUNED_DIR).glob("*.json"))


@dataclass(frozen=True)
class ResultFiles:
    """The files a results folder holds, by kind, each list sorted by path."""

    folder: Path
    results: tuple[Path, ...]
    evals: tuple[Path, ...]
    tuned: tuple[Path, ...]

    @property
    def inputs(self) -> tuple[Path, ...]:
        """The run and eval result files (a folder without any has nothing to tabulate)."""
        return self.results + self.evals


def find_result_files(folder: Path) -> ResultFiles:
    """The files under ``folder`` (:func:`check_results_folder`'s errors when it is not a
    folder)."""
    folder = Path(folder)
    check_results_folder(folder)
    return ResultFiles(folder, tuple(result_files(folder)), tuple(eval_files(folder)),
                       tuple(tuned_files(folder)))


@dataclass(frozen=True)
class Skipped:
    """A file that could not be used, with the error that says why (and names it)."""

    path: Path
    kind: str  # RESULTS, EVALS or TUNED
    error: Exception

    @property
    def message(self) -> str:
        """The line that lists the file under the tables."""
        return f"{self.path}: {self.error}" if self.kind == TUNED else str(self.error)


@dataclass(frozen=True)
class ResultSet:
    """Everything a results folder holds, read once: its run results, eval results and
    ``bench tune`` studies as checked records (each list in its files' order), its saved
    ``bench plan`` (runs by key; empty without a readable one), and the files left out."""

    folder: Path
    files: ResultFiles
    results: list[RunResult]
    evals: list[dict[str, Any]]
    tuned: list[TunedStudy]
    plan: dict[str, dict[str, Any]]
    skipped: tuple[Skipped, ...] = ()

    def skipped_lines(self) -> list[str]:
        """One line per file left out, results first, then evals, then studies."""
        return [s.message for s in self.skipped]

    def check(self, kind: str) -> None:
        """Raise the error of the first file of ``kind`` that could not be used, if any (what
        ``--strict`` stops at)."""
        for skipped in self.skipped:
            if skipped.kind == kind:
                raise skipped.error


def load_result_set(source: Path | ResultFiles) -> ResultSet:
    """Read every file of ``source`` (a folder, or the files :func:`find_result_files` found
    there) once. A file that cannot be used is left out and kept in
    :attr:`ResultSet.skipped`; nothing in any file raises here."""
    files = source if isinstance(source, ResultFiles) else find_result_files(source)
    skipped: list[Skipped] = []
    results: list[RunResult] = []
    for path in files.results:
        try:
            results.append(read_result(path))
        except ResultFileError as error:
            skipped.append(Skipped(path, RESULTS, error))
    evals: list[dict[str, Any]] = []
    for path in files.evals:
        try:
            evals.append(read_eval(path))
        except EvalFileError as error:
            skipped.append(Skipped(path, EVALS, error))
    tuned: list[TunedStudy] = []
    for path in files.tuned:
        try:
            tuned.append(read_tuned_study(path))
        except (TunedError, OSError) as error:
            skipped.append(Skipped(path, TUNED, error))
    return ResultSet(files.folder, files, results, evals, tuned, read_plan(files.folder),
                     tuple(skipped))


def load_results(folder: Path, skipped: list[str] | None = None) -> list[RunResult]:
    """Every run result under ``folder`` (:func:`result_files`). ``skipped`` given: a file
    that fails validation is left out (never averaged) and its error appended there instead
    of raised."""
    check_results_folder(folder)
    return read_each(result_files(folder), read_result, ResultFileError, skipped)
