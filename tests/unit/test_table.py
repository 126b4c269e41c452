"""Golden-file test of ``bench table`` and its errors on bad result files."""
import json
import os
import shutil
from pathlib import Path

import pytest

from bench.store.results import ResultFileError, read_result
from core.atomic import write_json_atomic
from bench.report.table import accuracy_rows
from bench.report.all_tables import make_tables

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GOLDEN = FIXTURES / "golden"
OUTPUTS = ("accuracy.csv", "accuracy.md", "efficiency.csv", "efficiency.md")


def test_tables_match_golden_files(tmp_path):
    printed = make_tables(FIXTURES / "results", tmp_path)
    if os.environ.get("UPDATE_GOLDEN") == "1":  # regenerate after an intended change
        for name in OUTPUTS:
            shutil.copy(tmp_path / name, GOLDEN / name)
    for name in OUTPUTS:
        assert (tmp_path / name).read_text() == (GOLDEN / name).read_text(), name
    assert printed.startswith((GOLDEN / "accuracy.md").read_text())


def test_table_content_follows_the_papers_layout():
    acc = (GOLDEN / "accuracy.md").read_text()
    # MTL over three seeds: t-based CI, no dagger; MetaOptNet single seed: dagger.
    assert "| MTL | conv4-64 | unified (= native) | quick | 61.61 ± 3.56 | 80.86 ± 1.99 |" in acc
    assert "| MetaOptNet | conv4-64 | native | quick | – | 80.92 ± 2.23† |" in acc
    # the paper's numbers appear where method and dataset match (MTL on mini), not elsewhere
    assert "| MTL | resnet12 | reported | paper | – | – | 59.84 ± 0.22‡ | 77.72 ± 0.09‡ |" in acc
    assert "MetaOptNet | resnet12 | reported" not in acc
    assert "maml_glyphs_5w5s_quick_seed0: NonFiniteLossError" in acc
    eff = (GOLDEN / "efficiency.md").read_text()
    assert "| 5.0x |" in eff and "gpu_hours: 3.7" in eff


def _copy_fixture(tmp_path):
    folder = tmp_path / "results"
    shutil.copytree(FIXTURES / "results", folder)
    return folder


def test_malformed_json_names_the_file(tmp_path):
    folder = _copy_fixture(tmp_path)
    bad = folder / "runs" / "broken.json"
    bad.write_text('{"schema": "bridgebench.run/1", ')
    with pytest.raises(ResultFileError, match="broken.json: not valid JSON"):
        make_tables(folder)


def test_schema_violation_names_the_file(tmp_path):
    folder = _copy_fixture(tmp_path)
    path = folder / "runs" / "mtl_glyphs_5w1s_quick_seed0.json"
    data = json.loads(path.read_text())
    del data["test"]["unified"]
    path.write_text(json.dumps(data))
    with pytest.raises(ResultFileError, match="mtl_glyphs_5w1s_quick_seed0.json: 'test' must"):
        make_tables(folder)


def test_result_round_trip(tmp_path):
    source = FIXTURES / "results" / "runs" / "metaoptnet_glyphs_5w5s_quick_seed0.json"
    data = read_result(source)
    write_json_atomic(tmp_path / "copy.json", data)
    assert read_result(tmp_path / "copy.json") == data
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_two_seeds_get_the_t_interval_over_seeds():
    # two finished seeds are enough for a CI over seeds: t(0.975, 1) = 12.7062 times the
    # standard error |a - b| / 2 of their two means; one seed keeps its episode CI
    runs = [read_result(FIXTURES / "results" / "runs" / f"mtl_glyphs_5w1s_quick_seed{s}.json")
            for s in (0, 1)]
    (two,) = accuracy_rows(runs).itertuples(index=False)
    a, b = (r["test"]["unified"]["mean"] for r in runs)
    assert a != b and (two.seeds, two.ci_kind) == (2, "seeds-t95")
    assert two.mean == pytest.approx((a + b) / 2)
    assert two.ci95 == pytest.approx(12.706205 * abs(a - b) / 2, rel=1e-6)
    (one,) = accuracy_rows(runs[:1]).itertuples(index=False)
    assert (one.seeds, one.ci_kind, one.ci95) == (1, "episodes-95",
                                                  runs[0]["test"]["unified"]["ci95"])
