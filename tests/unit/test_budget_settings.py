"""``--set FIELD=VALUE`` (core.budget.validate_budget_settings), the step schedule's checks and
the ``long`` budget (issue 22, items 1 and 2)."""
from __future__ import annotations

import json

import pytest
import torch

from bench.commands.main import main
from bench.common.config import LONG_EPOCHS, RunConfig, describe_budgets, resolve_budget
from bench.run.training import EpochSchedule
from core.budget import schedule_problems, validate_budget_settings, with_settings
from core.hparams import HParamError


def test_values_arrive_as_the_command_line_gives_them_and_get_one_spelling():
    got = validate_budget_settings({"optimizer": "sgd", "lr": 1, "nesterov": True,
                                    "lr_epochs": "26,36", "lr_factors": [0.1, 0.01],
                                    "early_stop_patience": None, "epochs": 40})
    assert got == {"optimizer": "sgd", "lr": 1.0, "nesterov": True, "lr_epochs": (26, 36),
                   "lr_factors": (0.1, 0.01), "early_stop_patience": None, "epochs": 40}
    assert isinstance(got["lr"], float)  # --set lr=1 and lr=1.0 are one identity
    assert validate_budget_settings({"lr_epochs": 26}) == {"lr_epochs": (26,)}


@pytest.mark.parametrize("settings, expected", [
    ({"lrr": 0.1}, "the budget has no field 'lrr' (did you mean 'lr'?). Valid: optimizer"),
    ({"lr": -1}, "--set: field lr must be a number > 0, got -1"),
    ({"lr": "fast"}, 'lr must be a number > 0, got "fast"'),
    ({"optimizer": "adamw"}, 'optimizer must be one of "radam", "adam", "sgd", got "adamw"'),
    ({"momentum": 1.0}, "momentum must be a number >= 0 and < 1, got 1.0"),
    ({"epochs": 2.5}, "epochs must be an integer >= 1, got 2.5"),
    ({"nesterov": "yes"}, 'nesterov must be true or false, got "yes"'),
    ({"lr_epochs": "a,b"}, "lr_epochs must be a non-empty list of integers >= 2"),
    ({"lr_factors": [0.1, -1]}, "lr_factors must be a non-empty list of numbers > 0"),
    ({"lr_epochs": []}, "lr_epochs must be a non-empty list"),
])
def test_bad_settings_are_refused_with_what_is_accepted(settings, expected):
    with pytest.raises(HParamError) as error:
        validate_budget_settings(settings)
    assert expected in str(error.value)


def test_every_bad_value_is_named_at_once():
    with pytest.raises(HParamError) as error:
        validate_budget_settings({"lr": 0, "epochs": 0})
    assert "lr must be" in str(error.value) and "epochs must be" in str(error.value)


def test_schedule_problems_catch_unpaired_unordered_and_late_boundaries():
    quick = resolve_budget("quick", "mtl", "glyphs", 1)
    assert schedule_problems(quick) == []  # plateau: nothing to check
    step = with_settings(quick, {"schedule": "step", "lr_epochs": [3, 5], "lr_factors": [0.1]})
    assert "one factor per boundary" in schedule_problems(step)[0]
    late = with_settings(quick, {"schedule": "step", "lr_epochs": [3, 9],
                                 "lr_factors": [0.1, 0.01]})
    assert schedule_problems(late) == ["budget 'quick': lr_epochs [9] lie past the last epoch "
                                       "(8); the rate would never be cut there (set epochs or "
                                       "lr_epochs)"]
    backwards = with_settings(quick, {"schedule": "step", "lr_epochs": [5, 3],
                                      "lr_factors": [0.1, 0.01]})
    assert "strictly increasing" in schedule_problems(backwards)[0]
    for name in ("smoke", "quick", "converged", "long"):  # the named budgets are consistent
        assert schedule_problems(resolve_budget(name, "protonet", "omniglot", 1)) == []


def test_set_is_part_of_the_identity_key_and_variant():
    quick = resolve_budget("quick", "mtl", "glyphs", 1)
    plain = RunConfig("mtl", "glyphs", 5, 1, 0, quick)
    tuned = RunConfig("mtl", "glyphs", 5, 1, 0,
                      with_settings(quick, {"optimizer": "sgd", "lr": 0.05}))
    assert plain.key == "mtl_glyphs_5w1s_quick_seed0" and plain.variant() == ""
    assert tuned.key.startswith("mtl_glyphs_5w1s_quick_seed0_") and tuned.key != plain.key
    assert tuned.variant() == 'lr=0.05, optimizer="sgd"'
    again = RunConfig("mtl", "glyphs", 5, 1, 0, with_settings(quick, {"lr": 0.05,
                                                                      "optimizer": "sgd"}))
    assert again.key == tuned.key  # one setting, one key, whatever the order


