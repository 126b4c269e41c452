"""Issue 10 end to end, on the command line (smoke budgets on glyphs, in this process):
two settings are two results and two table rows; the identical command skips; a result of
another configuration at a run's key is refused before anything runs; both cost figures and the
learning curve; --select-on."""
import shutil
from pathlib import Path

import pytest

from bench.commands.main import main
from bench.common.config import RunConfig, resolve_budget
from bench.store.learning_curves import validate_curve
from bench.store.results import read_result
from bench.report.all_tables import make_tables

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "results" / "runs"
SMOKE = ("run", "--methods", "mtl", "--dataset", "glyphs", "--shots", "1", "--budget", "smoke",
         "--episodes", "20", "--device", "cpu", "--no-progress")


def key(method: str, **settings) -> str:
    """The key of a glyphs 1-shot smoke run with 20 test episodes and ``settings``."""
    return RunConfig(method, "glyphs", 5, 1, 0, resolve_budget("smoke", method, "glyphs", 1),
                     episodes=20, **settings).key


def bench(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_two_settings_are_two_runs_and_two_rows_and_a_rerun_skips(tmp_path, capsys):
    out = tmp_path / "X"
    assert bench(capsys, *SMOKE, "--out", out)[0] == 0
    code, stdout, _ = bench(capsys, *SMOKE, "--out", out, "--hparam", "normalize_features=false")
    assert code == 0 and "1 finished, 0 skipped" in stdout
    files = sorted((out / "runs").glob("*.json"))
    assert len(files) == 2
    assert {read_result(f)["config"]["budget"]["hparams"]["normalize_features"]
            for f in files} == {True, False}
    code, stdout, _ = bench(capsys, *SMOKE, "--out", out)
    assert code == 0 and "0 finished, 1 skipped" in stdout and "skip mtl_glyphs_5w1s" in stdout
    table = make_tables(out)
    rows = [line for line in table.splitlines() if line.startswith("| MTL | conv4-32 |")]
    assert len(rows) == 4  # two accuracy rows and two cost rows, one per setting
    assert sum("normalize_features=false" in row for row in rows) == 2
    assert all("episodes=20" in row for row in rows)

    # Cost: both figures, and the learning curve that adds up to them.
    record = read_result(out / "runs" / f"{key('mtl')}.json")
    t = record["timings"]
    assert t["run_device_hours"] >= t["train_device_hours"] == t["device_hours"] > 0
    assert t["run_seconds"] == t["train_seconds"] + t["validation_seconds"]
    assert t["run_device_hours"] == pytest.approx(t["run_seconds"] / 3600)
    curve = validate_curve(record["learning_curve"], record["key"])
    assert [p["epoch"] for p in curve] == [1, 2] and curve[-1]["steps"] == t["steps"]
    assert curve[-1]["train_seconds"] == t["train_seconds"]
    assert curve[-1]["run_seconds"] == pytest.approx(t["run_seconds"])
    assert [p["val_accuracy"] for p in curve] == record["selection"]["val_curve"]
    assert record["data"]["fingerprint"] and record["selection"]["protocol"] == "unified"


@pytest.mark.slow
def test_an_old_result_of_other_settings_at_the_key_is_refused_then_forced(tmp_path, capsys):
    out = tmp_path / "X"
    (out / "runs").mkdir(parents=True)
    old = FIXTURES / "mtl_glyphs_5w1s_quick_seed0.json"  # schema /1: 40 episodes, lr 0.001
    shutil.copy(old, out / "runs" / old.name)
    quick = ("run", "--methods", "mtl", "--dataset", "glyphs", "--shots", "1", "--budget",
             "quick", "--device", "cpu", "--no-progress", "--out", out)
    code, _, err = bench(capsys, *quick)
    assert code == 2 and "another configuration" in err and "episodes=40" in err
    assert "--force" in err and not (out / "claims").exists()  # nothing ran
    assert (out / "runs" / old.name).read_bytes() == old.read_bytes()


@pytest.mark.slow
def test_select_on_native(tmp_path, capsys):
    args = ("run", "--methods", "protonet,mtl", "--dataset", "glyphs", "--shots", "1",
            "--budget", "smoke", "--episodes", "20", "--device", "cpu", "--no-progress",
            "--select-on", "native", "--out", tmp_path)
    code, stdout, _ = bench(capsys, *args)
    assert code == 0 and "note: MTL has no native adaptation" in stdout
    records = {r["config"]["method"]: r for r in map(read_result, (tmp_path / "runs").glob("*"))}
    assert records["protonet"]["selection"]["protocol"] == "native"
    assert records["protonet"]["config"]["select_on"] == "native"
    assert records["mtl"]["selection"]["protocol"] == "unified"
    assert records["mtl"]["config"]["select_on"] == "unified"
    native = key("protonet", select_on="native")
    assert records["protonet"]["key"] == native != key("protonet")
    assert records["mtl"]["key"] == key("mtl")  # the same run as without --select-on
