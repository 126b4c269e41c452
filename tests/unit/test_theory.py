"""Tests for bench.theory: kernels, Lemma 1's predictors, sweeps and trained networks.

Sizes are small so that the whole file runs in well under a minute on a busy 2-core CPU.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from torch.func import jacrev

from bench.theory import cli, predictors as P
from bench.theory.kernels import ReluNetConfig, relu_kernels, relu_kernels_all_depths
from bench.theory.network import (
    empirical_kernels, empirical_ntk, empirical_ntk_products, forward, head_output, init_params,
)
from bench.theory.report import depth_ratios, format_ratios, rows_frame, summarize
from bench.theory.sweeps import (
    KERNEL_VARIANTS, SweepGrid, all_points, flow_time, kernel_predictions, kernel_seed,
)
from bench.theory.tasks import (
    ProblemConfig, TaskSet, label_std, make_tasks, rescale_labels, standardize_labels,
)
from bench.theory.trained import (
    TrainConfig, adapt_head, adapted_residual, query_predictions, train_anil, train_mtl,
)
from bench.theory.validation import validate_cell

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:FutureWarning"  # raised inside torch.func
)

SMALL = ProblemConfig(n_train_tasks=6, n_train_points=5, n_test_tasks=4, n_support=3, n_query=4)
BIASED = ReluNetConfig(b_std=0.3)


def sphere_points(n: int, dim: int = 10, seed: int = 0) -> torch.Tensor:
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x * math.sqrt(dim) / x.norm(dim=-1, keepdim=True)


def small_kernels(depth: int = 5, seed: int = 0) -> tuple[P.TaskKernels, object]:
    tasks = make_tasks(seed, SMALL)
    full = relu_kernels(all_points(tasks), None, depth)
    kern = P.TaskKernels.from_full(
        full.ntk, full.nngp, SMALL.n_train_tasks, SMALL.n_train_tasks * SMALL.n_train_points,
        SMALL.n_test_tasks, SMALL.n_support, SMALL.n_query,
    )
    return kern, tasks


# ------------------------------------------------------------------------------------ kernels

@pytest.mark.parametrize("config", [ReluNetConfig(), BIASED])
def test_kernels_are_symmetric_positive_semidefinite(config):
    every = relu_kernels_all_depths(sphere_points(30), None, 12, config)
    for matrix in (*every.ntk, *every.nngp):
        assert torch.allclose(matrix, matrix.T, atol=1e-12)
        eigenvalues = torch.linalg.eigvalsh(matrix)
        assert eigenvalues.min() >= -1e-10 * eigenvalues.max()


def test_kernel_diagonals_follow_the_he_fixed_point():
    """With He init and no bias, K(x, x) = q and Theta(x, x) = L q (q = 2 ||x||^2 / d)."""
    x = sphere_points(7) * torch.linspace(0.5, 2.0, 7, dtype=torch.float64).unsqueeze(-1)
    q = 2.0 * (x * x).sum(-1) / x.shape[-1]
    every = relu_kernels_all_depths(x, None, 6)
    for depth in range(1, 7):
        assert torch.allclose(every.nngp[depth - 1].diagonal(), q, rtol=1e-12)
        assert torch.allclose(every.ntk[depth - 1].diagonal(), depth * q, rtol=1e-12)


def test_kernels_batch_and_cross_blocks_agree_with_the_full_matrix():
    x = sphere_points(9)
    full = relu_kernels(x, None, 4, BIASED)
    cross = relu_kernels(x[:4], x[4:], 4, BIASED)
    assert torch.allclose(cross.ntk, full.ntk[:4, 4:], atol=1e-12)
    assert torch.allclose(cross.nngp, full.nngp[:4, 4:], atol=1e-12)
    batched = relu_kernels(torch.stack([x[:5], x[4:]]), None, 4, BIASED)
    assert torch.allclose(batched.ntk[1], full.ntk[4:, 4:], atol=1e-12)


def test_kernel_inputs_are_checked():
    with pytest.raises(ValueError, match="feature dimension"):
        relu_kernels(torch.zeros(3, 4, dtype=torch.float64),
                     torch.zeros(3, 5, dtype=torch.float64), 2)
    with pytest.raises(ValueError, match="w_std"):
        ReluNetConfig(w_std=0.0)


@pytest.mark.parametrize("config", [ReluNetConfig(), BIASED])
def test_empirical_ntk_matches_the_full_jacobian_contraction(config):
    x1, x2 = sphere_points(5, seed=1), sphere_points(3, seed=2)
    params = init_params(10, 24, 4, torch.Generator().manual_seed(0), config=config)
    jac1 = jacrev(lambda p: forward(p, x1, config))(params)
    jac2 = jacrev(lambda p: forward(p, x2, config))(params)
    reference = sum(jac1[k].reshape(5, -1) @ jac2[k].reshape(3, -1).T for k in jac1)
    assert torch.allclose(empirical_ntk(params, x1, x2, config), reference, atol=1e-12)
    assert torch.allclose(empirical_ntk_products(params, x1, x2, config), reference, atol=1e-12)
    head = {"head": params["head"]}
    jac_head = jacrev(lambda h: forward({**params, **h}, x1, config))(head)["head"].reshape(5, -1)
    jac_head2 = jacrev(lambda h: forward({**params, **h}, x2, config))(head)["head"].reshape(3, -1)
    nngp = empirical_kernels(params, x1, x2, config).nngp
    assert torch.allclose(nngp, jac_head @ jac_head2.T, atol=1e-12)


def test_empirical_kernels_approach_the_analytic_ones_as_width_grows():
    points = sphere_points(8)
    errors = [validate_cell(points, 3, width, draws=3, seed=0) for width in (64, 512, 2048)]
    ntk = [row.ntk_error_mean_kernel for row in errors]
    nngp = [row.nngp_error_mean_kernel for row in errors]
    assert ntk[0] > ntk[1] > ntk[2] and nngp[0] > nngp[1] > nngp[2]
    assert ntk[2] < 0.05 and nngp[2] < 0.05


# ------------------------------------------------------------------------------------- tasks

def test_tasks_have_the_paper_shapes_and_unit_variance_inputs():
    tasks = make_tasks(3)
    assert tasks.x_train.shape == (20, 10, 10) and tasks.y_train.shape == (20, 10)
    assert tasks.x_support.shape == (20, 5, 10) and tasks.x_query.shape == (20, 10, 10)
    for x in (tasks.x_train, tasks.x_support, tasks.x_query):
        assert torch.allclose((x * x).mean(-1), torch.ones((), dtype=x.dtype), atol=1e-12)
    assert (tasks.y_train > 0).all()
    again = make_tasks(3)
    assert torch.equal(again.y_query, tasks.y_query)
    assert not torch.equal(make_tasks(4).y_query, tasks.y_query)


def test_standardized_inputs_use_training_statistics():
    tasks = make_tasks(0, ProblemConfig(normalization="standardize"))
    flat = tasks.x_train.reshape(-1, 10)
    assert torch.allclose(flat.mean(0), torch.zeros(10, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(flat.std(0), torch.ones(10, dtype=torch.float64), atol=1e-12)
    with pytest.raises(ValueError, match="normalization"):
        ProblemConfig(normalization="whiten")


# -------------------------------------------------------------------------------- predictors

def test_t_matrix_matches_its_spectral_form():
    kern, _ = small_kernels()
    k_ss = kern.k_ss[0]
    values, vectors = torch.linalg.eigh(k_ss)
    spectral = vectors @ torch.diag(-torch.expm1(-0.3 * values) / values) @ vectors.T
    assert torch.allclose(P.t_matrix(k_ss, 0.3), spectral, atol=1e-10)
    assert torch.count_nonzero(P.t_matrix(k_ss, 0.0)) == 0


def test_phi_mtl_keeps_k_only_on_the_diagonal_blocks():
    kern, _ = small_kernels()
    phi = P.phi_mtl(kern)
    n = kern.points_per_task
    assert torch.equal(phi[:n, :n], kern.theta_tt[:n, :n])
    assert torch.allclose(phi[:n, n:2 * n], kern.theta_tt[:n, n:2 * n] - kern.k_tt[:n, n:2 * n])


def test_zero_lambda_tau_makes_phi_anil_equal_theta():
    kern, _ = small_kernels()
    assert torch.allclose(P.phi_anil(kern, 0.0), kern.theta_tt, rtol=1e-14, atol=0)
    assert not torch.allclose(P.phi_anil(kern, 0.3), kern.theta_tt)


def test_training_g_is_the_inner_loop_residual_map():
    """G_tau(X_i, X_i, Y_i) = (I - E_i) Y_i: the identity behind the cancellation."""
    kern, tasks = small_kernels()
    e = P.training_decays(kern, 0.4)
    expected = (tasks.y_train.unsqueeze(-1) - e @ tasks.y_train.unsqueeze(-1)).reshape(-1)
    assert torch.allclose(P.g_training(kern, tasks.y_train, 0.4), expected, atol=1e-9)


def test_eq61_variant_is_phi_mtl_prime_times_the_training_decays():
    """Appendix eq. (66): Phi'_ANIL = Phi'_MTL diag(E_j)."""
    kern, _ = small_kernels()
    prime = P.phi_anil_prime(kern, 0.2, 0.3, "eq61")
    n = kern.points_per_task
    e = P.training_decays(kern, 0.2)
    mtl = P.phi_mtl_prime(kern, 0.3)
    for j in range(kern.n_tasks):
        block = slice(j * n, (j + 1) * n)
        assert torch.allclose(prime[..., block], mtl[..., block] @ e[j], atol=1e-9)
    with pytest.raises(ValueError, match="variant"):
        P.phi_anil_prime(kern, 0.2, 0.3, "appendix")


@pytest.mark.parametrize("variant", ["printed", "eq61"])
@pytest.mark.parametrize("lam_tau_hat", [0.0, 0.3])
def test_f_anil_is_invariant_to_the_training_lambda_tau(variant, lam_tau_hat):
    kern, tasks = small_kernels()
    reference = P.f_anil(kern, tasks.y_train, tasks.y_support, 0.0, lam_tau_hat, variant)
    for lam_tau in (0.1, 0.3, 0.5):
        other = P.f_anil(kern, tasks.y_train, tasks.y_support, lam_tau, lam_tau_hat, variant)
        assert float((other - reference).norm() / reference.norm()) < 1e-8


def test_finite_training_time_breaks_the_cancellation_and_converges_to_lemma_1():
    kern, tasks = small_kernels()
    args = (kern, tasks.y_train, tasks.y_support)
    short = [P.f_anil(*args, lam_tau, 0.0, "eq61", flow_time=0.05) for lam_tau in (0.0, 0.5)]
    assert float((short[1] - short[0]).norm() / short[0].norm()) > 1e-2
    limit = P.f_anil(*args, 0.0, 0.2)
    long = P.f_anil(*args, 0.0, 0.2, flow_time=1e4)
    assert torch.allclose(long, limit, rtol=1e-6)
    assert torch.allclose(P.f_mtl(*args, 0.2, flow_time=1e4), P.f_mtl(*args, 0.2), rtol=1e-6)


def test_full_fine_tuning_time_makes_g_the_nngp_regression():
    kern, tasks = small_kernels()
    g = P.g_function(kern.k_qs, kern.k_ss, tasks.y_support, 1e3)
    regression = (kern.k_qs @ torch.linalg.solve(kern.k_ss, tasks.y_support.unsqueeze(-1)))
    assert torch.allclose(g, regression.squeeze(-1), rtol=1e-8)


def test_eq61_is_the_default_form_and_the_lead_curve():
    kern, tasks = small_kernels()
    args = (kern, tasks.y_train, tasks.y_support, 0.2, 0.3)
    assert torch.equal(P.f_anil(*args), P.f_anil(*args, "eq61"))
    assert not torch.allclose(P.f_anil(*args), P.f_anil(*args, "printed"))
    assert KERNEL_VARIANTS[0] == "eq61" and P.ANIL_VARIANTS[0] == "eq61"


def _differences(kern, tasks, eta_t=2.0) -> dict[str, torch.Tensor]:
    """``F_ANIL - F_MTL`` ``[B, m]`` of every kernel curve (lam_tau 0.2, lam_tau_hat 0.1)."""
    return {
        variant: anil - mtl
        for variant, (mtl, anil) in kernel_predictions(kern, tasks, 0.2, 0.1, eta_t).items()
    }


def test_label_std_is_the_population_std_of_the_training_labels():
    tasks = make_tasks(0)
    assert label_std(tasks) == pytest.approx(float(np.std(tasks.y_train.numpy())), rel=1e-12)
    assert 10 < label_std(tasks) < 20  # the raw labels' scale (measured 14.5 on seed 0)


def test_normalized_difference_equals_the_difference_from_rescaled_labels():
    """The identity behind ``diff_normalized``: the predictors are linear in the labels, so
    dividing every label by the seed's label_std before computing them gives the same
    ||F_ANIL - F_MTL|| as dividing the raw difference afterwards, to float64 rounding."""
    grid = SweepGrid(depths=(2, 6), lam_taus=(0.0, 0.3), sweep_depth=4)
    rows = rows_frame(kernel_seed(1, grid, SMALL, flow_steps=50).rows)
    tasks = make_tasks(1, SMALL)
    scaled = rescale_labels(tasks, label_std(tasks))
    assert label_std(scaled) == pytest.approx(1.0, rel=1e-12)
    every = relu_kernels_all_depths(all_points(tasks), None, 6)
    for (sweep, variant, depth, lam_tau, lam_tau_hat), group in rows.groupby(
        ["sweep", "variant", "depth", "lam_tau", "lam_tau_hat"]
    ):
        kern = P.TaskKernels.from_full(
            every.ntk[depth - 1], every.nngp[depth - 1], SMALL.n_train_tasks,
            SMALL.n_train_tasks * SMALL.n_train_points, SMALL.n_test_tasks, SMALL.n_support,
            SMALL.n_query,
        )
        eta_t = flow_time(kern, 50, 1.0)
        mtl, anil = kernel_predictions(kern, scaled, lam_tau, lam_tau_hat, eta_t)[variant]
        from_scaled = (anil - mtl).norm(dim=-1).numpy()
        normalized = group.sort_values("task")["diff_normalized"].to_numpy()
        np.testing.assert_allclose(normalized, from_scaled, rtol=1e-10, atol=0)
        raw = group.sort_values("task")["diff"].to_numpy()
        assert not np.allclose(raw, from_scaled)  # the raw column keeps the label units


def test_centred_labels_change_the_difference_by_the_constant_label_term():
    """Z-scoring also subtracts the mean m, and F_ANIL(1) != F_MTL(1): the two predictors
    extrapolate a constant label differently. By linearity the z-scored difference is
    (D(y) - m D(1)) / s with D = F_ANIL - F_MTL, so it is not D(y) / s."""
    kern, tasks = small_kernels()
    scale, mean = label_std(tasks), float(tasks.y_train.mean())
    raw = _differences(kern, tasks)
    zscored = _differences(kern, standardize_labels(tasks))
    ones = _differences(kern, TaskSet(
        tasks.x_train, torch.ones_like(tasks.y_train), tasks.x_support,
        torch.ones_like(tasks.y_support), tasks.x_query, torch.ones_like(tasks.y_query),
    ))
    for variant in KERNEL_VARIANTS:
        expected = (raw[variant] - mean * ones[variant]) / scale
        assert torch.allclose(zscored[variant], expected, rtol=1e-9, atol=1e-12)
        assert ones[variant].norm() > 1e-3 * raw[variant].norm() / scale
        assert not torch.allclose(
            zscored[variant].norm(dim=-1), raw[variant].norm(dim=-1) / scale, rtol=1e-3
        )


def test_difference_falls_with_depth():
    grid = SweepGrid(depths=tuple(range(2, 21)), lam_taus=(0.0,), sweep_depth=10)
    problem = ProblemConfig(n_train_tasks=8, n_train_points=5, n_test_tasks=5, n_support=3,
                            n_query=5)
    for seed in (0, 1):
        rows = kernel_seed(seed, grid, problem, flow_steps=100).rows
        frame = summarize(rows_frame(rows))
        for variant in ("eq61", "printed"):
            depth = frame[(frame["sweep"] == "depth") & (frame["variant"] == variant)]
            rho = spearmanr(depth["depth"], depth["diff_mean"]).statistic
            assert rho <= -0.8, f"seed {seed}, {variant}: Spearman {rho:.2f}"


# ----------------------------------------------------------------------------------- trained

def test_closed_form_inner_loop_equals_the_unrolled_loop_and_its_gradient():
    generator = torch.Generator().manual_seed(0)
    phi = torch.rand(3, 5, 16, generator=generator, dtype=torch.float64, requires_grad=True)
    head = torch.randn(16, 1, generator=generator, dtype=torch.float64, requires_grad=True)
    targets = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    config = ReluNetConfig()
    heads = head.expand(3, 16, 1)
    closed = adapted_residual(phi, heads, targets, 0.05, 7, config)
    unrolled = head_output(phi, adapt_head(phi, heads, targets, 0.05, 7, config), config)
    unrolled = unrolled.squeeze(-1) - targets
    assert torch.allclose(closed, unrolled, atol=1e-12)
    grads_closed = torch.autograd.grad((closed**2).sum(), (phi, head))
    grads_unrolled = torch.autograd.grad((unrolled**2).sum(), (phi, head))
    for a, b in zip(grads_closed, grads_unrolled):
        assert torch.allclose(a, b, atol=1e-10)


def test_a_small_trained_run_gives_finite_predictions_that_depend_on_lambda_tau():
    problem = ProblemConfig(n_train_tasks=5, n_train_points=6, n_test_tasks=3, n_support=3,
                            n_query=4)
    tasks = make_tasks(0, problem)
    train = TrainConfig(width=64, steps=150, inner_steps=5)
    mtl = train_mtl(tasks, 3, 0, train)
    anil = train_anil(tasks, 3, 0, 0.0, train)
    anil_inner = train_anil(tasks, 3, 0, 0.5, train)
    assert mtl.final_loss < 0.05 * mtl.initial_loss
    assert anil.final_loss < 0.2 * anil.initial_loss
    predictions = {
        name: query_predictions(net, tasks, 0.0, train)
        for name, net in (("mtl", mtl), ("anil", anil), ("anil_inner", anil_inner))
    }
    for value in predictions.values():
        assert value.shape == (3, 4) and torch.isfinite(value).all()
    gap = (predictions["anil"] - predictions["mtl"]).norm()
    gap_inner = (predictions["anil_inner"] - predictions["mtl"]).norm()
    assert gap_inner > gap  # measured: finite training keeps the lambda * tau effect


def test_trained_networks_start_from_zero_output():
    """Centring makes every initial prediction exactly zero, as Lemma 1's proof assumes."""
    tasks = make_tasks(0, SMALL)
    train = TrainConfig(width=32, steps=1)
    net = train_mtl(tasks, 3, 0, train)
    params = init_params(10, 32, 3, torch.Generator().manual_seed(0), train.dtype)
    params.pop("head")
    initial = dataclasses.replace(net, hidden=params)
    zeros = torch.zeros(SMALL.n_test_tasks, SMALL.n_query, dtype=torch.float64)
    assert torch.allclose(query_predictions(initial, tasks, 0.0, train), zeros, atol=1e-5)
    assert not torch.allclose(query_predictions(net, tasks, 0.0, train), zeros, atol=1e-3)


