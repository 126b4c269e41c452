"""The command line answers at once: building it (``python -m bench --help``, a subcommand's
``--help``) imports no torch and none of the other heavy libraries; each subcommand imports
them where it runs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "numpy", "pandas", "scipy", "sklearn", "matplotlib", "qpth", "cvxpy")
PROBE = """
import json, sys
from bench.commands.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))
"""


@pytest.mark.parametrize("argv", [["--help"], ["speed", "--help"], ["tune", "--help"],
                                  ["report", "--help"], ["theory", "--help"], ["run", "--help"],
                                  ["eval", "--help"], ["table", "--help"], ["list", "--help"],
                                  ["data", "--help"]])
def test_help_imports_no_torch(argv):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "usage: python -m bench" in done.stdout
    assert json.loads(lines[-1]) == []
