"""Runner behaviour: NaN loss becomes a failure record, the sweep goes on; quick MTL learns."""
from dataclasses import replace

import pytest
import torch

from bench.common.config import RunConfig, resolve_budget
from bench.store.results import read_result, result_path
from bench.run.train_and_test import evaluate_test_split
from bench.sweep.runs import run_sweep
from bench.run.training import build_method, stream_seed
from datasets import load_dataset
from methods.mtl import MTL


@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs")


def test_nan_loss_writes_a_failure_record_and_the_sweep_goes_on(glyphs, tmp_path, monkeypatch):
    budget = resolve_budget("smoke", "mtl", "glyphs", 1)
    good = RunConfig("mtl", "glyphs", 5, 1, 0, budget, episodes=20)
    bad = RunConfig("mtl", "glyphs", 5, 1, 1, budget, episodes=20)
    original = MTL.loss

    def loss(self, batch):
        value = original(self, batch)
        return value * float("nan") if torch.initial_seed() == 1 else value

    monkeypatch.setattr(MTL, "loss", loss)
    summary = run_sweep([bad, good], {"glyphs": glyphs}, torch.device("cpu"), tmp_path,
                        progress=False)
    assert summary.failed == [bad.key] and summary.finished == [good.key]
    record = read_result(result_path(tmp_path, bad.key))
    assert record["status"] == "failed" and "NonFiniteLossError" in record["error"]
    assert read_result(result_path(tmp_path, good.key))["status"] == "ok"


def test_test_episodes_depend_only_on_the_seed(glyphs):
    budget = resolve_budget("smoke", "mtl", "glyphs", 5)
    a = RunConfig("mtl", "glyphs", 5, 5, 3, budget, episodes=10)
    b = replace(a, method="mtl", budget=replace(budget, lr=0.5))
    torch.manual_seed(0)
    _, digest_a = evaluate_test_split(build_method(a, glyphs), glyphs, a, torch.device("cpu"),
                                      progress=False)
    torch.manual_seed(1)
    _, digest_b = evaluate_test_split(build_method(b, glyphs), glyphs, b, torch.device("cpu"),
                                      progress=False)
    assert digest_a == digest_b
    assert stream_seed(3, "test") != stream_seed(3, "val") != stream_seed(4, "test")
