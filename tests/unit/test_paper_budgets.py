"""Paper budgets that follow each reference (issue 10, section 2): one test per item, pinning
the resolved values (sources in each budget's docstring and docs/references.md)."""
import argparse

import numpy as np
import pytest
import torch

from bench.common.config import RunConfig, resolve_budget
from bench.run.training import EpochSchedule, build_training
from bench.commands.run import dropblock_ramp
from core.budget import REFERENCE_RAMP_COUNT, ramp_steps_ending_at_epoch
from methods.backbones import dropblock_keep_rate
from methods.heads import ridge_weights


# ------------------------------------------------------------------------------ ANIL, MAML

@pytest.mark.parametrize("method", ["anil", "maml"])
def test_finn_and_raghu_on_imagenet_like_images(method):
    for shots, meta_batch in ((1, 4), (5, 2)):
        b = resolve_budget("paper", method, "mini", shots)
        assert (b.backbone, b.feature_mode, b.optimizer, b.lr) == ("conv4-32", "flatten",
                                                                   "adam", 1e-3)
        assert (b.meta_batch, b.train_shots, b.train_queries) == (meta_batch, shots, 15)
        assert b.epochs * b.steps_per_epoch == 60_000 and b.schedule == "constant"
        assert (b.hparams["inner_lr"], b.hparams["train_steps"], b.hparams["test_steps"]) \
            == (0.01, 5, 10)
        assert not b.hparams["first_order"] and b.augmentation is None


@pytest.mark.parametrize("method", ["anil", "maml"])
@pytest.mark.parametrize("dataset", ["omniglot", "glyphs"])
def test_finn_and_raghu_on_character_images(method, dataset):
    b = resolve_budget("paper", method, dataset, 1)
    assert (b.backbone, b.meta_batch, b.train_shots, b.train_queries) == ("conv4-64", 32, 1, 1)
    assert (b.hparams["inner_lr"], b.hparams["train_steps"], b.hparams["test_steps"]) \
        == (0.4, 1, 3)
    assert b.augmentation is None


def test_anils_class_defaults_stay_the_quick_budgets():
    # The quick budget keeps today's behaviour: learn2learn's anil-mi inner loop.
    b = resolve_budget("quick", "anil", "glyphs", 1)
    assert (b.hparams["inner_lr"], b.hparams["train_steps"], b.hparams["test_steps"]) \
        == (0.1, 5, 5)


# ------------------------------------------------------------------------------ MTL

