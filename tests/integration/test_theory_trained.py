"""End-to-end runs of the trained-network part of ``python -m bench theory`` (CPU, small)."""
from __future__ import annotations

import argparse

import pandas as pd
import pytest

from bench.theory import cli
from bench.theory.report import rows_frame, summarize
from bench.theory.sweeps import SweepGrid, trained_networks_needed, trained_seed
from bench.theory.tasks import ProblemConfig
from bench.theory.trained import TrainConfig

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:FutureWarning"  # raised inside torch.func
)


def test_cli_trained_run_writes_trained_rows_and_logs(tmp_path):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args([
        "--out", str(tmp_path), "--seeds", "0", "--depths", "2", "3", "--lam-taus", "0", "0.5",
        "--sweep-depth", "3", "--test-tasks", "2", "--no-validate", "--steps", "20",
        "--trained", "--widths", "32", "--trained-depths", "2", "3",
        "--trained-lam-taus", "0", "0.5", "--trained-seeds", "0", "--inner-steps", "10",
        "--device", "cpu",
    ])
    assert cli.run(args) == 0
    runs = pd.read_csv(tmp_path / "trained_runs.csv")
    grid = SweepGrid(depths=(2, 3), lam_taus=(0.0, 0.5), sweep_depth=3)
    assert len(runs) == trained_networks_needed(grid) == 5
    summary = pd.read_csv(tmp_path / "summary.csv")
    trained = summary[summary["source"] == "trained"]
    assert set(trained["sweep"]) == {"depth", "train_lam_tau", "test_lam_tau_hat"}
    assert trained["diff_mean"].notna().all() and (trained["width"] == 32).all()


def test_cli_reports_a_diverging_inner_loop_with_exit_code_1(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args([
        "--out", str(tmp_path), "--seeds", "0", "--depths", "2", "--lam-taus", "0", "5",
        "--sweep-depth", "2", "--test-tasks", "2", "--no-validate", "--steps", "5",
        "--trained", "--widths", "16", "--trained-depths", "2", "--trained-lam-taus", "5",
        "--trained-seeds", "0", "--inner-steps", "1", "--device", "cpu",
    ])
    assert cli.run(args) == 1
    assert "inner-steps" in capsys.readouterr().err


@pytest.mark.slow
def test_trained_mtl_and_anil_are_closer_at_depth_12_than_at_depth_2():
    """Measured on seeds 0 and 1 (width 128, 300 steps): the mean difference falls from about
    22.7 at L = 2 to about 16.2 at L = 12. Width 32 vs 512 at L = 4 showed no consistent order
    at this size, so it is not asserted."""
    problem = ProblemConfig(n_train_tasks=10, n_train_points=8, n_test_tasks=5, n_support=3,
                            n_query=5)
    grid = SweepGrid(depths=(2, 12), lam_taus=(0.0,), sweep_depth=12)
    train = TrainConfig(width=128, steps=300, inner_steps=5)
    rows = []
    for seed in (0, 1):
        seed_rows, log = trained_seed(seed, grid, train, problem)
        rows += seed_rows
        assert all(run.final_loss < 0.01 * run.initial_loss for run in log)
    summary = summarize(rows_frame(rows))
    depth = summary[summary["sweep"] == "depth"].set_index("depth")["diff_mean"]
    assert depth[12] < depth[2]
