"""``python -m bench table``: its options and the command (the tables are
:mod:`bench.report.table`'s, ``--brief`` :mod:`bench.report.summary`'s)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.commands.import_options import add_import_arguments
from bench.common.arg_types import positive_float
from bench.common.exit_codes import EXIT_USAGE

HELP = "turn result files into accuracy and efficiency tables"


def add_arguments(table: argparse.ArgumentParser) -> None:
    """``bench table``'s options."""
    table.add_argument("folder", type=Path, nargs="?", default=Path("results"))
    table.add_argument("--out", type=Path, default=None, metavar="DIR",
                       help="write the table files here (default: into the results folder; "
                            "when that cannot be written, the tables are still printed)")
    table.add_argument("--strict", action="store_true",
                       help="stop at the first invalid result file (default: leave it out, "
                            "tabulate the rest and list it under the tables)")
    table.add_argument("--baseline", default=None,
                       help="method every other is compared with in comparison.{csv,md} "
                            "(default: the method that declares itself the baseline, MTL)")
    table.add_argument("--margin", type=positive_float, default=1.0,
                       help="equivalence margin in accuracy points for the paired comparisons' "
                            "verdicts (two one-sided tests; default 1.0)")
    add_import_arguments(table)
    table.add_argument("--brief", action="store_true",
                       help="print accuracy, the paired difference from the baseline and the "
                            "training cost with its ratio to the baseline's, a few lines each, "
                            "then the files written (the files are those of the full tables)")


def run(args: argparse.Namespace) -> int:
    """``bench table``: the methods it may import allowed first."""
    # here, not at the top: it imports torch
    from methods.plugins import allow_from_arguments

    allow_from_arguments(args.allow_import, args.methods)
    return cmd_table(args.folder, args.out, args.strict, args)


def cmd_table(folder: Path, out: Path | None = None, strict: bool = False,
              args: argparse.Namespace | None = None) -> int:
    """Print the tables of ``folder`` and write their files into ``out`` (default: the
    folder). The results are read once and the tables built once; files that cannot be
    written never cost the printed tables: without ``out`` a read-only folder is one line of
    note (exit 0); an unwritable ``out`` is an error (exit 2) after the tables are printed.
    ``args``: the paired tables' ``--baseline`` and ``--margin``, and ``--brief``
    (:mod:`bench.report.summary` of the tables built, printed instead of them)."""
    # here, not at the top: the tables import pandas, matplotlib and the registries (torch)
    from bench.report.all_tables import build_tables
    from bench.report.paired_tables import PairedOptions
    from bench.report.summary import summarize
    from bench.store.eval_files import EvalFileError
    from bench.store.result_set import find_result_files, load_result_set
    from bench.store.results import ResultFileError
    from bench.store.written import output_problem, snapshot, written_since

    paired = PairedOptions(args.baseline, args.margin) if args is not None else None
    target = out if out is not None else folder
    brief = bool(getattr(args, "brief", False))
    try:
        files = find_result_files(folder)
        if not files.inputs:
            print(f"no results in {folder} (no run or eval result files under it); nothing "
                  "written", file=sys.stderr)
            return EXIT_USAGE
        why = output_problem(target)
        before = snapshot(target)
        tables = build_tables(load_result_set(files), strict=strict, paired=paired)
        if why is None:
            try:
                tables.write(target)
            except OSError as error:  # a write failed part-way (disk full, ...)
                why = (f"{error.filename}: " if error.filename else "") \
                    + (error.strerror or str(error))
        text = (summarize(tables, None, written_since(target, before) if why is None else None)
                if brief else tables.text(written=why is None))
    except (ResultFileError, EvalFileError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(text)
    if why is not None:
        message = (f"the table files could not be written to {target} ({why})"
                   + ("" if out is not None else "; pass --out DIR to write them elsewhere"))
        print(f"{'error' if out is not None else 'note'}: {message}", file=sys.stderr)
        return EXIT_USAGE if out is not None else 0
    if brief:  # the summary ends with the files written
        return 0
    names = [p.name for p in written_since(target, before)]
    print(f"(written to {target}: {', '.join(names) or 'nothing'})")
    return 0