@pytest.mark.parametrize("dataset, shots, train_shots, queries, meta_batch, normalize", [
    ("mini", 5, 5, 5, 2, True), ("mini", 1, 5, 5, 6, True),
    ("tiered", 5, 5, 35, 1, True), ("tiered", 1, 5, 35, 2, True),
    ("cifar-fs", 5, 5, 5, 6, True), ("cifar-fs", 1, 5, 15, 2, True),
    ("fc100", 5, 5, 5, 6, False), ("fc100", 1, 1, 4, 1, False),
    ("omniglot", 1, 5, 5, 6, True),
])
def test_mtls_paper_budget_follows_the_readme_command_per_dataset_and_shots(
        dataset, shots, train_shots, queries, meta_batch, normalize):
    """docs/references.md#mtl: RAdam 1e-3, plateau (0.1, 4), early stop 15, 1600 training and
    400 validation tasks per epoch; the README's meta-batch, queries, training shots and
    feature normalisation per (dataset, test shots); the defaults elsewhere."""
    b = resolve_budget("paper", "mtl", dataset, shots)
    assert (b.name, b.backbone, b.feature_mode, b.epochs) == ("paper", "resnet12", "avg", 1000)
    assert (b.optimizer, b.lr, b.schedule, b.plateau_factor, b.plateau_patience) == (
        "radam", 1e-3, "plateau", 0.1, 4)
    assert (b.early_stop_patience, b.val_episodes) == (15, 400)
    assert (b.train_shots, b.train_queries, b.meta_batch) == (train_shots, queries, meta_batch)
    assert b.steps_per_epoch == -(-1600 // meta_batch)
    assert b.hparams["normalize_features"] is normalize


# ------------------------------------------------------------------------------ MetaOptNet's recipe

@pytest.mark.parametrize("method, train_shots, hparams", [
    ("metaoptnet", 15, {"label_smoothing": 0.0}), ("r2d2", 5, {}), ("protonet", 15, {})])
def test_metaoptnets_recipe_for_the_three_head_methods(method, train_shots, hparams):
    """[MON] train.py (docs/references.md#metaoptnet-r2d2-protonet), on CIFAR-FS 5-shot:
    SGD 0.1 Nesterov (momentum 0.9, wd 5e-4), 60 epochs x 1000 batches of 8 episodes of 6
    queries per class, validation on 2000 5-shot episodes, flattened ResNet-12 features."""
    b = resolve_budget("paper", method, "cifar-fs", 5)
    assert (b.name, b.backbone, b.feature_mode, b.epochs, b.steps_per_epoch, b.meta_batch) == (
        "paper", "resnet12", "flatten", 60, 1000, 8)
    assert (b.train_shots, b.train_queries) == (train_shots, 6)
    assert (b.optimizer, b.lr, b.weight_decay, b.momentum, b.nesterov) == (
        "sgd", 0.1, 5e-4, 0.9, True)
    assert (b.schedule, b.early_stop_patience, b.val_episodes, b.val_shots) == (
        "step", None, 2000, 5)
    assert b.augmentation == "lee2019"
    assert {k: b.hparams[k] for k in hparams} == hparams
    # the recipe's own hyperparameters reach the budget (MetaOptNet's smoothing on mini)
    if method == "metaoptnet":
        assert resolve_budget("paper", method, "mini", 5).hparams["label_smoothing"] == 0.1


# ------------------------------------------------------------------------------ step schedule

def test_the_step_schedule_changes_at_the_start_of_epochs_20_40_and_50():
    budget = resolve_budget("paper", "metaoptnet", "mini", 5)
    assert budget.lr_epochs == (20, 40, 50) and budget.lr_factors == (0.06, 0.012, 0.0024)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=budget.lr)
    schedule = EpochSchedule(budget, optimizer)
    lrs = {}
    for epoch in range(1, 61):  # the rate each 1-based epoch trains with
        lrs[epoch] = optimizer.param_groups[0]["lr"]
        optimizer.step()
        schedule.step(50.0)
    # MetaOptNet's train.py: LambdaLR stepped at the start of each epoch (FACTS 4.2).
    expected = {1: 0.1, 19: 0.1, 20: 0.006, 39: 0.006, 40: 0.0012, 49: 0.0012, 50: 0.00024,
                60: 0.00024}
    for epoch, lr in expected.items():
        assert lrs[epoch] == pytest.approx(lr), epoch


# ------------------------------------------------------------------------------ DropBlock ramp

@pytest.mark.parametrize("dataset, shots, steps_per_epoch", [
    ("mini", 5, 800), ("mini", 1, 267), ("tiered", 5, 1600), ("fc100", 1, 1600)])
def test_mtls_ramp_ends_at_epoch_20_whatever_the_meta_batch(dataset, shots, steps_per_epoch):
    b = resolve_budget("paper", "mtl", dataset, shots)
    assert b.steps_per_epoch == steps_per_epoch
    assert b.dropblock_ramp_steps == 20 * steps_per_epoch
    ramp = b.dropblock_ramp_steps
    assert dropblock_keep_rate(10 * steps_per_epoch, 0.1, ramp) == pytest.approx(0.95)
    assert dropblock_keep_rate(20 * steps_per_epoch, 0.1, ramp) == pytest.approx(0.9)
    assert dropblock_keep_rate(20 * steps_per_epoch - 1, 0.1, ramp) > 0.9


