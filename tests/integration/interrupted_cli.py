"""The interrupted-CLI fixture shared by the resume and distributed tests."""
from bench.common.config import RunConfig, resolve_budget

RUN = ("run", "--methods", "mtl", "--dataset", "glyphs", "--shots", "1", "--budget", "smoke",
       "--episodes", "20", "--device", "cpu", "--no-progress", "--keep-checkpoints")
#: The run's key: 20 test episodes are not the default, so the key carries the settings hash.
KEY = RunConfig("mtl", "glyphs", 5, 1, 0, resolve_budget("smoke", "mtl", "glyphs", 1),
                episodes=20).key

# Runs the real CLI, but sends this process a signal when training step N starts.
INTERRUPTED = """
import os, signal, sys
import bench.run.session as session
step, sig = int(sys.argv[1]), getattr(signal, sys.argv[2])
original, calls = session.parallel_train_step, [0]
def interrupted(*args, **kwargs):
    calls[0] += 1
    if calls[0] == step:
        os.kill(os.getpid(), sig)
    return original(*args, **kwargs)
session.parallel_train_step = interrupted
from bench.commands.main import main
sys.exit(main(sys.argv[3:]))
"""
