"""The command line end to end: list, bad input, smoke runs on glyphs and Omniglot, table."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common.config import RunConfig, resolve_budget
from bench.store.results import read_result

REPO = Path(__file__).resolve().parents[2]


def bench(*args, check=False, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "bench", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_list_prints_methods_datasets_and_budgets():
    out = bench("list", check=True).stdout
    assert "methods:" in out and "mtl" in out
    assert "datasets:" in out and "glyphs" in out and "omniglot" in out
    assert "budgets:" in out and "smoke" in out and "quick" in out and "paper" in out
    assert "  all layers            MAML            iMAML, Meta-MinibatchProx\n" in out
    assert "    RFS: supervised pre-training on all training classes\n" in out


@pytest.mark.parametrize("flag, value, expect", [
    ("--methods", "mtll", "unknown method 'mtll'. Did you mean 'mtl'?"),
    ("--dataset", "glyph5", "unknown dataset 'glyph5'. Did you mean 'glyphs'?"),
])
def test_unknown_names_exit_nonzero_with_choices(flag, value, expect, tmp_path):
    args = {"--methods": "mtl", "--dataset": "glyphs", flag: value}
    proc = bench("run", "--methods", args["--methods"], "--dataset", args["--dataset"],
                 "--out", tmp_path)
    assert proc.returncode == 2
    assert expect in proc.stderr and "Valid" in proc.stderr


@pytest.mark.parametrize("hparam, expect", [
    ("inner_lr=abc", 'method \'maml\': hyperparameter inner_lr must be a number > 0, got "abc"'),
    ("inner_lrr=0.1", "method 'maml' has no hyperparameter 'inner_lrr' (did you mean "
                      "'inner_lr'?). Valid: inner_lr (a number > 0, default 0.01);"),
])
def test_bad_hyperparameters_stop_the_run_before_anything_is_written(hparam, expect, tmp_path):
    proc = bench("run", "--methods", "maml", "--dataset", "glyphs", "--hparam", hparam,
                 "--out", tmp_path / "out")
    assert proc.returncode == 2 and expect in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_missing_data_says_where_and_how(tmp_path):
    proc = bench("run", "--methods", "mtl", "--dataset", "omniglot", "--data-root",
                 tmp_path / "nowhere", "--out", tmp_path)
    assert proc.returncode == 2
    assert "nowhere" in proc.stderr and "download" in proc.stderr.lower()


def test_table_on_missing_folder_is_a_clear_error(tmp_path):
    proc = bench("table", tmp_path / "none")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def smoke_key(dataset: str, shots: int, episodes: int) -> str:
    """The key of an MTL smoke run (seed 0); test episodes other than the default 2000 add the
    settings hash to it."""
    return RunConfig("mtl", dataset, 5, shots, 0, resolve_budget("smoke", "mtl", dataset, shots),
                     episodes=episodes).key


@pytest.mark.slow
def test_smoke_run_on_glyphs_writes_results_skips_reruns_and_tables(tmp_path):
    out = tmp_path / "results"
    args = ("run", "--methods", "mtl", "--dataset", "glyphs", "--shots", "1,5", "--seeds", "0",
            "--budget", "smoke", "--episodes", "60", "--out", out, "--no-progress")
    bench(*args, check=True)
    files = sorted((out / "runs").glob("*.json"))
    keys = [smoke_key("glyphs", 1, 60), smoke_key("glyphs", 5, 60)]
    assert [f.name for f in files] == [f"{key}.json" for key in keys]
    result = read_result(files[0])
    assert result["status"] == "ok" and len(result["test"]["unified"]["accuracies"]) == 60
    assert result["timings"]["device_hours_unit"] == "CPU-hours"
    assert result["timings"]["steps"] == 10 and result["config"]["budget"]["name"] == "smoke"
    assert result["provenance"]["packages"]["torch"]
    first = files[0].read_bytes()
    rerun = bench(*args, check=True)
    assert f"skip {keys[0]}" in rerun.stdout + rerun.stderr
    assert files[0].read_bytes() == first
    table = bench("table", out, check=True).stdout
    assert "glyphs 5-way 1-shot" in table and "| MTL | conv4-32 |" in table
    for name in ("accuracy.csv", "accuracy.md", "efficiency.csv", "efficiency.md"):
        assert (out / name).exists()


@pytest.mark.slow
def test_smoke_run_on_omniglot(tmp_path, omniglot_root):
    out = tmp_path / "results"
    bench("run", "--methods", "mtl", "--dataset", "omniglot", "--data-root", omniglot_root,
          "--shots", "1", "--budget", "smoke", "--episodes", "40", "--out", out, "--no-progress",
          check=True)
    result = json.loads((out / "runs" / f"{smoke_key('omniglot', 1, 40)}.json").read_text())
    assert result["status"] == "ok"
    assert 20.0 < result["test"]["unified"]["mean"] <= 100.0
