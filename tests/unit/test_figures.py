"""Every figure, drawn from the fixture results, checked for what a reader of a paper needs:
titles and axis labels that say what is plotted, short legend names, error bars, y ranges
chosen from the CIs, and tick labels that do not overlap (the renderer's own text extents)."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

from bench.report.curve_plots import learning_curve_figures
from bench.report.figure_kit import log_ticks, short_names, tick_label_overlaps
from bench.report.l2_table import CURVE, l2_figure, measured_rows, reported_rows
from bench.store.eval_files import load_evals
from bench.report.efficiency_plots import device_hours_figure, figure2_figure
from bench.report.table import efficiency_reference, efficiency_rows
from bench.store.result_set import load_results
from bench.theory.report import figure1_figure

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ROOT = FIXTURES.parents[1]


def _gallery():
    spec = importlib.util.spec_from_file_location("figure_gallery",
                                                  ROOT / "scripts" / "figure_gallery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def efficiency() -> pd.DataFrame:
    return efficiency_rows(load_results(FIXTURES / "results"))


def _legend_texts(figure) -> list[str]:
    return [t.get_text() for legend in figure.legends for t in legend.get_texts()]


def _footnote(figure) -> str:
    return "\n".join(t.get_text() for t in figure.texts)


def test_figure2_says_which_speedup_draws_cis_and_fits_y_to_them(efficiency):
    figure = figure2_figure(efficiency, warn=pytest.fail)
    title = figure._suptitle.get_text()
    assert "run device-hours" in title and "training steps only" in title
    (axis,) = figure.axes
    assert axis.get_xlabel().startswith(f"speed-up vs {efficiency_reference().display}")
    assert "accuracy" in axis.get_ylabel()
    rows = efficiency[efficiency[efficiency_reference().speedup_column].notna()]
    bars = [c for c in axis.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == len(rows) and all(c.has_yerr for c in bars)
    low = float((rows["accuracy_unified"] - rows["accuracy_unified_ci95"]).min())
    high = float((rows["accuracy_unified"] + rows["accuracy_unified_ci95"]).max())
    bottom, top = axis.get_ylim()
    assert bottom <= low and top >= high  # every CI inside the panel
    assert top - bottom <= 1.25 * (high - low)  # and the range is the CIs', not wider
    names = _legend_texts(figure)
    assert "MTL" in names and efficiency_reference().display in names
    assert all(len(n) <= 50 for n in names)  # the variant went to the footnote
    assert "lr=0.001" in _footnote(figure) and not any("lr=" in n for n in names)
    assert tick_label_overlaps(figure) == []


def test_device_hours_names_the_quantity_and_has_bars_over_seeds(efficiency):
    figure = device_hours_figure(efficiency, warn=pytest.fail)
    assert len(figure.axes) == 3  # glyphs 1-shot, 5-shot (CPU-hours), mini (GPU-hours)
    for axis in figure.axes:
        assert "bench.common.timing" not in axis.get_xlabel()
        assert "device" not in axis.get_xlabel() or "hours" in axis.get_xlabel()
        assert axis.get_xlabel().startswith("run (training + validation) ")
    several = efficiency[efficiency["seeds"] > 1]
    bars = [c for a in figure.axes for c in a.containers if isinstance(c, ErrorbarContainer)]
    assert sum(c.has_xerr for c in bars) == len(several) > 0
    assert all(c.has_yerr for c in bars)
    assert "standard deviation" in _footnote(figure)
    assert tick_label_overlaps(figure) == []


def test_learning_curves_title_once_mean_band_and_faint_seeds():
    results = load_results(FIXTURES / "paired")
    figures = dict(learning_curve_figures(results, targets={"maml"}))
    assert sorted(figures) == ["learning_curves_glyphs_5w1s.png",
                               "learning_curves_glyphs_5w5s.png"]
    figure = figures["learning_curves_glyphs_5w1s.png"]
    assert "glyphs 5-way 1-shot" in figure._suptitle.get_text()
    (axis,) = figure.axes
    assert "glyphs" not in axis.get_title()  # the title is printed once
    names = _legend_texts(figure)
    assert "mtl (3 seeds)" in names and "maml: best" in names
    seeds = sum(1 for r in results if r["status"] == "ok" and r["config"]["shots"] == 1)
    faint = [line for line in axis.get_lines() if line.get_alpha() == pytest.approx(0.3)]
    assert len(faint) == seeds
    assert len(axis.collections) == 4  # a band for each of the four methods with 2+ seeds
    assert tick_label_overlaps(figure) == []


def test_learning_curve_ticks_do_not_collide_on_a_narrow_log_axis():
    figures = learning_curve_figures(_gallery().narrow_curves(), targets=["slow"],
                                     clock="train")
    ((_, figure),) = figures
    assert tick_label_overlaps(figure) == []
    for axis in figure.axes:
        assert len([t for t in axis.get_xticklabels() if t.get_text()]) >= 2


def test_figure1_has_integer_depth_ticks_and_says_what_the_band_is():
    summary = pd.read_csv(FIXTURES / "theory" / "summary.csv")
    two_depths = summary[(summary["sweep"] != "depth") | summary["depth"].isin([2, 3])]
    figure = figure1_figure(two_depths)
    depth_axis = figure.axes[0]
    figure.canvas.draw()
    low, high = depth_axis.get_xlim()
    ticks = [t for t in depth_axis.get_xticks() if low <= t <= high]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert "standard deviation" in _footnote(figure) and "3 task seed" in _footnote(figure)
    assert tick_label_overlaps(figure) == []


def test_l2_figure_names_each_curve_once_with_a_footnote():
    evals = measured_rows(load_evals(FIXTURES / "l2"))
    frame = pd.concat([evals.drop(columns=["_episode_hash", "_accuracies"]), reported_rows()],
                      ignore_index=True)
    figure = l2_figure(frame)
    names = _legend_texts(figure)
    assert len(names) == len(set(names)) == frame.groupby(CURVE, dropna=False).ngroups
    assert "MTL (a)" in names and "MTL (a): model" in _footnote(figure)
    assert tick_label_overlaps(figure) == []


@pytest.mark.parametrize("lo,hi", [(0.00021, 0.00048), (0.00065, 0.00095), (1e-6, 10.0),
                                   (0.9, 1.1), (0.3, 40.0), (2.0, 3.0), (0.0123, 0.0125)])
def test_log_ticks_are_inside_spread_out_and_few(lo, hi):
    ticks = log_ticks(lo, hi)
    assert 2 <= len(ticks) <= 6
    assert all(lo <= t <= hi for t in ticks) and ticks == sorted(set(ticks))
    gaps = [math.log10(b / a) for a, b in zip(ticks, ticks[1:])]
    assert min(gaps) >= math.log10(hi / lo) / 7.0 - 1e-12


def test_short_names_letter_a_method_only_where_its_rows_differ():
    rows = [("MTL", [("backbone", "conv4"), ("device", "cpu")]),
            ("MTL", [("backbone", "resnet12"), ("device", "cpu")]),
            ("MTL", [("backbone", "conv4"), ("device", "cpu")]),
            ("ANIL", [("backbone", "conv4"), ("device", "cpu")])]
    names, notes = short_names(rows)
    assert names == ["MTL (a)", "MTL (b)", "MTL (a)", "ANIL"]
    assert notes == ["All: device cpu", "MTL (a): backbone conv4", "MTL (b): backbone resnet12",
                     "ANIL: backbone conv4"]


def test_tick_label_overlaps_finds_crowded_labels():
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 2))
    axis = figure.add_subplot()
    axis.set_xticks([0.0, 0.01, 0.02])
    axis.set_xticklabels(["0.00070", "0.00080", "0.00090"])
    assert len(tick_label_overlaps(figure)) >= 1
