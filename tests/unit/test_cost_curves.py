"""Time to accuracy (bench.report.cost_curves) on constructed learning curves with hand-computed
answers, the curve schema's validation, and the learning-curve figure (bench.report.curve_plots)."""
from __future__ import annotations

import copy
import math
import os
import re
import typing
from pathlib import Path

import pytest

from bench.report.cost_curves import (TIME_TO_ACCURACY_COLUMNS, curve_hours, time_to_accuracy,
                                      time_to_accuracy_csv, time_to_accuracy_markdown)
from bench.store.learning_curves import (CURVE_KEY, CURVE_OPTIONAL, CURVE_REQUIRED, CurveError,
                                         CurvePoint, validate_curve)
from bench.report.curve_plots import curve_figure_name, plot_learning_curves
from bench.store.result_set import load_results

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PAIRED = FIXTURES / "paired"
GOLDEN = PAIRED / "golden"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def curve(seconds_per_epoch, accuracies, val_seconds=600.0, test=None):
    """Cumulative points; ``test``: {epoch: test accuracy}."""
    points, train = [], 0.0
    for epoch, acc in enumerate(accuracies, start=1):
        train += seconds_per_epoch
        point = {"epoch": epoch, "train_seconds": train,
                 "run_seconds": train + val_seconds * epoch, "images_seen": 1000 * epoch,
                 "steps": 10 * epoch, "val_accuracy": acc}
        if test and epoch in test:
            point.update(test_accuracy=test[epoch], test_episodes=200)
        points.append(point)
    return points


def run(method, seed, points, devices=1, device="fixture GPU", unit="GPU-hours",
        val_shots=None, shots=5):
    return {"status": "ok", "key": f"{method}_seed{seed}",
            "config": {"method": method, "dataset": "data", "ways": 5, "shots": shots,
                       "seed": seed, "budget": {"name": "paper", "val_shots": val_shots},
                       "queries": 15, "episodes": 1000},
            "provenance": {"device": device, "device_count": devices},
            "timings": {"device_hours_unit": unit}, CURVE_KEY: points}


HOUR = 3600.0
# The target ("slow") trains 1 hour per epoch: best 72 first at epoch 4 -> 4 hours.
SLOW_0 = curve(HOUR, [50, 60, 70, 72, 71])
# The method ("fast") trains 15 minutes per epoch: 72.5 >= 72 first at epoch 3 -> 0.75 hours;
# its own best, 74, first at epoch 5 -> 1.25 hours.
FAST_0 = curve(HOUR / 4, [55, 65, 72.5, 73, 74, 74])


