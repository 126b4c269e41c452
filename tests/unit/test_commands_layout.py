"""``bench/commands``: one module per subcommand, the options several subcommands share
declared once (:mod:`bench.common.options`), and the exit codes defined in one place
(:mod:`bench.common.exit_codes`)."""
import argparse
import ast
from pathlib import Path

from bench.commands.main import SUBCOMMANDS, build_parser
from bench.common import exit_codes

BENCH = Path(__file__).resolve().parents[2] / "bench"
SHARED = {"--ways", "--shots", "--seeds", "--queries", "--device", "--precision", "--solver",
          "--select-on", "--budget", "--backbone", "--feature-mode", "--data-root", "--set",
          "--hparam", "--no-progress"}


def _trees(paths):
    for path in paths:
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def test_exit_codes_keep_their_values():
    assert (exit_codes.EXIT_OK, exit_codes.EXIT_FAILED, exit_codes.EXIT_USAGE,
            exit_codes.EXIT_STOPPED) == (0, 1, 2, 2)
    assert (exit_codes.EXIT_INTERRUPTED, exit_codes.EXIT_TERMINATED,
            exit_codes.EXIT_PREEMPTED) == (130, 143, 143)


def test_no_module_defines_exit_codes_of_its_own():
    defined = [f"{path.relative_to(BENCH)}:{node.lineno}"
               for path, tree in _trees(BENCH.rglob("*.py"))
               if path.name != "exit_codes.py"
               for node in ast.walk(tree) if isinstance(node, ast.Assign)
               for target in node.targets
               for name in ast.walk(target)
               if isinstance(name, ast.Name) and name.id.startswith("EXIT_")]
    assert defined == []


def test_shared_options_are_declared_only_in_bench_common_options():
    paths = [*(BENCH / "commands").glob("*.py"), BENCH / "cost" / "speed_args.py"]
    declared = [f"{path.name} {node.args[0].value}"
                for path, tree in _trees(paths) for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
                and node.args and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in SHARED]
    # bench speed's --shots is one number (the budget row it times), not the list of the others
    assert declared == ["speed_args.py --shots"]


def test_every_subcommand_has_a_module_with_its_help_options_and_command():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == ["run", "plan", *list(SUBCOMMANDS)[1:]]
    for name, module in SUBCOMMANDS.items():
        assert module.__name__ == f"bench.commands.{name}"
        assert isinstance(module.HELP, str) and callable(module.add_arguments)
        assert callable(module.run)


def test_a_shared_option_reads_the_same_in_every_subcommand():
    parsers = {name: sub for a in build_parser()._actions
               if isinstance(a, argparse._SubParsersAction) for name, sub in a.choices.items()}

    def option(command, flag):
        action = parsers[command]._option_string_actions[flag]
        return action.type, action.choices, action.metavar

    for flag, commands in (("--ways", ("run", "tune", "speed", "eval")),
                           ("--precision", ("run", "speed", "eval")),
                           ("--device", ("run", "tune", "speed", "eval")),
                           ("--shots", ("run", "tune", "eval"))):
        assert len({option(c, flag) for c in commands}) == 1, flag
