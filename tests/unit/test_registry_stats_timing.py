"""Registry errors, CI arithmetic and the timing rule."""
import math

import numpy as np
import pytest
import torch

from core.registry import Registry, UnknownNameError
from bench.common.stats import episode_ci95, seed_ci95
from bench.common.timing import SectionTimer, device_hours


def test_registry_did_you_mean_and_choices():
    reg = Registry("method")
    reg.register("metaoptnet", "svm")(object())
    reg.register("mtl")(object())
    with pytest.raises(UnknownNameError) as err:
        reg.get("metaoptnt")
    msg = str(err.value)
    assert "Did you mean 'metaoptnet'?" in msg and "metaoptnet, mtl" in msg
    assert reg.canonical("SVM") == "metaoptnet"


def test_registry_rejects_duplicates():
    reg = Registry("dataset")
    reg.register("glyphs")(1)
    with pytest.raises(ValueError):
        reg.register("glyphs")(2)


def test_episode_ci_hand_computed():
    # accs 50, 60, 70, 80: mean 65, sample std sqrt(166.67)=12.9099; 1.96*12.9099/2 = 12.6517
    assert episode_ci95([50, 60, 70, 80]) == pytest.approx(12.65170, abs=1e-4)


def test_seed_ci_hand_computed():
    # means 70, 72, 74: std 2, t(0.975, 2) = 4.302653; 4.302653*2/sqrt(3) = 4.968275
    assert seed_ci95([70, 72, 74]) == pytest.approx(4.968275, abs=1e-5)
    assert math.isnan(seed_ci95([70.0]))


def test_timer_synchronises_before_every_clock_read_and_excludes_other_sections():
    events = []
    ticks = iter([0.0, 2.0, 2.5, 10.0, 10.0, 11.0])

    def clock():
        events.append("clock")
        return next(ticks)

    def sync(device):
        events.append("sync")

    timer = SectionTimer(torch.device("cpu"), clock=clock, sync=sync)
    with timer.section("train"):
        pass
    with timer.section("validation"):
        pass
    with timer.section("train"):
        pass
    assert events == ["sync", "clock"] * 6
    assert timer.total("train") == pytest.approx(2.0 + 1.0)
    assert timer.total("validation") == pytest.approx(7.5)
    assert device_hours(timer.total("train"), n_devices=4) == pytest.approx(3.0 / 3600 * 4)


def test_the_smallest_samples_and_float32_input():
    # two values are enough for both intervals: 1.96 * |a - b| / sqrt(2) / sqrt(2) and
    # t(0.975, 1) = 12.706205 * |a - b| / 2
    assert episode_ci95([50.0, 60.0]) == pytest.approx(9.8)
    assert seed_ci95([70.0, 72.0]) == pytest.approx(12.706205, rel=1e-6)
    assert math.isnan(episode_ci95([50.0]))
    # float32 accuracies (a tensor's .numpy()) are computed in float64, like Python floats
    values = [0.1, 0.7, 0.3, 0.9, 0.2, 0.6]
    as32 = np.asarray(values, dtype=np.float32)
    as64 = as32.astype(np.float64).tolist()
    assert episode_ci95(as32) == episode_ci95(as64)
    assert seed_ci95(as32) == seed_ci95(as64)
