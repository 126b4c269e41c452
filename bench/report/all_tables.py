"""Every table and figure of ``bench table``, built once from one loaded result set, then
written.

:func:`build_tables` turns a :class:`bench.store.result_set.ResultSet` into :class:`Tables`:
the Markdown ``bench table`` prints and the files it writes (:mod:`bench.report.output`),
nothing written yet. The accuracy and training-cost tables (:mod:`bench.report.table`), the
paired comparison and time to accuracy (:mod:`bench.report.paired_tables`), the L2-penalty
table (:mod:`bench.report.l2_table`) and the tuning cost (:mod:`bench.report.tuning_table`) all
read that one set; ``--brief`` (:mod:`bench.report.summary`) and ``bench report``
(:mod:`bench.report.html_report`) reuse what was built. :meth:`Tables.write` writes the files;
when it cannot, the text is printed all the same (:meth:`Tables.text` with ``written``
False: the figures' names and notes left out).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.reference import REFERENCE_CSV  # package data: the paper's reported numbers
from bench.report.l2_table import build_l2_table
from bench.report.method_names import recorded_import_notes
from bench.report.output import OutputFile, Section, write_files
from bench.report.paired_tables import PairedOptions, PairedTables, build_paired_tables
from bench.report.table import MainTables, main_tables
from bench.report.tuning_table import build_tuning_table
from bench.store.result_set import EVALS, RESULTS, TUNED, ResultSet, load_result_set


def skipped_section(skipped: list[str]) -> str:
    """The Markdown that lists the files left out of the tables (empty: none)."""
    if not skipped:
        return ""
    return ("\n## Files left out of these tables (not valid; nothing from them is shown)\n\n"
            + "".join(f"- {line}\n" for line in skipped))


@dataclass(frozen=True)
class Tables:
    """Everything ``bench table`` prints and writes for one result set, built before anything
    is written, with the frames ``--brief`` reuses (``main.measured``, ``main.efficiency``,
    ``paired.comparison``)."""

    result_set: ResultSet
    options: PairedOptions  # the paired tables' baseline and margin
    main: MainTables  # accuracy and training cost, with the efficiency figures
    paired: PairedTables  # comparison, time to accuracy, learning curves, plan vs measured
    l2: Section | None  # Table 5, from the eval results (None: none)
    tuning: Section | None  # bench tune's studies (None: none)
    notes: str  # one paragraph per recorded import path that was not imported
    skipped: str  # :func:`skipped_section` (empty with --strict or nothing left out)

    @property
    def files(self) -> tuple[OutputFile, ...]:
        """Every file, in the order :meth:`write` writes them."""
        sections = (self.paired.section, self.main, self.l2, self.tuning)
        return tuple(f for section in sections if section is not None for f in section.files)

    def text(self, written: bool = True) -> str:
        """The Markdown ``bench table`` prints: with the figures' names and notes when the
        files were ``written``, without them when they were not."""
        l2 = self.l2.text(written) if self.l2 is not None else ""
        tuning = self.tuning.text(written) if self.tuning is not None else ""
        return (self.main.accuracy_md + "\n" + self.main.efficiency_md + "\n"
                + self.paired.section.text(written) + (f"\n{l2}" if l2 else "")
                + (f"\n{tuning}" if tuning else "") + self.notes + self.skipped)

    def write(self, out_dir: Path) -> None:
        """Write every file into ``out_dir`` (``OSError`` at the first that cannot be written:
        the files before it are complete, the rest untouched)."""
        write_files(self.files, Path(out_dir))


def build_tables(result_set: ResultSet, reference_csv: Path = REFERENCE_CSV,
                 strict: bool = True, paired: PairedOptions | None = None) -> Tables:
    """Every table of ``result_set``, nothing written. ``strict``: the first file left out
    of the set raises its error instead (run results first; eval results and ``bench tune``
    studies where their tables are built) and nothing is listed; else the files left out are
    listed under the tables (:func:`skipped_section`). ``paired``: the paired tables'
    baseline and margin."""
    options = paired or PairedOptions()
    if strict:
        result_set.check(RESULTS)
    results = result_set.results
    main = main_tables(results, reference_csv)  # first: two results of one run are refused
    paired_tables = build_paired_tables(results, options, result_set.plan)
    if strict:
        result_set.check(EVALS)
    l2 = build_l2_table(result_set.evals, reference_csv)
    if strict:
        result_set.check(TUNED)
    tuning = build_tuning_table(result_set.tuned, results)
    configs = [r["config"] for r in results] + [e["model"]["config"] for e in result_set.evals]
    notes = "".join(f"\n{line}\n" for line in recorded_import_notes(configs))
    skipped = "" if strict else skipped_section(result_set.skipped_lines())
    return Tables(result_set, options, main, paired_tables, l2, tuning, notes, skipped)


def make_tables(folder: Path, out_dir: Path | None = None,
                reference_csv: Path = REFERENCE_CSV, strict: bool = True,
                write: bool = True, paired: Any = None) -> str:
    """Read every result under ``folder``, write the table files into ``out_dir`` (default:
    ``folder``; ``write`` False: nothing is written) and return the Markdown that ``bench
    table`` prints (:func:`build_tables`, then :meth:`Tables.write`). ``strict`` False:
    invalid result, eval and tuned files are left out and listed under the tables instead of
    stopping everything. ``paired``: :class:`bench.report.paired_tables.PairedOptions`
    (baseline, margin) of the paired tables."""
    folder = Path(folder)
    tables = build_tables(load_result_set(folder), reference_csv, strict, paired)
    if write:
        tables.write(Path(out_dir) if out_dir is not None else folder)
    return tables.text(written=write)
