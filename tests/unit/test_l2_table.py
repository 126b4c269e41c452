"""The L2-penalty table (the paper's Table 5) from eval results: golden files, the paper's
numbers as reported rows, and eval results never read as run results."""
import os
import shutil
from pathlib import Path

from bench.report.l2_table import make_l2_table, penalty_labels, reported_rows
from bench.report.all_tables import make_tables

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
L2 = FIXTURES / "l2"
GOLDEN = L2 / "golden"
OUTPUTS = ("l2_penalty.csv", "l2_penalty.md")


def test_l2_table_matches_golden_files(tmp_path):
    printed = make_l2_table(L2, tmp_path)
    if os.environ.get("UPDATE_GOLDEN") == "1":  # regenerate after an intended change
        GOLDEN.mkdir(exist_ok=True)
        for name in OUTPUTS:
            shutil.copy(tmp_path / name, GOLDEN / name)
    for name in OUTPUTS:
        assert (tmp_path / name).read_text() == (GOLDEN / name).read_text(), name
    assert printed == (GOLDEN / "l2_penalty.md").read_text()
    assert (tmp_path / "l2_penalty.png").stat().st_size > 10_000


def test_l2_table_content():
    md = (GOLDEN / "l2_penalty.md").read_text()
    header = md.splitlines()[2]
    for penalty in ("0.0001", "0.001", "0.01", "0.1", "0.33", "1", "3", "10"):
        assert f"| λ={penalty} |" in header + " |"
    # the paper's Table 5 as a reported row, in the paper's own columns
    assert ("| MTL (resnet12, reported) | mini test | 5 | 5 | – | – | 76.86‡ | 77.02‡ | "
            "77.28‡ | 77.61‡ | 77.72‡ | 77.55‡ | 76.82‡ | – |") in md
    # a native eval is no point of the curve; two episode counts are two curves (and only the
    # 40-episode one, of several penalties, has a paired row)
    main, paired = md.split("### Paired difference")
    assert "native" not in md and main.count("mtl_glyphs_5w5s_quick_seed0 (") == 2
    assert paired.count("mtl_glyphs_5w5s_quick_seed0 (") == 1
    csv = (GOLDEN / "l2_penalty.csv").read_text()
    assert "mtl_glyphs_5w5s_quick_seed1 (afcf0bb9),MTL,conv4-64,quick,glyphs,glyphs,test,5,5," \
           "15,40,0,0.1,10," in csv


def test_reported_rows_read_the_papers_lambda():
    ref = reported_rows()
    assert sorted(ref["l2_penalty"]) == [0.0001, 0.001, 0.01, 0.1, 0.33, 1.0, 3.0]
    assert ref.loc[ref["l2_penalty"] == 0.33, "mean"].item() == 77.72


def test_penalty_labels_use_more_digits_only_where_one_curve_needs_them():
    assert penalty_labels([[1 / 3, 10.0], [0.33]]) == {0.33: "0.33", 1 / 3: "0.33", 10.0: "10"}
    labels = penalty_labels([[0.33, 1 / 3]])
    assert labels[0.33] != labels[1 / 3]


def test_no_evals_no_l2_table(tmp_path):
    assert make_l2_table(FIXTURES / "results", tmp_path) is None
    assert not (tmp_path / "l2_penalty.csv").exists()


def test_eval_results_and_models_are_not_run_results(tmp_path):
    folder = tmp_path / "results"
    shutil.copytree(FIXTURES / "results", folder)
    shutil.copytree(L2 / "evals", folder / "evals")
    (folder / "models").mkdir()
    (folder / "models" / "notes.json").write_text("{}")  # not a result either
    printed = make_tables(folder, tmp_path / "tables")
    golden = FIXTURES / "golden"
    for name in ("accuracy.csv", "accuracy.md", "efficiency.csv", "efficiency.md"):
        assert (tmp_path / "tables" / name).read_text() == (golden / name).read_text(), name
    assert "(Table 5)" in printed and (tmp_path / "tables" / "l2_penalty.md").exists()


def test_paired_differences_from_the_best_penalty_by_hand():
    """The paired section's cell = mean of per-episode differences from the curve's best
    penalty, with 1.96 std / sqrt(n), read straight from the fixture files."""
    import json

    import numpy as np

    md = make_l2_table(L2, write=False)
    section = md[md.index("### Paired difference"):]
    row = next(line for line in section.splitlines() if "mtl_glyphs_5w5s_quick_seed1" in line)
    files = {c: L2 / "evals" / ("mtl_glyphs_5w5s_quick_seed1-afcf0bb9__glyphs_test_5w5s_15q_40ep"
                                f"_seed0_unified_C{c}_sklearn_fp32.json")
             for c in ("0.1", "0.33", "1", "3", "10")}
    acc = {c: np.array(json.loads(p.read_text())["result"]["accuracies"]) for c, p in files.items()}
    best = max(acc, key=lambda c: acc[c].mean())
    assert best == "1"  # lambda = 1 is the best of this curve: its column says so
    cells = [c.strip() for c in row.strip("|").split("|")][5:]
    assert cells[2] == "best"
    # columns are lambda = 0.1, 0.33, 1, 3, 10, i.e. C = 10, 3, 1, 0.33, 0.1
    for cell, c in zip(cells, ("10", "3", "1", "0.33", "0.1")):
        if c == best:
            continue
        d = acc[c] - acc[best]
        assert cell == f"{d.mean():+.2f} ± {1.96 * d.std(ddof=1) / np.sqrt(d.size):.2f}"
    # a curve of one penalty (the 80-episode evaluation) has no paired row
    assert "| 80 |" not in section