def _row(frame, method, target):
    rows = frame[(frame["method"] == method) & (frame["target"] == target)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_one_seed_by_hand():
    frame = time_to_accuracy([run("slow", 0, SLOW_0), run("fast", 0, FAST_0)],
                             targets=["slow"])
    assert list(frame.columns) == TIME_TO_ACCURACY_COLUMNS
    assert len(frame) == 1  # the target is not compared with itself; "fast" is no target
    row = _row(frame, "fast", "slow")
    assert (row["target_best"], row["target_hours"], row["target_epoch"]) == (72, 4.0, "4")
    assert (row["method_hours"], row["method_epoch"], row["reached_seeds"]) == (0.75, "3", 1)
    assert row["speedup"] == pytest.approx(4.0 / 0.75)  # 5.33x at the target's best
    assert (row["method_best"], row["method_hours_to_best"]) == (74, 1.25)
    assert row["speedup_at_own_best"] == pytest.approx(4.0 / 1.25)  # 3.2x at its own best
    assert row["speedup_min"] == row["speedup_max"] == pytest.approx(4.0 / 0.75)
    assert (row["unit"], row["clock"], row["metric"], row["note"]) == ("GPU-hours", "train",
                                                                     "val_accuracy", "")
    text = time_to_accuracy_markdown(frame)
    assert ("| data 5-way 5-shot | paper | fast | slow | 72.00 | 4 GPU-hours | 0.75 GPU-hours "
            "| 5.3x | 74.00 | 1.25 GPU-hours | 3.2x | 1 |  |") in text


def test_device_hours_count_every_device():
    # two devices: every hour figure doubles, the speed-ups do not change
    frame = time_to_accuracy([run("slow", 0, SLOW_0, devices=2), run("fast", 0, FAST_0,
                                                                      devices=2)], ["slow"])
    row = _row(frame, "fast", "slow")
    assert (row["target_hours"], row["method_hours"]) == (8.0, 1.5)
    assert row["speedup"] == pytest.approx(4.0 / 0.75)


def test_run_clock_counts_validation_too():
    # run_seconds = training + 600 s of validation per epoch: the target at epoch 4 has
    # 4 h + 4 x 600 s = 4.6667 h; the method at epoch 3 has 0.75 h + 3 x 600 s = 1.25 h.
    frame = time_to_accuracy([run("slow", 0, SLOW_0), run("fast", 0, FAST_0)], ["slow"],
                             clock="run")
    row = _row(frame, "fast", "slow")
    assert row["target_hours"] == pytest.approx(4 + 4 / 6)
    assert row["method_hours"] == pytest.approx(1.25)
    assert row["speedup"] == pytest.approx((4 + 4 / 6) / 1.25)
    assert "training + validation seconds" in time_to_accuracy_markdown(frame, clock="run")


def test_test_every_curve_uses_only_the_epochs_that_have_it():
    # test accuracy on epochs 2 and 4 (target: 58, 70 -> best 70 at 4 h) and 2, 4, 6
    # (method: 63, 71, 72 -> 71 >= 70 first at epoch 4 = 1.0 h): 4x.
    slow = curve(HOUR, [50, 60, 70, 72, 71], test={2: 58, 4: 70})
    fast = curve(HOUR / 4, [55, 65, 72.5, 73, 74, 74], test={2: 63, 4: 71, 6: 72})
    frame = time_to_accuracy([run("slow", 0, slow), run("fast", 0, fast)], ["slow"],
                             metric="test_accuracy")
    row = _row(frame, "fast", "slow")
    assert (row["target_best"], row["target_hours"], row["method_hours"]) == (70, 4.0, 1.0)
    assert row["speedup"] == pytest.approx(4.0)
    # without test points the row says so
    frame = time_to_accuracy([run("slow", 0, SLOW_0), run("fast", 0, FAST_0)], ["slow"],
                             metric="test_accuracy")
    assert _row(frame, "fast", "slow")["note"] == \
        "seed 0: no test_accuracy curve for fast or slow"


def test_several_seeds_by_hand():
    # seed 1: the target reaches its best 74 at epoch 3 (3 h); the method (30 min per epoch)
    # reaches 74 at epoch 3 (1.5 h). Means: target 3.5 h, method 1.125 h -> 3.111x;
    # per-seed speed-ups 5.333x and 2x; target's best on average 73.
    slow_1, fast_1 = curve(HOUR, [52, 62, 74]), curve(HOUR / 2, [60, 70, 74.0, 75])
    results = [run("slow", 0, SLOW_0), run("fast", 0, FAST_0), run("slow", 1, slow_1),
               run("fast", 1, fast_1)]
    row = _row(time_to_accuracy(results, ["slow"]), "fast", "slow")
    assert (row["seeds"], row["paired_seeds"], row["reached_seeds"]) == (2, "0, 1", 2)
    assert (row["target_best"], row["target_hours"], row["method_hours"]) == (73, 3.5, 1.125)
    assert row["speedup"] == pytest.approx(3.5 / 1.125)
    assert (row["speedup_min"], row["speedup_max"]) == pytest.approx((2.0, 4.0 / 0.75))
    assert (row["target_epoch"], row["method_epoch"]) == ("4, 3", "3, 3")
    # own best: 74 at 1.25 h (seed 0) and 75 at 2 h (seed 1): 74.5 at 1.625 h -> 3.5 / 1.625
    assert (row["method_best"], row["method_hours_to_best"]) == (74.5, 1.625)
    assert row["speedup_at_own_best"] == pytest.approx(3.5 / 1.625)


def test_never_reached_says_not_reached():
    results = [run("slow", 0, SLOW_0), run("lagging", 0, curve(HOUR / 4, [40, 50, 60]))]
    frame = time_to_accuracy(results, ["slow"])
    row = _row(frame, "lagging", "slow")
    assert math.isnan(row["method_hours"]) and math.isnan(row["speedup"])
    assert (row["reached_seeds"], row["method_epoch"]) == (0, "–")
    assert row["note"] == "reached in 0 of 1 seeds"
    assert "| not reached | – |" in time_to_accuracy_markdown(frame)
    assert ",lagging,,slow," in time_to_accuracy_csv(frame)
    csv_row = time_to_accuracy_csv(frame).splitlines()[1].split(",")
    assert csv_row[TIME_TO_ACCURACY_COLUMNS.index("speedup")] == ""  # NaN: empty cell


def test_reached_in_some_seeds_only_is_not_reached():
    results = [run("slow", 0, SLOW_0), run("fast", 0, FAST_0), run("slow", 1, curve(HOUR, [52,
               62, 74])), run("fast", 1, curve(HOUR / 2, [60, 70, 73]))]
    row = _row(time_to_accuracy(results, ["slow"]), "fast", "slow")
    assert row["reached_seeds"] == 1 and math.isnan(row["speedup"])
    assert row["method_epoch"] == "3, –"
    assert row["note"] == "reached in 1 of 2 seeds"


def test_targets_by_predicate_and_every_pair_of_targets():
    results = [run("slow", 0, SLOW_0), run("fast", 0, FAST_0),
               run("slower", 0, curve(2 * HOUR, [45, 55, 65]))]
    frame = time_to_accuracy(results, targets=lambda m: m.startswith("slow"))
    pairs = sorted(zip(frame["method"], frame["target"]))
    assert pairs == [("fast", "slow"), ("fast", "slower"), ("slow", "slower"),
                     ("slower", "slow")]
    # slow reaches slower's best (65) at epoch 3 (3 h); slower took 6 h: 2x
    assert _row(frame, "slow", "slower")["speedup"] == pytest.approx(2.0)
    assert time_to_accuracy(results, targets=[]).empty


def test_incomparable_runs_are_not_compared():
    other_device = [run("slow", 0, SLOW_0), run("fast", 0, FAST_0, device="other GPU")]
    row = _row(time_to_accuracy(other_device, ["slow"]), "fast", "slow")
    assert row["seeds"] == 0 and math.isnan(row["speedup"])
    assert row["note"] == ("seed 0: different devices (other GPU x1 vs fixture GPU x1), hours "
                           "not comparable")
    other_shots = [run("slow", 0, SLOW_0, val_shots=5, shots=1),
                   run("fast", 0, FAST_0, shots=1)]
    row = _row(time_to_accuracy(other_shots, ["slow"]), "fast", "slow")
    assert row["note"] == ("seed 0: validated on 1-shot vs 5-shot episodes, accuracies not "
                           "comparable")
    fewer_episodes = [run("slow", 0, SLOW_0), run("fast", 0, FAST_0)]
    fewer_episodes[1]["config"]["budget"]["val_episodes"] = 400
    fewer_episodes[0]["config"]["budget"]["val_episodes"] = 2000
    row = _row(time_to_accuracy(fewer_episodes, ["slow"]), "fast", "slow")
    assert row["speedup"] == pytest.approx(4.0 / 0.75)  # compared, with a warning
    assert row["note"] == ("validated on 400 vs 2000 episodes (the best of the noisier curve "
                           "is biased upward more)")
    no_curve = [run("slow", 0, SLOW_0), run("fast", 0, None)]
    no_curve[1].pop(CURVE_KEY)
    row = _row(time_to_accuracy(no_curve, ["slow"]), "fast", "slow")
    assert row["note"] == "seed 0: no val_accuracy curve for fast"
    assert "| – | – | – |" in time_to_accuracy_markdown(time_to_accuracy(no_curve, ["slow"]))


def test_unmatched_and_failed_seeds_are_named():
    failed = {"status": "failed", "key": "slow_seed1", "error": "boom",
              "config": copy.deepcopy(run("slow", 1, [])["config"])}
    results = [run("slow", 0, SLOW_0), run("fast", 0, FAST_0), run("fast", 1, FAST_0),
               run("fast", 2, FAST_0), failed]
    row = _row(time_to_accuracy(results, ["slow"]), "fast", "slow")
    assert row["note"] == "seed 0 only; slow failed for seed 1; no slow result for seed 2"


def test_fixture_results_and_names_displayed():
    results = load_results(PAIRED)
    names = {"mtl": "MTL", "maml": "MAML"}
    frame = time_to_accuracy(results, {"maml"}, display=lambda m: names.get(m, m))
    row = _row(frame, "MTL", "MAML")  # see tests/fixtures/make_paired_results.py
    # MAML seeds 0, 1: 120 s per epoch, 180 s in epoch 1; best 55.0 / 55.5 at epoch 4 = 540 s
    # MTL seeds 0, 1: 30 s then 20 s per epoch; reaches 55 / 55.5 at epoch 2 = 50 s
    assert row["target_hours"] == pytest.approx(540 / 3600)
    assert row["method_hours"] == pytest.approx(50 / 3600)
    assert row["speedup"] == pytest.approx(10.8)
    assert row["note"] == "seeds 0, 1 only; MAML failed for seed 2"


def test_time_to_accuracy_matches_golden_files():
    results = load_results(PAIRED)
    frame = time_to_accuracy(results, {"maml", "r2d2"})
    outputs = {"time_to_accuracy.csv": time_to_accuracy_csv(frame),
               "time_to_accuracy.md": time_to_accuracy_markdown(frame)}
    if os.environ.get("UPDATE_GOLDEN") == "1":  # regenerate after an intended change
        for name, text in outputs.items():
            (GOLDEN / name).write_text(text)
    for name, text in outputs.items():
        assert text == (GOLDEN / name).read_text(), name


# --- the curve schema ------------------------------------------------------------------------

def test_curve_point_keys_match_the_typed_dict():
    hints = typing.get_type_hints(CurvePoint, include_extras=True)
    optional = {k for k, v in hints.items() if typing.get_origin(v) is typing.NotRequired}
    assert set(hints) == set(CURVE_REQUIRED) | set(CURVE_OPTIONAL)
    assert optional == set(CURVE_OPTIONAL)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.clear(), "non-empty list"),
    (lambda c: c[1].pop("steps"), "point 1 lacks steps"),
    (lambda c: c[1].update(epoch=3), "epoch is 3, expected 2"),
    (lambda c: c[2].update(train_seconds=1.0), "train_seconds decreased"),
    (lambda c: c[0].update(run_seconds=1.0), "run_seconds 1.0 < train_seconds"),
    (lambda c: c[0].update(val_accuracy=101.0), "val_accuracy 101.0 is not a percentage"),
    (lambda c: c[0].update(val_accuracy=float("nan")), "not a finite number"),
    (lambda c: c[0].update(steps=2.5), "not a whole number"),
    (lambda c: c[0].update(test_accuracy="high"), "test_accuracy is 'high'"),
])
def test_bad_curves_are_refused_with_the_run_named(change, message):
    points = copy.deepcopy(SLOW_0)
    change(points)
    with pytest.raises(CurveError, match=re.escape(message)):
        validate_curve(points, "slow_seed0")
    with pytest.raises(CurveError, match="slow_seed0"):
        time_to_accuracy([run("slow", 0, points), run("fast", 0, FAST_0)], ["slow"])


