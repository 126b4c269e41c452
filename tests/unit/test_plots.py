"""Efficiency figures (Figure 2's shape and accuracy vs device-hours) from the fixture results."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.report.efficiency_plots import accuracy_vs_device_hours, figure2, no_reference, paper_points
from bench.report.table import efficiency_rows
from bench.store.result_set import load_results

FIXTURE_RESULTS = Path(__file__).resolve().parents[1] / "fixtures" / "results"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def efficiency() -> pd.DataFrame:
    return efficiency_rows(load_results(FIXTURE_RESULTS))


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG_SIGNATURE)


def test_figure2_from_fixture_results(efficiency, tmp_path):
    # the fixture has MTL and MetaOptNet on glyphs 5-way 5-shot (MTL 5x faster)
    assert set(efficiency["method"]) >= {"MTL", "MetaOptNet"}
    out = tmp_path / "figures" / "figure2.png"
    assert figure2(efficiency, out) == out
    assert _is_png(out)
    assert [p.name for p in out.parent.iterdir()] == ["figure2.png"]  # no temporary left


def test_figure2_overwrites_atomically(efficiency, tmp_path):
    out = tmp_path / "figure2.png"
    out.write_bytes(b"old")
    figure2(efficiency, out)
    assert _is_png(out)


def test_figure2_without_metaoptnet_says_so_and_draws_nothing(efficiency, tmp_path):
    messages: list[str] = []
    out = tmp_path / "figure2.png"
    frame = efficiency[efficiency["method"] != "MetaOptNet"]
    assert figure2(frame, out, warn=messages.append) is None
    assert not out.exists()
    assert len(messages) == 1 and no_reference() in messages[0]
    assert "glyphs 5-way 5-shot" in messages[0]


def test_figure2_message_goes_to_stderr_by_default(efficiency, tmp_path, capsys):
    assert figure2(efficiency.iloc[0:0], tmp_path / "f.png") is None
    assert no_reference() in capsys.readouterr().err


def test_accuracy_vs_device_hours_with_cpu_and_gpu_hours(efficiency, tmp_path):
    assert set(efficiency["unit"]) == {"CPU-hours", "GPU-hours"}
    out = tmp_path / "device_hours.png"
    assert accuracy_vs_device_hours(efficiency, out) == out
    assert _is_png(out)


def test_accuracy_vs_device_hours_without_rows(efficiency, tmp_path):
    messages: list[str] = []
    assert accuracy_vs_device_hours(efficiency.iloc[0:0], tmp_path / "x.png",
                                    warn=messages.append) is None
    assert messages and not (tmp_path / "x.png").exists()


def test_paper_points_are_table4():
    points = paper_points()
    mtl = points[points["method"] == "MTL"].iloc[0]
    assert (mtl["dataset"], mtl["ways"], mtl["shots"]) == ("mini", 5, 5)
    assert mtl["speedup"] == pytest.approx(85.6 / 3.7)
    assert mtl["accuracy"] == pytest.approx(77.72)
    mon = points[points["method"] == "MetaOptNet"].iloc[0]
    assert mon["speedup"] == pytest.approx(1.0)


def test_paper_points_without_reference_file(tmp_path):
    assert paper_points(tmp_path / "missing.csv").empty
