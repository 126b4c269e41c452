"""``bench table`` writes the paired comparison, time to accuracy and the learning-curve figures
(bench.report.paired_tables), end to end on fixture result files: golden files, the expected verdicts,
the flags, and older results without learning curves (a note, never an error)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.commands.main import main
from bench.common.exit_codes import EXIT_USAGE
from bench.report.paired_tables import OUTPUTS, PairedOptions, resolve_baseline
from bench.report.all_tables import make_tables

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PAIRED = FIXTURES / "paired"
GOLDEN = PAIRED / "golden_table"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    copy = tmp_path / "results"
    shutil.copytree(PAIRED, copy, ignore=shutil.ignore_patterns("golden*"))
    return copy


def test_bench_table_writes_the_paired_tables_and_figures(folder, capsys):
    assert main(["table", str(folder)]) == 0
    printed = capsys.readouterr().out
    if os.environ.get("UPDATE_GOLDEN") == "1":  # regenerate after an intended change
        GOLDEN.mkdir(exist_ok=True)
        for name in OUTPUTS:
            shutil.copy(folder / name, GOLDEN / name)
    for name in OUTPUTS:
        assert (folder / name).read_text() == (GOLDEN / name).read_text(), name
    assert (GOLDEN / "comparison.md").read_text() in printed
    assert (GOLDEN / "time_to_accuracy.md").read_text() in printed
    for name in ("learning_curves_glyphs_5w1s.png", "learning_curves_glyphs_5w5s.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "comparison.csv" in printed and "time_to_accuracy.md" in printed


def test_the_expected_verdicts_against_the_declared_baseline(folder):
    make_tables(folder)
    frame = pd.read_csv(folder / "comparison.csv", keep_default_na=False)
    assert set(frame["baseline"]) == {"MTL"}  # the method that declares itself the baseline
    verdicts = {(m, p): v for m, p, v in zip(frame["method"], frame["protocol"],
                                             frame["verdict"])}
    assert verdicts == {
        ("R2D2", "unified"): "equivalent", ("R2D2", "native"): "equivalent",  # within 1 point
        ("ProtoNet", "unified"): "worse", ("ProtoNet", "native"): "worse",
        ("MAML", "unified"): "worse", ("MAML", "native"): "worse",
        ("ANIL", "unified"): "not paired", ("ANIL", "native"): "not paired"}  # no MTL 5-shot
    md = (folder / "comparison.md").read_text()
    assert "two one-sided tests (TOST)" in md and "margin 1 point(s)" in md  # footer: method
    # Holm over the 1-shot family (3 methods x 2 protocols against MTL): only MAML survives
    holm = {(m, p): v for m, p, v in zip(frame["method"], frame["protocol"],
                                         frame["verdict_holm"])}
    assert holm == {
        ("R2D2", "unified"): "inconclusive", ("R2D2", "native"): "inconclusive",
        ("ProtoNet", "unified"): "inconclusive", ("ProtoNet", "native"): "inconclusive",
        ("MAML", "unified"): "worse", ("MAML", "native"): "worse",
        ("ANIL", "unified"): "not paired", ("ANIL", "native"): "not paired"}
    assert list(frame["holm_m"]) == [6] * 6 + [0] * 2
    assert md.endswith("Holm's correction was applied over 6 comparisons in glyphs 5-way "
                       "1-shot quick against MTL.\n")
    tta = pd.read_csv(folder / "time_to_accuracy.csv")
    # the targets are the classes with a cell of the paper's Table 1 (not ProtoNet, MTL)
    assert set(tta["target"]) == {"MAML", "R2D2"} and set(tta["clock"]) == {"train", "run"}
    mtl_vs_maml = tta[(tta["method"] == "MTL") & (tta["target"] == "MAML")
                      & (tta["clock"] == "train")].iloc[0]
    assert mtl_vs_maml["speedup"] == pytest.approx(0.15 / 0.0138889, rel=1e-4)


def test_margin_and_baseline_flags(folder):
    assert main(["table", str(folder), "--margin", "0.3"]) == 0
    frame = pd.read_csv(folder / "comparison.csv")
    r2d2 = frame[(frame["method"] == "R2D2") & (frame["protocol"] == "unified")].iloc[0]
    # -0.54 [-1.00, -0.07]: not inside (-0.3, +0.3), significant: worse
    assert r2d2["verdict"] == "worse" and r2d2["margin"] == 0.3
    assert "margin 0.3 point(s)" in (folder / "comparison.md").read_text()
    assert main(["table", str(folder), "--baseline", "R2D2"]) == 0  # any spelling of a name
    frame = pd.read_csv(folder / "comparison.csv")
    assert set(frame["baseline"]) == {"R2D2"} and "MTL" in set(frame["method"])


def test_a_bad_baseline_or_margin_is_refused_before_anything_is_written(folder, capsys):
    assert main(["table", str(folder), "--baseline", "nosuchmethod"]) == EXIT_USAGE
    assert "unknown method 'nosuchmethod'" in capsys.readouterr().err
    assert not list(folder.glob("*.md")) and not list(folder.glob("*.png"))
    with pytest.raises(SystemExit):
        main(["table", str(folder), "--margin", "0"])


def test_resolve_baseline():
    assert resolve_baseline(None) == "mtl"
    assert resolve_baseline("multi-task") == "mtl"  # an alias
    recorded = [{"config": {"method": "my-plugin"}}]
    assert resolve_baseline("my-plugin", recorded) == "my-plugin"  # a method of the results


def test_results_without_learning_curves_are_skipped_with_a_note(folder, tmp_path):
    for path in sorted((folder / "runs").glob("r2d2_*.json")):
        data = json.loads(path.read_text())
        del data["learning_curve"]
        path.write_text(json.dumps(data))
    out = tmp_path / "tables"
    make_tables(folder, out)
    md = (out / "time_to_accuracy.md").read_text()
    assert "3 of 11 finished runs have no learning curve" in md
    assert "r2d2_glyphs_5w1s_quick_seed0" in md
    tta = pd.read_csv(out / "time_to_accuracy.csv")
    assert set(tta["target"]) == {"MAML"} and "R2D2" not in set(tta["method"])
    comparison = pd.read_csv(out / "comparison.csv")  # the paired comparison needs no curve
    assert "R2D2" in set(comparison["method"])


def test_older_results_folder_without_any_curve(tmp_path):
    printed = make_tables(FIXTURES / "results", tmp_path)
    md = (tmp_path / "time_to_accuracy.md").read_text()
    assert "have no learning curve" in md and "learning-curve figure not drawn" in md
    assert not list(tmp_path.glob("learning_curves_*.png"))
    assert (tmp_path / "comparison.md").exists() and "## Paired comparison with MTL" in printed


def test_paired_options_default():
    assert PairedOptions() == PairedOptions(None, 1.0)


def test_test_every_curves_give_test_accuracy_rows_and_a_test_figure(folder, tmp_path):
    for path in sorted((folder / "runs").glob("*_5w1s_*.json")):
        data = json.loads(path.read_text())
        for point in data.get("learning_curve", []):
            if point["epoch"] % 2 == 0:  # --test-every 2
                point.update(test_accuracy=point["val_accuracy"] - 1.0, test_episodes=10)
        path.write_text(json.dumps(data))
    out = tmp_path / "tables"
    make_tables(folder, out)
    tta = pd.read_csv(out / "time_to_accuracy.csv")
    assert set(tta["metric"]) == {"val_accuracy", "test_accuracy"}
    assert "Test accuracy on the reduced --test-every episodes" in \
        (out / "time_to_accuracy.md").read_text()
    assert (out / "learning_curves_glyphs_5w1s_test.png").exists()
