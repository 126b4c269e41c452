"""``bench plan`` / ``bench run --dry-run``: projected device-hours from a fixture ``bench speed``
report, by hand; the commands for runs without a report; nothing starts; and ``bench table``
setting measured hours against a saved plan."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

import bench.cost.plan as plan_module
from bench.commands.main import main
from bench.cost.plan import load_speed_reports, plan_sweep
from bench.store.plan_file import read_plan
from bench.store.results import read_result
from bench.report.all_tables import make_tables

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SPEED = FIXTURES / "speed"
SWEEP = ["--methods", "mtl,maml,protonet,r2d2", "--dataset", "glyphs", "--shots", "1",
         "--budget", "quick", "--device", "cpu", "--speed-reports", str(SPEED)]


@pytest.fixture
def fixture_device(monkeypatch):
    """This machine plans as the fixture report's device."""
    monkeypatch.setattr(plan_module, "device_target", lambda device: ("cpu", "fixture cpu"))


def _configs(capsys, tmp_path, *extra):
    from bench.commands.main import build_parser
    from bench.commands.run_sweep import build_configs
    from methods.plugins import resolve_method

    args = build_parser().parse_args(["run", *SWEEP, "--out", str(tmp_path), *extra])
    methods = [resolve_method(m) for m in args.methods]
    configs, problems = build_configs(args, methods, ["glyphs"], {})
    assert not problems
    return args, configs


def test_projection_by_hand(tmp_path, capsys):
    args, configs = _configs(capsys, tmp_path)
    frame = plan_sweep(configs, load_speed_reports(SPEED), "cpu", "fixture cpu", "cpu")
    rows = frame.set_index("method")
    # quick on glyphs: 8 epochs at most (early stopping: min(60 assumed, 8)) x 50 steps = 400.
    # mtl: 0.9 s x 400 = 360 s = 0.1 h; validation 0.01 s x 100 episodes x 8 epochs = 8 s.
    assert rows.loc["mtl", "steps"] == 400 and rows.loc["mtl", "epochs_assumed"]
    assert rows.loc["mtl", "train_device_hours"] == pytest.approx(0.1)
    assert rows.loc["mtl", "run_device_hours"] == pytest.approx(368 / 3600)
    # maml: 2.7 s x 400 = 1080 s = 0.3 h; validation 0.05 x 100 x 8 = 40 s.
    assert rows.loc["maml", "train_device_hours"] == pytest.approx(0.3)
    assert rows.loc["maml", "run_device_hours"] == pytest.approx(1120 / 3600)
    # protonet's entry was measured with another backbone, r2d2 has none: not projected.
    assert math.isnan(rows.loc["protonet", "train_device_hours"])
    assert math.isnan(rows.loc["r2d2", "train_device_hours"])
    assert frame.attrs["commands"] == [
        "python -m bench speed --methods protonet,r2d2 --dataset glyphs --ways 5 --shots 1 "
        "--budget quick --precision fp32 --device cpu --val-episodes 20"]
    assert (rows["model_bytes"] > 0).all()
    # another device, or --assume-epochs 4 (early-stopping budgets run 4 epochs)
    assert plan_sweep(configs, load_speed_reports(SPEED), "cpu", "other cpu", "cpu")[
        "train_device_hours"].isna().all()
    fewer = plan_sweep(configs, load_speed_reports(SPEED), "cpu", "fixture cpu", "cpu",
                       assume_epochs=4).set_index("method")
    assert fewer.loc["mtl", "train_device_hours"] == pytest.approx(0.05)


def test_bench_plan_prints_totals_and_saves_the_plan(tmp_path, capsys, fixture_device):
    out = tmp_path / "out"
    assert main(["plan", *SWEEP, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Total over 2 of 4 runs with a speed report: 0.4 training device-hours, 0.413 run " \
           "device-hours" in printed
    assert "--methods protonet,r2d2" in printed
    saved = read_plan(out)
    assert sorted(saved) == ["maml_glyphs_5w1s_quick_seed0", "mtl_glyphs_5w1s_quick_seed0"]
    assert saved["mtl_glyphs_5w1s_quick_seed0"]["train_device_hours"] == pytest.approx(0.1)
    assert not (out / "runs").exists()  # nothing started


def test_dry_run_prints_the_plan_and_starts_nothing(tmp_path, capsys, fixture_device):
    out = tmp_path / "out"
    assert main(["run", *SWEEP, "--out", str(out), "--dry-run"]) == 0
    assert "0.4 training device-hours" in capsys.readouterr().out
    assert not out.exists()  # neither runs nor a saved plan


def test_without_reports_it_says_which_command_to_run(tmp_path, capsys):
    assert main(["plan", *SWEEP[:-2], "--speed-reports", str(tmp_path / "none"),
                 "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "--methods mtl,maml,protonet,r2d2 --dataset glyphs" in printed
    assert "no bench speed report in" in printed and read_plan(tmp_path / "out") == {}


def test_bench_table_sets_measured_hours_against_a_saved_plan(tmp_path):
    folder = tmp_path / "results"
    shutil.copytree(FIXTURES / "paired", folder, ignore=shutil.ignore_patterns("golden*"))
    run = read_result(folder / "runs" / "mtl_glyphs_5w1s_quick_seed0.json")  # schema /1, migrated
    measured = run["timings"]["train_device_hours"]
    plan = {"schema": "bridgebench.plan/1", "runs": {"mtl_glyphs_5w1s_quick_seed0": {
        "epochs": 8, "epochs_assumed": True, "train_device_hours": measured / 2,
        "run_device_hours": None}}}
    (folder / "plans").mkdir()
    (folder / "plans" / "plan.json").write_text(json.dumps(plan))
    printed = make_tables(folder, tmp_path / "tables")
    frame = pd.read_csv(tmp_path / "tables" / "plan_vs_measured.csv")
    assert list(frame["key"]) == ["mtl_glyphs_5w1s_quick_seed0"]
    assert frame.loc[0, "train_ratio"] == pytest.approx(2.0)
    assert "Projected (bench plan) vs measured device-hours" in printed