@pytest.mark.parametrize("method", ["metaoptnet", "r2d2", "protonet"])
def test_metaoptnet_recipes_ramp(method):
    for dataset in ("cifar-fs", "fc100"):
        b = resolve_budget("paper", method, dataset, 5)
        # 1000 batches x 2 forwards + 2000 validation episodes x 2 forwards per epoch.
        assert b.dropblock_ramp_steps == ramp_steps_ending_at_epoch(6000, 1000) == 6667
        assert -(-b.dropblock_ramp_steps // b.steps_per_epoch) == 7  # ends in epoch 7
    for dataset in ("mini", "tiered"):  # 4-GPU DataParallel: the ramp never advanced
        b = resolve_budget("paper", method, dataset, 5)
        assert b.dropblock_ramp_steps is None
        assert dropblock_keep_rate(60_000, 0.1, None) == 1.0


def test_smoke_and_quick_keep_the_old_ramp_and_the_ramp_reaches_the_backbone(tmp_path):
    assert resolve_budget("quick", "mtl", "mini", 5).dropblock_ramp_steps == REFERENCE_RAMP_COUNT
    assert resolve_budget("smoke", "metaoptnet", "mini", 5).dropblock_ramp_steps == 40_000
    from bench.cost.speed import synthetic_dataset
    from bench.run.training import build_method

    data = synthetic_dataset("cifar-fs", 32, 3, 64, 2)
    run = RunConfig("metaoptnet", "cifar-fs", 5, 5, 0,
                    resolve_budget("smoke", "metaoptnet", "cifar-fs", 5))
    for ramp in (123, None):
        budget = run.budget.__class__(**{**run.budget.to_dict(), "dropblock_ramp_steps": ramp,
                                         "lr_epochs": (), "lr_factors": ()})
        assert build_method(run.with_overrides(budget=budget), data).backbone.ramp_steps == ramp


def test_the_ramp_can_be_overridden_on_the_command_line():
    assert dropblock_ramp("never") is None and dropblock_ramp("0") == 0
    assert dropblock_ramp("5000") == 5000
    with pytest.raises(argparse.ArgumentTypeError):
        dropblock_ramp("-3")
    with pytest.raises(ValueError, match="dropblock_ramp_steps"):
        resolve_budget("smoke", "mtl", "mini", 1).__class__(
            **{**resolve_budget("smoke", "mtl", "mini", 1).to_dict(), "lr_epochs": (),
               "lr_factors": (), "dropblock_ramp_steps": -1})


# ------------------------------------------------------------------------------ augmentation

@pytest.mark.parametrize("method", ["mtl", "metaoptnet", "r2d2", "protonet"])
def test_lee2019_augmentation_for_the_resnet_recipes_where_the_dataset_declares_it(method):
    for dataset in ("mini", "tiered", "cifar-fs", "fc100"):
        assert resolve_budget("paper", method, dataset, 5).augmentation == "lee2019"
    for dataset in ("glyphs", "omniglot"):
        assert resolve_budget("paper", method, dataset, 5).augmentation is None


@pytest.mark.parametrize("method", ["maml", "anil", "imaml", "minibatchprox"])
def test_no_augmentation_for_finn_raghu_and_the_proximal_references(method):
    """MAML and ANIL: Finn's and Raghu's code; iMAML: imaml_dev and hypertorch; Meta-
    MinibatchProx: its Reptile-based scripts. None of them augments."""
    for dataset in ("mini", "tiered", "cifar-fs", "fc100", "omniglot"):
        assert resolve_budget("paper", method, dataset, 5).augmentation is None
    # smoke and quick: as before issue 10, the dataset's declared augmentation
    assert resolve_budget("quick", method, "mini", 5).augmentation == "lee2019"
    assert resolve_budget("quick", method, "glyphs", 5).augmentation is None


def test_the_training_data_path_uses_the_budgets_augmentation():
    from bench.cost.speed import synthetic_dataset

    data = synthetic_dataset("cifar-fs", 32, 3, 64, 20)
    for method, expected in (("mtl", "lee2019"), ("maml", None)):
        budget = resolve_budget("paper", method, "cifar-fs", 1)
        budget = budget.__class__(**{**budget.to_dict(), "backbone": "conv4-32",
                                     "lr_epochs": budget.lr_epochs,
                                     "lr_factors": budget.lr_factors})
        run = RunConfig(method, "cifar-fs", 5, 1, 0, budget)
        assert build_training(run, data, torch.device("cpu")).augmentation == expected


# ------------------------------------------------------------------------------ reference rows

def test_r2d2s_paper_budget_is_metaoptnet_rr():
    """[MON] README: MetaOptNet-RR on CIFAR-FS is ResNet-12 (flattened) with the ridge head,
    5 training shots, the SGD recipe; R2D2's paper budget is that, with lambda 50."""
    r2d2 = resolve_budget("paper", "r2d2", "cifar-fs", 5)
    svm = resolve_budget("paper", "metaoptnet", "cifar-fs", 5)
    assert (r2d2.backbone, r2d2.feature_mode, r2d2.train_shots) == ("resnet12", "flatten", 5)
    assert r2d2.hparams["lam"] == 50.0
    shared = ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "schedule",
              "lr_epochs", "lr_factors", "epochs", "steps_per_epoch", "meta_batch",
              "train_queries", "val_episodes", "val_shots", "augmentation",
              "dropblock_ramp_steps")
    assert all(getattr(r2d2, k) == getattr(svm, k) for k in shared)