# ------------------------------------------------------------------------------ report & CLI

def test_summary_aggregates_per_seed_then_across_seeds():
    base = dict(source="kernel", sweep="depth", variant="printed", width=0, depth=2,
                lam_tau=0.0, lam_tau_hat=0.0, rel_diff=0.1, norm_mtl=1.0, norm_anil=1.0,
                err_mtl=1.0, err_anil=1.0, diff_zscored=math.nan)
    rows = [
        {**base, "seed": 0, "task": 0, "diff": 1.0, "label_std": 2.0, "diff_normalized": 0.5},
        {**base, "seed": 0, "task": 1, "diff": 3.0, "label_std": 2.0, "diff_normalized": 1.5},
        {**base, "seed": 1, "task": 0, "diff": 6.0, "label_std": 3.0, "diff_normalized": 2.0},
    ]
    summary = summarize(rows_frame(rows))
    assert len(summary) == 1
    row = summary.iloc[0]
    assert row["n_seeds"] == 2 and row["n_tasks"] == 3
    assert row["diff_mean"] == pytest.approx(4.0)  # mean of the seed means 2 and 6
    assert row["diff_std_seeds"] == pytest.approx(math.sqrt(8.0))
    assert row["label_std_mean"] == pytest.approx(2.5)
    assert row["diff_normalized_mean"] == pytest.approx(1.5)  # seed means 1 and 2
    assert row["diff_normalized_std_seeds"] == pytest.approx(math.sqrt(0.5))
    assert math.isnan(row["diff_zscored_mean"]) and math.isnan(row["diff_zscored_std_seeds"])


