"""``python -m bench report``: its options and the command (the page is
:mod:`bench.report.html_report`'s)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.common.arg_types import positive_float
from bench.common.exit_codes import EXIT_OK, EXIT_USAGE
from bench.report.html_report import DEFAULT_NAME, write_report
from bench.store.results import ResultFileError

HELP = ("one self-contained HTML page of a results folder: tables, figures, footnotes and "
        "provenance")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``bench report``."""
    parser.add_argument("folder", type=Path, nargs="?", default=Path("results"),
                        help="results folder (the --out of `bench run`; default: results)")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE",
                        help=f"the HTML file to write (default: FOLDER/{DEFAULT_NAME})")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first invalid result file (default: leave it out and "
                             "list it under the tables)")
    parser.add_argument("--baseline", default=None,
                        help="method the comparison table compares every other with (default: "
                             "the declared baseline, MTL)")
    parser.add_argument("--margin", type=positive_float, default=1.0,
                        help="equivalence margin in accuracy points (default 1.0)")


def run(args: argparse.Namespace) -> int:
    """``bench report``: check the folder and where the page goes, then write it."""
    # here, not at the top: the readers pull in torch, pandas and the method registry
    from bench.report.paired_tables import PairedOptions
    from bench.store.eval_files import EvalFileError
    from bench.store.result_set import find_result_files
    from bench.store.written import output_problem

    out = args.out if args.out is not None else Path(args.folder) / DEFAULT_NAME
    try:
        files = find_result_files(args.folder)
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if not files.inputs:
        print(f"error: no results in {args.folder} (no run or eval result files under it); "
              "run `python -m bench run ... --out DIR` first", file=sys.stderr)
        return EXIT_USAGE
    if out.is_dir():
        print(f"error: --out {out} is a folder; give the HTML file's path (e.g. "
              f"{out / DEFAULT_NAME})", file=sys.stderr)
        return EXIT_USAGE
    why = output_problem(out.parent)
    if why is not None:
        print(f"error: cannot write {out} ({why}); pass --out FILE somewhere writable",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        path = write_report(files, out, PairedOptions(args.baseline, args.margin),
                            args.strict)
    except (ResultFileError, EvalFileError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"report written to {path}")
    return EXIT_OK