def test_curve_hours_and_options():
    epochs, hours, acc = curve_hours(run("slow", 0, SLOW_0, devices=4))
    assert list(epochs) == [1, 2, 3, 4, 5] and list(hours) == [4.0, 8.0, 12.0, 16.0, 20.0]
    with pytest.raises(ValueError, match="clock must be one of train, run"):
        time_to_accuracy([], ["slow"], clock="wall")
    with pytest.raises(ValueError, match="metric must be one of"):
        time_to_accuracy([], ["slow"], metric="loss")


# --- the figure --------------------------------------------------------------------------------

def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG_SIGNATURE)


def test_one_figure_per_dataset_ways_and_shots(tmp_path):
    written = plot_learning_curves(load_results(PAIRED), tmp_path / "figs", targets={"maml"})
    names = sorted(p.name for p in written)
    assert names == ["learning_curves_glyphs_5w1s.png", "learning_curves_glyphs_5w5s.png"]
    assert all(_is_png(p) for p in written)
    assert sorted(os.listdir(tmp_path / "figs")) == names  # no temporary file left


def _png_width(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:20], "big")  # IHDR width


def test_figure_with_cpu_and_gpu_panels_and_test_curves(tmp_path):
    slow = curve(HOUR, [50, 60, 70, 72, 71], test={2: 58, 4: 70})
    fast = curve(HOUR / 4, [55, 65, 72.5, 73, 74, 74], test={2: 63, 4: 71, 6: 72})
    results = [run("slow", 0, slow), run("fast", 0, fast),
               run("fast", 1, fast, device="cpu", unit="CPU-hours")]
    written = plot_learning_curves(results, tmp_path, targets=["slow"], metric="test_accuracy")
    assert [p.name for p in written] == ["learning_curves_data_5w5s_test.png"]
    assert _is_png(written[0])
    one_panel = plot_learning_curves(results[:2], tmp_path / "one", metric="test_accuracy")
    # GPU and CPU panels: 2 x 6 inches against one panel of at least 8 (figure_kit.MIN_WIDTH_IN)
    assert _png_width(written[0]) > 1.4 * _png_width(one_panel[0])


def test_no_curves_no_figure(tmp_path):
    messages: list[str] = []
    no_curve = run("fast", 0, None)
    no_curve.pop(CURVE_KEY)
    assert plot_learning_curves([no_curve], tmp_path, warn=messages.append) == []
    assert len(messages) == 1 and "no finished run has a validation learning curve" in \
        messages[0]
    assert list(tmp_path.iterdir()) == []


def test_figure_name_is_safe():
    assert curve_figure_name("my data/set", 5, 1) == "learning_curves_my-data-set_5w1s.png"


# --- no method or dataset names in the new bench modules (the project's rule) ----------------

def test_new_modules_name_no_method_or_dataset():
    from datasets import DATASETS
    from methods import METHODS

    names = set()
    for registry in (METHODS, DATASETS):
        names.update(registry.names())
        names.update(getattr(registry, "_aliases", {}))
    bench = Path(__file__).resolve().parents[2] / "bench"
    for module in ("common/cells.py", "report/compare.py", "report/cost_curves.py",
                   "report/curve_plots.py", "report/all_tables.py", "report/output.py",
                   "store/result_set.py"):
        text = (bench / module).read_text().lower()
        hits = [n for n in names if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text)]
        assert not hits, f"bench/{module} names {hits}"
