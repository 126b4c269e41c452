"""The final test of a run (bench.run.train_and_test.evaluate_test_split) evaluates with the run's own
settings: its seed's test episodes and its solver, C and precision, not the defaults."""
from __future__ import annotations

import pytest
import torch

import bench.run.train_and_test as record
from bench.common.config import RunConfig, resolve_budget
from bench.run.train_and_test import draw_episodes, evaluate_test_split
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
