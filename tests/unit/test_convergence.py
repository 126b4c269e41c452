"""The converged budget's stopping rule (core.convergence) on synthetic validation curves,
and the budget that carries it (bench.common.config.converged_budget)."""
from __future__ import annotations

import inspect
import math

import pytest

from bench.common.config import CONVERGED_RULE, RunConfig, resolve_budget
from core.budget import TrainBudget
from core.convergence import PlateauRule, has_plateaued


def first_stop(curve: list[float], rule: PlateauRule = CONVERGED_RULE) -> int | None:
    """The epoch (1-based) after which the rule stops training on ``curve``, or None."""
    for epoch in range(1, len(curve) + 1):
        if rule.has_plateaued(curve[:epoch]):
            return epoch
    return None


def saturating(epochs: int, top: float = 90.0, start: float = 50.0, rate: float = 0.15
               ) -> list[float]:
    return [top - (top - start) * math.exp(-rate * e) for e in range(1, epochs + 1)]


def test_a_curve_that_keeps_climbing_never_stops() -> None:
    assert first_stop([50.0 + e for e in range(60)]) is None


def test_a_flat_curve_stops_at_the_first_epoch_the_rule_reads() -> None:
    assert first_stop([70.0] * 30) == CONVERGED_RULE.min_epochs


def test_a_saturating_curve_stops_where_the_last_quarter_gains_under_half_a_point() -> None:
    curve = saturating(60)
    stop = first_stop(curve)
    assert stop is not None
    # by hand: the last ceil(e/4) epochs gain less than 0.5 over the best before them
    w = max(math.ceil(stop / 4), 5)
    assert curve[stop - 1] - curve[stop - w - 1] < 0.5
    w_prev = max(math.ceil((stop - 1) / 4), 5)
    assert curve[stop - 2] - curve[stop - w_prev - 2] >= 0.5


def test_a_peak_followed_by_decline_stops_once_the_peak_leaves_the_window() -> None:
    # best at epoch 16, then overfitting: the window after epoch e is its last
    # max(ceil(e/4), 5) epochs, which no longer holds epoch 16 from e = 22 on (22 - 6 = 16)
    curve = [60 + 2 * e for e in range(1, 17)] + [92.0 - 0.3 * k for k in range(1, 30)]
    assert first_stop(curve) == 22


def test_a_slow_climb_near_the_ceiling_is_not_a_plateau() -> None:
    # MTL on Omniglot 5-way 5-shot (seed 0): a quarter of 12 epochs (3) gained only 0.42
    # points while the curve still rose; the 5-epoch minimum window sees 1.9
    curve = [79.1, 86.1, 87.7, 90.3, 91.2, 91.3, 92.9, 93.0, 94.4, 94.1, 94.7, 94.8]
    assert not CONVERGED_RULE.has_plateaued(curve)
    assert PlateauRule(min_window=1).has_plateaued(curve)


def test_a_gain_of_exactly_min_gain_keeps_training() -> None:
    rule = PlateauRule(min_gain=0.5, window=0.25, min_epochs=2, min_window=1)
    assert not rule.has_plateaued([80.0, 80.0, 80.0, 80.5])
    assert rule.has_plateaued([80.0, 80.0, 80.0, 80.49])


def test_noise_on_a_plateau_still_stops() -> None:
    plateau = [80.0 + (1.0 if e % 2 else -1.0) for e in range(40)]
    # [60, 70, 79, 81, 79, 81, ...]: after epoch 8 the 5-epoch window (best 81) gains 2 over
    # the best before it (79); after epoch 9 the earlier 81 has left the window: gain 0
    assert first_stop([60.0, 70.0] + plateau) == 9


def test_the_gain_is_measured_from_the_best_before_the_window() -> None:
    # an early spike (90 at epoch 2) that the climb after it never reaches again: the best
    # before the window is 90, not the 85 just before it, so the window gains -3, not +2
    rule = PlateauRule(min_gain=0.5, window=0.25, min_epochs=2, min_window=1)
    curve = [50.0, 90.0, 60.0, 70.0, 80.0, 85.0, 86.0, 87.0]
    assert rule.window_epochs(len(curve)) == 2
    assert rule.gain(curve) == pytest.approx(87.0 - 90.0)
    assert rule.has_plateaued(curve)
    assert not rule.has_plateaued(curve[:1] + curve[2:])  # without the spike: +2 points


def test_the_rule_reads_nothing_before_min_epochs() -> None:
    rule = PlateauRule(min_gain=0.5, window=0.25, min_epochs=8)
    assert not rule.has_plateaued([70.0] * 7)
    assert rule.has_plateaued([70.0] * 8)
    assert has_plateaued([70.0] * 3, min_epochs=3, min_window=1)


def test_gain_and_window_by_hand() -> None:
    rule = PlateauRule(min_gain=0.5, window=0.25, min_epochs=2, min_window=1)
    assert rule.window_epochs(8) == 2 and rule.window_epochs(9) == 3 and rule.window_epochs(2) == 1
    assert rule.gain([50, 60, 70, 80, 81, 82, 82.2, 82.4]) == pytest.approx(82.4 - 82)
    assert CONVERGED_RULE.window_epochs(8) == 5 and CONVERGED_RULE.window_epochs(24) == 6
    assert CONVERGED_RULE.gain([50, 60, 70, 80, 81, 82, 82.2, 82.4]) == pytest.approx(82.4 - 70)