def test_depth_ratios_give_the_spread_of_per_seed_ratios():
    """Seed means at L = 2 and L = 20 of 30/2, 60/2 and 40/2: ratios 15, 30 and 20."""
    base = dict(source="kernel", sweep="depth", variant="eq61", width=0, lam_tau=0.0,
                lam_tau_hat=0.0, rel_diff=0.1, norm_mtl=1.0, norm_anil=1.0, err_mtl=1.0,
                err_anil=1.0, label_std=15.0)
    seed_means = {0: {2: 30.0, 10: 9.0, 20: 2.0}, 1: {2: 60.0, 10: 9.0, 20: 2.0},
                  2: {2: 40.0, 10: 9.0, 20: 2.0}}
    rows = []
    for seed, by_depth in seed_means.items():
        for depth, mean in by_depth.items():
            for task, offset in enumerate((-1.0, 1.0)):  # two tasks around the seed mean
                diff = mean + offset * mean / 4
                rows.append({**base, "seed": seed, "depth": depth, "task": task, "diff": diff,
                             "diff_normalized": diff / 15.0, "diff_zscored": diff / 30.0})
    trained = dict(base, source="trained", variant="trained", width=64, diff_zscored=math.nan)
    rows += [{**trained, "seed": 0, "depth": depth, "task": 0, "diff": 1.0 + depth,
              "diff_normalized": 1.0} for depth in (2, 20)]
    rows += [{**base, "sweep": "train_lam_tau", "seed": 0, "depth": 30, "task": 0,
              "diff": 1.0, "diff_normalized": 1.0, "diff_zscored": 1.0}]  # ignored
    ratios = depth_ratios(rows_frame(rows)).set_index(["source", "labels"])
    raw = ratios.loc[("kernel", "raw")]
    assert (raw["depth_low"], raw["depth_high"], raw["n_seeds"]) == (2, 20, 3)
    assert raw["ratio_min"] == pytest.approx(15.0)
    assert raw["ratio_median"] == pytest.approx(20.0)
    assert raw["ratio_max"] == pytest.approx(30.0)
    assert raw["ratios"] == pytest.approx([15.0, 30.0, 20.0]) and raw["seeds"] == [0, 1, 2]
    assert ratios.loc[("kernel", "zscored")]["ratio_median"] == pytest.approx(20.0)
    assert ratios.loc[("trained", "raw")]["ratio_max"] == pytest.approx(3.0 / 21.0)
    assert ("trained", "zscored") not in ratios.index  # no z-scored trained networks
    assert "L=2/L=20" in format_ratios(depth_ratios(rows_frame(rows)))
    single = [row for row in rows if row["depth"] == 2]
    assert depth_ratios(rows_frame(single)).empty


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_runs_a_tiny_sweep_and_writes_its_outputs(tmp_path, capsys):
    args = parse([
        "--out", str(tmp_path), "--seeds", "0", "--depths", "2", "4", "--lam-taus", "0", "0.5",
        "--sweep-depth", "3", "--test-tasks", "2", "--no-validate", "--steps", "50",
    ])
    assert cli.run(args) == 0
    for name in ("per_task.csv", "summary.csv", "figure1.png", "figure1_normalized.png",
                 "diagnostics.json"):
        assert (tmp_path / name).stat().st_size > 0
    printed = capsys.readouterr().out
    assert "cancellation predicts 0" in printed
    header = printed.split("[depth, raw labels")[1].splitlines()[1].split()
    assert header[:3] == ["depth", "kernel", "eq61"]  # the lead curve comes first
    assert "[depth, label-normalised" in printed and "L=2/L=4" in printed
    diagnostics = json.loads((tmp_path / "diagnostics.json").read_text())
    assert diagnostics["label_std_by_seed"]["0"] == pytest.approx(label_std(make_tasks(0)))
    assert diagnostics["label_mean_by_seed"]["0"] > diagnostics["label_std_by_seed"]["0"]
    lead = diagnostics["depth_ratios"][0]
    assert (lead["variant"], lead["labels"], lead["depth_low"], lead["depth_high"]) == (
        "eq61", "raw", 2, 4)
    assert lead["ratio_min"] == lead["ratio_median"] == lead["ratio_max"] > 0
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert (summary["diff_normalized_mean"] * summary["label_std_mean"]).to_numpy() == (
        pytest.approx(summary["diff_mean"].to_numpy(), rel=1e-8))  # one seed: one scale


def test_cli_rejects_bad_options_with_a_message(tmp_path, capsys):
    assert cli.run(parse(["--out", str(tmp_path), "--depths", "1"])) == 2
    assert "depths" in capsys.readouterr().err
    assert cli.run(parse(["--out", str(tmp_path), "--lr-scale", "3"])) == 2
