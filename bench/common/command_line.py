"""The command a result was made by, as a line that can be pasted back into a shell.

``python -m bench`` runs ``bench/__main__.py``, so ``sys.argv[0]`` is that file's path, which
cannot be pasted back; :func:`pasteable` spells the command as the user typed it
(``python -m bench run ...``, or ``bridgebench run ...`` through the console script), each
argument quoted for the shell where needed. :func:`remembered` keeps it in the environment
(:data:`VARIABLE`) while a command runs, so the processes a sweep starts (``--isolate``,
``--jobs``, Slurm jobs) record their parent's command, not their own ``python -m bench.sweep.launch
JOB``; :func:`current` reads it (provenance's ``command``).
"""
from __future__ import annotations

import contextlib
import os
import shlex
import sys
from pathlib import Path
from typing import Iterator, Sequence

VARIABLE = "BRIDGEBENCH_COMMAND"
CONSOLE_SCRIPT = "bridgebench"


def program() -> str:
    """How the user started the harness: the console script, else ``python -m bench``."""
    return CONSOLE_SCRIPT if Path(sys.argv[0]).name == CONSOLE_SCRIPT else "python -m bench"


def pasteable(argv: Sequence[str]) -> str:
    """``argv`` (the arguments after the program) as a command line to paste back."""
    return " ".join([program(), *map(shlex.quote, argv)])


@contextlib.contextmanager
def remembered(argv: Sequence[str]) -> Iterator[str]:
    """While the block runs, :func:`current` (here and in child processes) is the command of
    ``argv``; the previous value is restored afterwards."""
    previous = os.environ.get(VARIABLE)
    os.environ[VARIABLE] = command = pasteable(argv)
    try:
        yield command
    finally:
        if previous is None:
            os.environ.pop(VARIABLE, None)
        else:
            os.environ[VARIABLE] = previous


def current() -> str:
    """The command this process runs for: the remembered one, else this process's own
    command line (``sys.orig_argv``: the interpreter and its options included)."""
    remembered_command = os.environ.get(VARIABLE)
    if remembered_command:
        return remembered_command
    argv = list(getattr(sys, "orig_argv", sys.argv))
    if argv:
        argv[0] = Path(argv[0]).name
    return shlex.join(argv)