@pytest.mark.parametrize("kwargs, message", [
    (dict(min_gain=-1), "min_gain must be >= 0 accuracy points, not -1"),
    (dict(min_gain="1"), "min_gain must be >= 0 accuracy points, not '1'"),
    (dict(window=0), r"window must be a fraction of the epochs in \(0, 1\), not 0"),
    (dict(window=1), r"window must be a fraction of the epochs in \(0, 1\), not 1"),
    (dict(min_epochs=1), "min_epochs must be an integer >= 2 .* not 1"),
    (dict(min_epochs=True), "min_epochs must be an integer >= 2 .* not True"),
    (dict(min_epochs=8.0), "min_epochs must be an integer >= 2 .* not 8.0"),
    (dict(min_window=0), r"min_window must be an integer from 1 to min_epochs - 1 \(7\), not 0"),
    (dict(min_window=8), r"min_window must be an integer from 1 to min_epochs - 1 \(7\), not 8"),
    (dict(min_window=False), r"min_window must be an integer .*, not False"),
    (dict(min_window=2.0), r"min_window must be an integer .*, not 2.0"),
])
def test_bad_rules_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        PlateauRule(**kwargs)


def test_the_edges_of_a_valid_rule_are_accepted() -> None:
    # a zero gain (stop only once the window is worse than before it), the smallest
    # min_epochs, and the window bounds 1 and min_epochs - 1
    assert PlateauRule(min_gain=0, min_epochs=2, min_window=1).has_plateaued([70.0, 69.9])
    assert not PlateauRule(min_gain=0, min_epochs=2, min_window=1).has_plateaued([70.0, 70.0])
    assert PlateauRule(min_window=7).window_epochs(8) == 7


def test_the_function_has_the_rules_defaults() -> None:
    defaults = inspect.signature(has_plateaued).parameters
    rule = PlateauRule()
    assert {k: defaults[k].default for k in ("min_gain", "window", "min_epochs", "min_window")} \
        == {"min_gain": rule.min_gain, "window": rule.window, "min_epochs": rule.min_epochs,
            "min_window": rule.min_window} == {"min_gain": 0.5, "window": 0.25,
                                                "min_epochs": 8, "min_window": 5}
    assert has_plateaued([70.0] * 8) and not has_plateaued([70.0] * 7)
    # called with its defaults: a 5-epoch window (a 6-epoch one would see 10 points gained)
    assert has_plateaued([70.0, 70.0, 80.0, 80.1, 80.1, 80.3, 80.2, 80.2])
    # and a 0.5-point gain (one point gained is not a plateau)
    assert not has_plateaued([70.0, 70.0, 80.0, 80.0, 80.0, 81.0, 80.0, 80.0])


def test_the_window_never_takes_the_whole_curve() -> None:
    # the minimum window would be 5, but a curve of 6 epochs keeps one epoch before it
    assert [CONVERGED_RULE.window_epochs(e) for e in (2, 3, 6, 7, 20, 21)] == [1, 2, 5, 5, 5, 6]


def test_gain_reads_the_window_from_the_end() -> None:
    rule = PlateauRule(min_gain=0.5, window=0.25, min_epochs=2, min_window=1)
    # w = 2: the window is [73, 74], not everything from the third epoch on (which holds 95)
    assert rule.gain([50.0, 60.0, 95.0, 70.0, 71.0, 72.0, 73.0, 74.0]) == pytest.approx(74 - 95)
    assert rule.gain([60.0, 62.0]) == pytest.approx(2.0)  # two epochs are enough
    with pytest.raises(ValueError, match="^the rule needs a curve of at least two epochs$"):
        rule.gain([60.0])


def test_converged_budget_is_quick_trained_to_its_plateau() -> None:
    quick = resolve_budget("quick", "mtl", "glyphs", 1)
    converged = resolve_budget("converged", "mtl", "glyphs", 1)
    assert converged.plateau_stop == CONVERGED_RULE
    assert converged.early_stop_patience is None and converged.epochs >= 40
    same = ("backbone", "steps_per_epoch", "meta_batch", "train_shots", "train_queries",
            "optimizer", "lr", "schedule", "hparams")
    assert all(getattr(quick, f) == getattr(converged, f) for f in same)
    assert quick.plateau_stop is None and "plateau_stop" not in quick.to_dict()


def test_converged_budget_round_trips_through_a_result_config() -> None:
    budget = resolve_budget("converged", "protonet", "omniglot", 5)
    config = RunConfig(method="protonet", dataset="omniglot", ways=5, shots=5, seed=0,
                       budget=budget)
    again = RunConfig.from_dict(config.to_dict())
    assert again == config and again.key == config.key == "protonet_omniglot_5w5s_converged_seed0"
    assert TrainBudget.from_dict(budget.to_dict()) == budget
