"""A process that joined a data-parallel group ends with an immediate exit after flushing its
output (bench.run.distributed.finish_process, issue 24 item 6: gloo's threads aborted a normal
interpreter exit); any other process returns its code normally."""
import os
import subprocess
import sys
from pathlib import Path

from bench.run import distributed

REPO = Path(__file__).resolve().parents[2]
CHILD = """
import atexit, sys
import bench.run.distributed as d
atexit.register(lambda: print("atexit ran"))
print("summary line", end="")  # unflushed when the process ends
d._JOINED = True
d.finish_process(3)
print("never printed")
"""


def test_a_process_outside_a_group_gets_its_code_back():
    assert not distributed.joined_process_group()
    assert distributed.finish_process(5) == 5


def test_a_group_member_flushes_then_exits_at_once_with_its_code():
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    assert proc.stdout == "summary line"  # flushed; no interpreter teardown (atexit) ran
