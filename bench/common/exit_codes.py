"""The exit codes of ``python -m bench`` and of a sweep's child processes, in one place.

Every command and every child process (``--isolate``, ``--jobs``, Slurm tasks) exits with one
of these; the values are part of the command line's contract and never change.
"""
from __future__ import annotations

import signal

#: The command did what was asked (or found nothing left to do).
EXIT_OK = 0
#: It ran, but something failed and was recorded: a run or eval failed (a failure record was
#: written), ``bench data verify`` found a change, a study or a report is unfinished.
EXIT_FAILED = 1
#: Bad input or a setup problem found before any work: one ``error:`` line each, nothing was
#: run or written.
EXIT_USAGE = 2
#: A sweep's child process: nothing useful can run (storage, data or setup problem); the
#: parent stops the sweep (the same value as :data:`EXIT_USAGE`).
EXIT_STOPPED = 2
#: Ctrl-C (SIGINT, 130): finished work and the last checkpoints are kept; rerun the same
#: command to resume.
EXIT_INTERRUPTED = 128 + signal.SIGINT
#: SIGTERM (143), e.g. a cluster pre-empting the job: the checkpoint is saved; rerun the same
#: command to resume.
EXIT_TERMINATED = 128 + signal.SIGTERM
#: The same code, as a sweep's parent names a pre-empted child.
EXIT_PREEMPTED = EXIT_TERMINATED