def test_the_ridge_head_equals_metaoptnets_ridge_qp_up_to_a_factor_two():
    """[MON] MetaOptNetHead_Ridge solves min 1/2 a^T (K + lambda I) a - 2 y_m^T a per class
    with qpth; R2D2's closed form X^T (X X^T + lambda I)^-1 Y scores queries with half its
    logits (the learnable scale absorbs the factor). The QP is solved here with cvxpy."""
    cp = pytest.importorskip("cvxpy")
    rng = np.random.default_rng(0)
    support = rng.normal(size=(10, 7))
    labels = np.repeat(np.arange(5), 2)
    query = rng.normal(size=(4, 7))
    lam = 50.0
    gram = support @ support.T + lam * np.eye(10)
    qp_logits = []
    for m in range(5):
        alpha = cp.Variable(10)
        onehot = (labels == m).astype(float)
        cp.Problem(cp.Minimize(0.5 * cp.quad_form(alpha, cp.psd_wrap(gram))
                               - 2 * onehot @ alpha)).solve()
        qp_logits.append((query @ support.T) @ alpha.value)
    qp_logits = np.stack(qp_logits, axis=1)
    weights = ridge_weights(torch.tensor(support)[None], torch.tensor(labels)[None], 5, lam)
    ours = (torch.tensor(query)[None] @ weights)[0].numpy()
    np.testing.assert_allclose(qp_logits, 2 * ours, rtol=1e-4, atol=1e-6)


def test_reference_rows_are_labelled_with_their_head_and_shown_with_their_counterpart():
    import pandas as pd

    from bench.report.table import reference_notes, reference_rows

    measured = pd.DataFrame([
        {"method": "R2D2", "dataset": "cifar-fs"}, {"method": "MetaOptNet", "dataset": "mini"},
        {"method": "MetaOptNet", "dataset": "cifar-fs"}])
    for column in ("backbone", "protocol", "budget", "ways", "shots", "seeds", "episodes",
                   "mean", "ci95", "ci_kind", "source", "variant"):
        measured[column] = None
    rows = reference_rows(measured)
    shown = {(r.method, r.dataset, r.shots): (r.mean, r.variant)
             for r in rows.itertuples(index=False)}
    assert shown[("MetaOptNet-RR", "cifar-fs", 1)] == (
        72.6, "ridge-regression head, shown for R2D2")
    assert shown[("MetaOptNet-RR", "cifar-fs", 5)][0] == 84.3
    assert shown[("MetaOptNet-SVM", "mini", 5)] == (78.63, "SVM head")
    assert ("R2D2", "cifar-fs", 5) in shown  # Bertinetto et al.'s own row
    # MetaOptNet (the SVM) claims no ridge row, and nothing is shown where nobody ran.
    assert not any(m == "MetaOptNet-SVM" and d == "cifar-fs" for m, d, _ in shown)
    assert not any(d == "fc100" for _, d, _ in shown)
    notes = reference_notes(rows)  # the footnote says why RR goes with R2D2
    assert len(notes) == 1 and notes[0].startswith("MetaOptNet-RR is shown for R2D2: ")
    assert "ridge-regression head (lambda = 50)" in notes[0]


# ------------------------------------------------------------------------------ select-on

def test_metaoptnet_selects_on_its_validation_svm_when_asked(monkeypatch):
    """--select-on native: validation uses adapt_for_selection, which fits the SVM with the
    training-time 15 QP iterations, as [MON] train.py validates (test.py uses 3)."""
    import methods.metaoptnet as mon
    from methods.backbones import build_backbone

    calls = []
    real = mon.svm_dual_coefficients

    def spy(*args, **kwargs):
        calls.append(kwargs["max_iter"])
        return real(*args, **kwargs)

    monkeypatch.setattr(mon, "svm_dual_coefficients", spy)
    method = mon.MetaOptNet(build_backbone("conv4-32", 1, 28), 10, 5).eval()
    support, labels = torch.randn(1, 5, 1, 28, 28), torch.arange(5)[None]
    method.adapt_for_selection(support, labels)
    method.adapt(support, labels)
    assert calls == [15, 3]
