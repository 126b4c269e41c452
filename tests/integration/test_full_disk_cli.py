"""A results folder on a full disk, through the command line (issue 11): ``ENOSPC`` is injected
on the write of a run's model file (the last file a run writes before its result). The command
stops with exit 2 and a message naming the file; every finished result and the run's last
checkpoint survive, nothing half-written is left, and the same command then finishes the run
by testing only. One smoke run on glyphs (tests that need no training are in
tests/unit/test_validate_sweep.py and test_table_files.py)."""
import errno
import shutil
from pathlib import Path

import bench.store.model_files as models
from bench.store.checkpoint import checkpoint_path, load_checkpoint
from bench.commands.main import main
from bench.store.results import read_result, result_path
from interrupted_cli import KEY, RUN  # beside this file (pytest puts it on sys.path)

FINISHED = Path(__file__).resolve().parents[1] / "fixtures" / "results" / "runs" / \
    "mtl_glyphs_5w5s_quick_seed0.json"


def test_a_full_disk_keeps_finished_results_and_the_checkpoint_and_names_the_file(
        tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    earlier = out / "runs" / FINISHED.name
    shutil.copy(FINISHED, earlier)
    kept = earlier.read_bytes()

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(models, "write_bytes_atomic", full)
        assert main([*RUN, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    model = out / "models" / f"{KEY}.pt"
    assert f"cannot write the model file {model}: the disk is full" in err, err
    assert "every finished result are intact" in err
    assert earlier.read_bytes() == kept
    assert not result_path(out, KEY).exists()  # no failure record either
    assert load_checkpoint(checkpoint_path(out, KEY))["progress"]["finished"]
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.suffix == ".claim"]
    assert leftovers == []

    assert main([*RUN, "--out", str(out)]) == 0
    assert "training had finished; testing" in capsys.readouterr().out
    record = read_result(result_path(out, KEY))
    assert record["timings"]["resumes"] == 1 and model.exists()
    assert earlier.read_bytes() == kept
