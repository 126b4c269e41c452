"""``bench table --brief``: accuracy, the paired difference from the baseline and the cost, in a
few lines each, then the files written."""
import re
import shutil
from pathlib import Path

from bench.commands.main import main
from bench.report.summary import brief_summary
from methods import comparison_baseline
from methods.mtl import MTL

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_mtl_is_the_declared_comparison_baseline():
    assert comparison_baseline() is MTL


def test_the_summary_shows_both_halves_of_the_claim_and_where_the_files_are(tmp_path, capsys):
    folder = tmp_path / "results"
    shutil.copytree(FIXTURES / "results", folder)
    assert main(["table", "--brief", str(folder)]) == 0
    text = capsys.readouterr().out.rstrip("\n")
    glyphs = text.split("== glyphs, 5-way, quick budget")[1].split("\n== ")[0]
    # accuracy: MTL has no adaptation of its own; MetaOptNet ran 5-shot only
    assert re.search(r"^MTL\s+\d+\.\d\d ± \d+\.\d\d\s+= unified\s+\d+\.\d\d ± \d+\.\d\d\s+= "
                     r"unified$", glyphs, re.M), glyphs
    assert re.search(r"^MetaOptNet\s+–\s+–\s+\d+\.\d\d ± ", glyphs, re.M), glyphs
    # paired: MetaOptNet 5-shot against MTL under both protocols, with a verdict
    row = re.search(r"^MetaOptNet 5-shot\s+(.*)$", glyphs, re.M).group(1)
    assert len(re.findall(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\] "
                          r"(equivalent|better|worse|inconclusive)", row)) == 2, row
    # cost: hours and the ratio to MTL (the fixtures: 0.05 vs 0.01 CPU-hours)
    assert "Training cost (CPU-hours" in glyphs
    assert re.search(r"^MetaOptNet\s+–\s+0\.0500 \(5\.0x\)$", glyphs, re.M), glyphs
    assert re.search(r"^MTL\s+0\.0100 \(1\.0x\)\s+0\.0100 \(1\.0x\)$", glyphs, re.M), glyphs
    assert "1 failed run(s): maml_glyphs_5w5s_quick_seed0" in text
    last = text.splitlines()[-1]
    assert last.startswith("Written: ")
    for name in ("accuracy.csv", "accuracy.md", "efficiency.csv", "efficiency.md",
                 "comparison.csv", "comparison.md"):
        assert str(folder / name) in last and (folder / name).is_file()
    assert len(text.splitlines()) < 45


def test_the_summary_writes_nothing_itself_and_lists_no_files_when_none_were_written(tmp_path):
    folder = tmp_path / "results"
    shutil.copytree(FIXTURES / "results", folder)
    before = sorted(folder.rglob("*"))
    text = brief_summary(folder)
    assert "Paired difference from MTL" in text and "Written:" not in text
    assert sorted(folder.rglob("*")) == before


def test_a_method_run_with_several_settings_keeps_one_row_per_variant():
    import pandas as pd

    from bench.report.summary import _labelled

    frame = pd.DataFrame({"method": ["MTL", "MTL", "ProtoNet"],
                          "variant": ["", "lr=0.01", "episodes=40"]})
    assert list(_labelled(frame)["method"]) == ["MTL (budget defaults)", "MTL (lr=0.01)",
                                                "ProtoNet"]


def test_the_summary_shows_holm_s_verdict_where_it_differs_from_the_uncorrected_one():
    """The paired fixture's family of three comparisons with MTL at 1 shot: ProtoNet's
    "worse" (p = 0.020) and R2D2's "equivalent" do not survive Holm's correction."""
    fixture = Path(__file__).parents[1] / "fixtures" / "paired"
    text = brief_summary(fixture, None)
    protonet = next(line for line in text.splitlines() if line.startswith("ProtoNet 1-shot"))
    maml = next(line for line in text.splitlines() if line.startswith("MAML 1-shot"))
    assert "worse (Holm: inconclusive)" in protonet
    assert "worse" in maml and "Holm" not in maml  # survives the correction: shown once
