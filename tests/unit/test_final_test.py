"""The final test of a run (bench.run.train_and_test.evaluate_test_split) evaluates with the run's own
settings: its seed's test episodes and its solver, C and precision, not the defaults."""
from __future__ import annotations

import pytest
import torch

import bench.run.train_and_test as record
from bench.common.config import RunConfig, resolve_budget
from bench.run.train_and_test import draw_episodes, evaluate_test_split
from bench.common.stats import episode_ci95
from bench.run.training import build_method
from datasets import load_dataset


def test_the_final_test_uses_the_runs_seed_solver_and_C(monkeypatch):
    glyphs = load_dataset("glyphs")
    config = RunConfig("mtl", "glyphs", 5, 1, 1, resolve_budget("smoke", "mtl", "glyphs", 1),
                       episodes=6, logreg_c=0.1, solver="batched", precision="bf16")
    calls = []

    def unified(method, loader, episodes, **kwargs):
        calls.append((episodes.digest(), kwargs))
        return [float(i) for i in range(episodes.n_tasks)]

    monkeypatch.setattr(record, "evaluate_unified", unified)
    results, digest = evaluate_test_split(build_method(config, glyphs), glyphs, config,
                                          torch.device("cpu"), progress=False)
    expected = draw_episodes(glyphs.test, 5, 1, config.queries, 6, seed=1)
    assert digest == expected.digest() != draw_episodes(glyphs.test, 5, 1, config.queries, 6,
                                                        seed=0).digest()
    ((seen, kwargs),) = calls
    assert seen == digest
    assert (kwargs["C"], kwargs["solver"], kwargs["precision"]) == (0.1, "batched", "bf16")
    assert results["unified"]["accuracies"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert results["unified"]["mean"] == pytest.approx(2.5)
    assert results["native"] is results["unified"]  # MTL: no adaptation of its own


def test_a_method_with_its_own_adaptation_is_tested_under_both_protocols(monkeypatch):
    """ProtoNet: the unified head and its own adaptation on the same test episodes, each with
    its per-episode accuracies, mean, 95% CI and seconds; both load the test split on the run's
    device, and show a progress bar only where asked."""
    glyphs = load_dataset("glyphs")
    config = RunConfig("protonet", "glyphs", 5, 1, 0,
                       resolve_budget("smoke", "protonet", "glyphs", 1), episodes=4,
                       precision="bf16")
    method = build_method(config, glyphs)
    calls = {}

    def evaluator(name, accuracies):
        def record(m, loader, episodes, **kwargs):
            loader.load(episodes)  # the loader gathers and normalises the test images
            calls[name] = (m, loader.device, episodes.digest(), kwargs)
            return accuracies
        return record

    monkeypatch.setattr(record, "evaluate_unified", evaluator("unified", [50.0, 60.0, 70.0,
                                                                          80.0]))
    monkeypatch.setattr(record, "evaluate_native", evaluator("native", [20.0, 40.0, 40.0,
                                                                        20.0]))
    results, digest = evaluate_test_split(method, glyphs, config, torch.device("cpu"),
                                          progress=False)
    assert set(calls) == {"unified", "native"}
    for name, (m, device, seen, kwargs) in calls.items():
        assert (m, device.type, seen) == (method, "cpu", digest)
        assert kwargs["precision"] == "bf16" and kwargs["progress"] is False
    assert results["native"]["accuracies"] == [20.0, 40.0, 40.0, 20.0]
    assert results["native"]["mean"] == 30.0 and results["unified"]["mean"] == 65.0
    for name in ("unified", "native"):
        assert set(results[name]) == {"accuracies", "mean", "ci95", "seconds"}
        assert results[name]["seconds"] > 0.0


def test_protocol_results_round_accuracies_to_four_decimals_and_keep_the_seconds():
    accuracies = [50.123456, 60.0, 70.00004]
    result = record.protocol_result(accuracies, 1.5)
    assert result == {"accuracies": [50.1235, 60.0, 70.0], "mean": pytest.approx(60.041165),
                      "ci95": episode_ci95(accuracies), "seconds": 1.5}
