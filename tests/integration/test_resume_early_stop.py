"""A run stopped mid-epoch and resumed ends exactly as an uninterrupted run when the resumed
part holds learning-rate plateau steps and the early stop (issue 11's "also prove"; the
quick budget itself takes minutes per run on a CPU, so this uses smoke shapes with a plateau
schedule of patience 0 and early stopping after 2 epochs without improvement: the
uninterrupted run halves the rate after epochs 2 and 3 and stops after epoch 3 of 8). The
interruption is an error at step 8 (epoch 2, step 3): as after a SIGKILL there, the last
checkpoint is epoch 1's (tests/integration/test_resume.py kills the CLI at the smoke budget)."""
from dataclasses import replace

import pytest
import torch

import bench.run.session as session
from bench.store.checkpoint import checkpoint_path, load_checkpoint
from bench.common.config import RunConfig, resolve_budget
from bench.store.results import read_result, result_path
from bench.sweep.runs import CheckpointPolicy, run_sweep
from datasets import load_dataset


@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs")


def test_plateau_steps_and_early_stop_after_a_resume_match_an_uninterrupted_run(
        glyphs, tmp_path, monkeypatch):
    budget = replace(resolve_budget("smoke", "mtl", "glyphs", 1), schedule="plateau",
                     plateau_patience=0, plateau_factor=0.5, early_stop_patience=2, epochs=8)
    config = RunConfig("mtl", "glyphs", 5, 1, 0, budget, episodes=20)
    cpu, keep = torch.device("cpu"), CheckpointPolicy(keep=True)
    data = {"glyphs": glyphs}
    run_sweep([config], data, cpu, tmp_path / "a", progress=False, checkpoints=keep)

    original, calls = session.parallel_train_step, [0]

    def crashing(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 8:
            raise RuntimeError("simulated kill")
        return original(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(session, "parallel_train_step", crashing)
        summary = run_sweep([config], data, cpu, tmp_path / "b", progress=False,
                            checkpoints=keep)
    assert summary.failed == [config.key]
    saved = load_checkpoint(checkpoint_path(tmp_path / "b", config.key))
    assert saved["progress"]["epochs"] == 1 and saved["progress"]["step_in_epoch"] == 0
    run_sweep([config], data, cpu, tmp_path / "b", progress=False, checkpoints=keep)

    a, b = (read_result(result_path(tmp_path / d, config.key)) for d in ("a", "b"))
    assert b["timings"]["resumes"] == 1
    assert a["timings"]["epochs"] == b["timings"]["epochs"] == 3  # stopped early, of 8
    assert a["selection"] == b["selection"]
    assert a["test"]["unified"]["accuracies"] == b["test"]["unified"]["accuracies"]
    assert a["timings"]["steps"] == b["timings"]["steps"] == 15
    finals = [load_checkpoint(checkpoint_path(tmp_path / d, config.key)) for d in ("a", "b")]
    lrs = [final["optimizer"]["param_groups"][0]["lr"] for final in finals]
    assert lrs[0] == lrs[1] == budget.lr * 0.25  # two plateau steps, both after the resume
    for which in ("model", "best"):
        mine, ref = (f[which] if which == "model" else f[which]["state"] for f in finals[::-1])
        assert mine.keys() == ref.keys()
        for name, value in ref.items():
            assert torch.equal(mine[name], value) if torch.is_tensor(value) \
                else mine[name] == value, f"{which}: {name}"
