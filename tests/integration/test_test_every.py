"""``bench run --test-every N``: the learning curve also holds test accuracy every N epochs on the
first K test episodes; the run itself (training, selection, final test, identity, key) is the
run without it, and the evaluations are in neither cost clock (smoke budget on glyphs, in this
process)."""
import pytest

from bench.commands.main import main
from bench.common.config import RunConfig, resolve_budget
from bench.store.results import read_result

SMOKE = ("run", "--methods", "protonet", "--dataset", "glyphs", "--shots", "1", "--budget",
         "smoke", "--episodes", "20", "--device", "cpu", "--no-progress")
KEY = RunConfig("protonet", "glyphs", 5, 1, 0, resolve_budget("smoke", "protonet", "glyphs", 1),
                episodes=20).key


@pytest.mark.slow
def test_test_every_records_test_accuracy_and_changes_nothing_else(tmp_path, capsys):
    plain, along = tmp_path / "plain", tmp_path / "along"
    assert main([*SMOKE, "--out", str(plain), "--no-save-model"]) == 0
    assert main([*SMOKE, "--out", str(along), "--no-save-model", "--test-every", "1",
                 "--test-every-episodes", "8"]) == 0
    capsys.readouterr()
    a = read_result(plain / "runs" / f"{KEY}.json")  # the same key: not part of the identity
    b = read_result(along / "runs" / f"{KEY}.json")
    assert b["config"]["test_every"] == 1 and "test_every" not in a["config"]
    # Training, selection and the final test are untouched (no random state shared with it).
    assert a["test"]["unified"]["accuracies"] == b["test"]["unified"]["accuracies"]
    assert a["test"]["native"]["accuracies"] == b["test"]["native"]["accuracies"]
    assert a["selection"] == b["selection"] and a["episode_hash"] == b["episode_hash"]
    strip = ("train_seconds", "run_seconds")
    assert [{k: v for k, v in p.items() if k not in strip} for p in a["learning_curve"]] == \
        [{k: v for k, v in p.items() if k not in strip + ("test_accuracy", "test_episodes")}
         for p in b["learning_curve"]]
    curve = b["learning_curve"]
    assert all(p["test_episodes"] == 8 and 0 <= p["test_accuracy"] <= 100 for p in curve)
    # At the selected epoch the model is the tested one, on the first 8 of the same episodes.
    best = curve[b["selection"]["best_epoch"] - 1]["test_accuracy"]
    final = b["test"]["unified"]["accuracies"][:8]
    assert best == pytest.approx(sum(final) / 8, abs=1e-3)
    # Its time is reported apart and counted in neither clock.
    t = b["timings"]
    assert t["test_every_seconds"] > 0 and "test_every_seconds" not in a["timings"]
    assert t["run_seconds"] == pytest.approx(t["train_seconds"] + t["validation_seconds"])
    assert curve[-1]["run_seconds"] == pytest.approx(t["run_seconds"])


def test_bad_test_every_settings_are_refused_before_anything_runs(tmp_path, capsys):
    code = main([*SMOKE, "--out", str(tmp_path), "--test-every", "1",
                 "--test-every-episodes", "21"])
    assert code == 2 and "test_every_episodes must be between 1 and" in capsys.readouterr().err
    assert main([*SMOKE, "--out", str(tmp_path), "--test-every", "-1"]) == 2
    assert not (tmp_path / "runs").exists()
