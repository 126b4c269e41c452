"""Command line: ``python -m bench {run,plan,eval,table,report,list,speed,tune,data,theory}``.

The top-level parser and the dispatch only: each subcommand's module under
:mod:`bench.commands` adds its own options (``add_arguments``) and runs it (``run``). Building
the parser imports no torch (``python -m bench --help`` answers at once); each subcommand
imports what it needs when it runs.
"""
from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import Sequence

from bench.commands import data, report, run, speed, table, theory, tune
from bench.commands import eval as evaluate  # the module names are the subcommands'
from bench.commands import list as listing
from bench.commands.config_file import ConfigFileError, apply_config_file
from bench.common import command_line
from bench.common.exit_codes import EXIT_INTERRUPTED, EXIT_USAGE
from core.registry import UnknownNameError

#: The subcommands' modules, in the order ``--help`` lists them (``plan`` after ``run``):
#: each has its ``HELP`` line, ``add_arguments(parser)`` and ``run(args)``.
SUBCOMMANDS: dict[str, ModuleType] = {
    "run": run, "table": table, "report": report, "list": listing, "speed": speed,
    "eval": evaluate, "data": data, "tune": tune, "theory": theory}


def build_parser() -> argparse.ArgumentParser:
    """``python -m bench``'s parser: every subcommand with its options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="bridgebench: multi-task learning vs gradient-based meta-learning for "
                    "few-shot classification (after Wang, Zhao & Li, ICML 2021).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in SUBCOMMANDS.items():
        module.add_arguments(sub.add_parser(name, help=module.HELP))
        if name == "run":
            run.add_plan_parser(sub)  # `bench plan`: `run --dry-run` (see plan_argv)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line), with a ``--config`` file's defaults, and
    run the subcommand; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parsed, plan = run.plan_argv(argv)  # `bench plan` = `bench run --dry-run` + a saved plan
    parser = build_parser()
    try:
        apply_config_file(parser, parsed)  # --config FILE: defaults that flags override
    except ConfigFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(parsed)
    args.save_plan = plan
    with command_line.remembered(argv):  # provenance's command, in child processes too
        return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    """Run ``args.command``; a bad name or value anywhere is one ``error:`` line (exit 2)."""
    try:
        return SUBCOMMANDS[args.command].run(args)
    except UnknownNameError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