def test_bench_run_refuses_bad_set_before_anything_runs(tmp_path, capsys):
    code = main(["run", "--methods", "mtl", "--dataset", "glyphs", "--budget", "smoke",
                 "--set", "lr=-1", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: --set: field lr must be a number > 0, got -1" in err
    assert "Nothing was run or written" in err
    assert not (tmp_path / "out").exists()


def test_bench_run_refuses_a_schedule_that_never_cuts(tmp_path, capsys):
    code = main(["run", "--methods", "mtl", "--dataset", "glyphs", "--budget", "smoke",
                 "--set", "schedule=step", "--set", "lr_epochs=5", "--set", "lr_factors=0.1",
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert "lr_epochs [5] lie past the last epoch (2)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_long_budget_trains_fifteen_epochs_at_reduced_rates():
    budget = resolve_budget("long", "protonet", "omniglot", 1)
    quick = resolve_budget("quick", "protonet", "omniglot", 1)
    assert (budget.epochs, budget.schedule, budget.early_stop_patience) == (LONG_EPOCHS, "step",
                                                                           None)
    assert budget.plateau_stop is None and budget.val_episodes == 200
    assert (budget.steps_per_epoch, budget.meta_batch, budget.optimizer, budget.lr) == (
        quick.steps_per_epoch, quick.meta_batch, quick.optimizer, quick.lr)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = EpochSchedule(budget, optimizer)
    rates = []
    for _ in range(budget.epochs):
        rates.append(optimizer.param_groups[0]["lr"])  # the rate epoch e trains at
        optimizer.step()
        schedule.step(50.0)
    assert rates[:25] == [1.0] * 25
    assert rates[25:35] == pytest.approx([0.1] * 10)
    assert rates[35:] == pytest.approx([0.01] * 5)
    assert json.loads(json.dumps(budget.to_dict()))["lr_epochs"] == [26, 36]


# The four CPU budgets field by field (bench/common/config.py's presets): the shape of the work every
# method gets, the method's quick exceptions carried into each, and the preset's name in the
# result (the name picks the default key and the paper's rows).
_CPU_BUDGETS = {
    # name: (epochs, steps, meta_batch, train shots, queries, lr, schedule, plateau patience,
    #        early stop, val episodes)
    "smoke": (2, 5, 2, 2, 3, 1e-3, "constant", 4, None, 20),
    "quick": (8, 50, 2, 5, 5, 3e-3, "plateau", 2, 4, 100),
    "converged": (60, 50, 2, 5, 5, 3e-3, "plateau", 4, None, 200),
    "long": (40, 50, 2, 5, 5, 3e-3, "step", 2, None, 200),
}


@pytest.mark.parametrize("name", sorted(_CPU_BUDGETS))
def test_the_cpu_budgets_field_by_field_with_the_methods_quick_exceptions(name):
    for dataset, backbone in (("glyphs", {"smoke": "conv4-32"}.get(name, "conv4-64")),
                              ("mini", "resnet12")):
        b = resolve_budget(name, "maml", dataset, 1)
        assert (b.name, b.backbone, b.feature_mode) == (name, backbone, "avg")
        assert (b.epochs, b.steps_per_epoch, b.meta_batch, b.train_shots, b.train_queries, b.lr,
                b.schedule, b.plateau_patience, b.early_stop_patience, b.val_episodes) \
            == _CPU_BUDGETS[name]
        assert (b.hparams["inner_lr"], b.hparams["train_steps"], b.hparams["test_steps"]) \
            == (0.5, 1, 1)  # MAML's quick_hparams, not its paper defaults
    converged = resolve_budget("converged", "mtl", "glyphs", 1)
    if name == "converged":
        rule = converged.plateau_stop
        assert (rule.min_gain, rule.window, rule.min_epochs, rule.min_window) == (0.5, 0.25, 8,
                                                                                 5)
    else:
        assert resolve_budget(name, "mtl", "glyphs", 1).plateau_stop is None


def test_bench_list_describes_each_budget_with_its_numbers():
    lines = describe_budgets()
    assert [line.split()[0] for line in lines] == ["smoke", "quick", "converged", "long", "paper"]
    smoke, quick, converged, long, paper = lines
    assert smoke == ("smoke  2 epochs x 5 steps x 2 tasks, 20 val episodes; conv4-32 on "
                     "glyphs/omniglot, resnet12 elsewhere; the quick exceptions below (CI: "
                     "seconds on a CPU)")
    assert quick.startswith("quick  up to 8 epochs x 50 steps x 2 tasks, early stop 4, RAdam "
                            "lr 0.003; conv4-64 on glyphs/omniglot, resnet12 elsewhere; ")
    assert quick.endswith(" (minutes on a CPU)")
    # each method's exceptions by its display name; methods trained on image batches
    assert "; MAML with inner_lr=0.5, train_steps=1, test_steps=1;" in quick
    assert "; RFS on batches of the same number of images (50 and 100)" in quick
    assert converged == (
        "converged  quick's shape and optimiser for up to 60 epochs, plateau patience 4, 200 val "
        "episodes; stop when the last 0.25 of the epochs (at least 5) gain < 0.5 points of "
        "validation accuracy (from epoch 8) (tens of minutes per run on a CPU)")
    assert long == (
        "long  quick's shape and optimiser for 40 epochs, the learning rate x0.1 from epoch 26 "
        "and x0.01 from epoch 36, 200 val episodes, the best validation epoch tested (what "
        "bench tune searches with; tens of minutes per run on a CPU)")
    assert paper.startswith(
        "paper  the original papers' optimiser, schedule, epochs and episode shapes per "
        "(method, dataset, shots) (docs/references.md); on mini 5-shot (epochs x steps x "
        "tasks): ")
    assert "MTL radam/plateau 1000x800x2, " in paper and "MAML adam/constant 60x1000x2, " in paper
