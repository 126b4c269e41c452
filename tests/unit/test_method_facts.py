"""Each method class declares what the harness needs to know about it."""
import pytest

from core.budget import TrainBudget
from datasets import DATASETS
from methods import METHODS, comparison_baseline, efficiency_reference, register_method
from methods.base import FewShotMethod
from methods.maml import MAML
from methods.metaoptnet import MetaOptNet
from methods.taxonomy import OutsideTable1, Table1Cell, format_table1

ALL = METHODS.names()


@pytest.mark.parametrize("name", ALL)
def test_every_method_declares_a_display_name_a_citation_and_paper_budgets(name):
    cls = METHODS.get(name)
    assert cls.name == name and cls.display_name and cls.citation
    for dataset in DATASETS.names():
        for shots in (1, 5):
            budget = cls.paper_budget(DATASETS.get(dataset), shots)
            assert isinstance(budget, TrainBudget) and budget.name == "paper"
            cls.resolve_hparams(budget.hparams)  # the paper's hyperparameters are valid


def test_declared_roles():
    assert efficiency_reference() is MetaOptNet
    assert comparison_baseline().name == "mtl"
    assert [n for n in ALL if METHODS.get(n).task_local_batch_norm] == \
        ["imaml", "maml", "minibatchprox"]
    assert {n: dict(METHODS.get(n).quick_hparams) for n in ALL if METHODS.get(n).quick_hparams} \
        == {"maml": {"inner_lr": 0.5, "train_steps": 1, "test_steps": 1},
            "imaml": {"train_steps": 2, "cg_steps": 2, "test_steps": 4},
            "minibatchprox": {"train_steps": 3, "test_steps": 8}}
    assert all(METHODS.get(n).augmentation == "dataset" for n in ALL)
    assert [n for n in ALL if METHODS.get(n).training_batches == "images"] == ["rfs"]


def test_every_method_declares_its_place_in_the_papers_table_1():
    """Wang, Zhao & Li 2021, Table 1 (inner-loop optimised layers x regulariser); methods
    without an inner loop declare that they stand outside it."""
    cells = {n: METHODS.get(n).table1 for n in ALL}
    assert {n: (c.layers, c.regulariser) for n, c in cells.items() if isinstance(c, Table1Cell)} \
        == {"anil": ("last layer", "early stopping"), "maml": ("all layers", "early stopping"),
            "metaoptnet": ("last layer", "L2 regulariser"),
            "r2d2": ("last layer", "L2 regulariser"),
            "imaml": ("all layers", "L2 regulariser"),
            "minibatchprox": ("all layers", "L2 regulariser")}
    assert sorted(n for n, c in cells.items() if isinstance(c, OutsideTable1)) == \
        ["mtl", "protonet", "rfs"]
    assert format_table1(METHODS.get(n) for n in ALL)[:3] == [
        "layers \\ regulariser  early stopping  L2 regulariser",
        "last layer            ANIL            MetaOptNet, R2D2",
        "all layers            MAML            iMAML, Meta-MinibatchProx",
    ]


def test_bad_table_1_declarations_are_refused():
    with pytest.raises(ValueError, match="layers must be one of last layer, all layers"):
        Table1Cell("first layer", "early stopping")
    with pytest.raises(ValueError, match="needs a reason"):
        OutsideTable1(" ")
    registry_before = set(METHODS.names())
    try:
        with pytest.raises(TypeError, match="table1 must be a Table1Cell"):
            @register_method("test-bad-table1")
            class Bad(MAML):
                table1 = ("all layers", "early stopping")
        with pytest.raises(ValueError, match="training_batches must be one of episodes, "
                                             "images"):
            @register_method("test-bad-batches")
            class BadBatches(MAML):
                training_batches = "pixels"
    finally:
        for name in set(METHODS.names()) - registry_before:
            METHODS.unregister(name)


def test_augmentation_policy():
    budget = TrainBudget("smoke", "conv4-32", "avg", 1, 1, 1, 1, 1)
    mini, glyphs = DATASETS.get("mini"), DATASETS.get("glyphs")
    assert MAML.training_augmentation(mini, budget) == "lee2019"
    assert MAML.training_augmentation(glyphs, budget) is None
    assert MAML.training_augmentation(None, budget) is None  # a dataset outside the registry

    class Plain(MAML):
        augmentation = "none"

    assert Plain.training_augmentation(mini, budget) is None


def test_a_registered_subclass_keeps_only_what_it_declares():
    registry_before = set(METHODS.names())
    try:
        @register_method("test-svm-variant")
        class Variant(MetaOptNet):
            pass

        assert Variant.display_name == "test-svm-variant" and not Variant.efficiency_reference

        @register_method("test-mtl-variant")
        class Second(comparison_baseline()):
            pass

        assert not Second.comparison_baseline and comparison_baseline().name == "mtl"
        assert Variant.task_local_batch_norm is False and Variant.citation == MetaOptNet.citation
        with pytest.raises(ValueError, match="augmentation must be one of"):
            @register_method("test-bad-policy")
            class Bad(FewShotMethod):
                augmentation = "lee2019"
        with pytest.raises(ValueError, match="has no hyperparameter 'inner_steps'"):
            @register_method("test-bad-quick")
            class BadQuick(MAML):
                quick_hparams = {"inner_steps": 1}
    finally:
        for name in set(METHODS.names()) - registry_before:
            METHODS.unregister(name)
    assert set(METHODS.names()) == registry_before
