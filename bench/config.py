"""Run configuration and training budgets.

A *budget* is a named preset per (method, dataset, shots): ``smoke`` (CI: seconds on a CPU),
``quick`` (minutes on a CPU; meaningful on glyphs and Omniglot) and ``paper`` (the original
papers' hyperparameters, FACTS.md section 4). Every result records the resolved budget.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any

from core.budget import TrainBudget
from datasets import DATASETS

BUDGETS = ("smoke", "quick", "paper")


def _small_images(dataset: str) -> bool:
    """Whether ``dataset`` declares small character images (Conv4 in smoke and quick)."""
    return DATASETS.get(dataset).small_images


# ---------------------------------------------------------------------------------------------
# smoke and quick: identical for every method, so CPU comparisons are like for like.

def _smoke(dataset: str) -> TrainBudget:
    small = _small_images(dataset)
    return TrainBudget(
        name="smoke", backbone="conv4-32" if small else "resnet12", feature_mode="avg",
        epochs=2, steps_per_epoch=5, meta_batch=2, train_shots=2, train_queries=3,
        schedule="constant", early_stop_patience=None, val_episodes=20,
    )


# quick only: MAML's five second-order inner steps over every layer cost about five quick
# budgets of the other methods on a CPU, so quick MAML takes learn2learn's
# maml_miniimagenet.py setting instead (one inner step at rate 0.5, FACTS.md 4.3).
_QUICK_HPARAMS: dict[str, dict[str, Any]] = {
    "maml": {"inner_lr": 0.5, "train_steps": 1, "test_steps": 1},
}


def _quick(dataset: str, method: str = "") -> TrainBudget:
    small = _small_images(dataset)
    return TrainBudget(
        name="quick", backbone="conv4-64" if small else "resnet12", feature_mode="avg",
        epochs=8, steps_per_epoch=50, meta_batch=4, train_shots=5, train_queries=5, lr=3e-3,
        schedule="plateau", plateau_patience=2, early_stop_patience=4, val_episodes=100,
        hparams=dict(_QUICK_HPARAMS.get(method, {})),
    )


# ---------------------------------------------------------------------------------------------
# paper: the original papers' settings (FACTS.md section 4).

_MTL_TASKS_PER_EPOCH = 1600  # [MTL] epoch_length


def _mtl_paper(dataset: str, shots: int) -> TrainBudget:
    """[MTL] README commands (FACTS.md 4.1): RAdam 1e-3, plateau(0.1, 4), early stop 15."""
    queries, meta_batch, train_shots, normalize = 5, 6, 5, True
    if dataset == "mini":
        meta_batch = 2 if shots == 5 else 6
    elif dataset == "tiered":
        queries, meta_batch = 35, (1 if shots == 5 else 2)
    elif dataset == "cifar-fs" and shots == 1:
        queries, meta_batch = 15, 2
    elif dataset == "fc100":
        normalize = False
        if shots == 1:
            train_shots, queries, meta_batch = 1, 4, 1
    return TrainBudget(
        name="paper", backbone="resnet12", feature_mode="avg", epochs=1000,
        steps_per_epoch=-(-_MTL_TASKS_PER_EPOCH // meta_batch), meta_batch=meta_batch,
        train_shots=train_shots, train_queries=queries, optimizer="radam", lr=1e-3,
        schedule="plateau", plateau_factor=0.1, plateau_patience=4, early_stop_patience=15,
        val_episodes=400, hparams={"normalize_features": normalize},
    )


def _metaoptnet_style_paper(dataset: str, shots: int, train_shots: int,
                            hparams: dict[str, Any]) -> TrainBudget:
    """[MON] train.py (FACTS.md 4.2): SGD 0.1 Nesterov, wd 5e-4, 60 epochs x 1000 batches of 8
    episodes, lr x{1, 0.06, 0.012, 0.0024} from epochs {0, 20, 40, 50}, 6 queries per class,
    validation on 2000 5-shot episodes, flattened ResNet-12 features."""
    return TrainBudget(
        name="paper", backbone="resnet12", feature_mode="flatten", epochs=60,
        steps_per_epoch=1000, meta_batch=8, train_shots=train_shots, train_queries=6,
        optimizer="sgd", lr=0.1, weight_decay=5e-4, momentum=0.9, nesterov=True,
        schedule="step", lr_epochs=(20, 40, 50), lr_factors=(0.06, 0.012, 0.0024),
        early_stop_patience=None, val_episodes=2000, val_shots=5, hparams=hparams,
    )


def _maml_paper(dataset: str, shots: int, hparams: dict[str, Any]) -> TrainBudget:
    """Finn et al. 2017 (mini-ImageNet): Conv4-32, Adam 1e-3, meta-batch 4 (1-shot) or 2
    (5-shot), 15 queries per class, 60,000 meta-iterations, tested with 10 inner steps."""
    small = _small_images(dataset)
    return TrainBudget(
        name="paper", backbone="conv4-64" if small else "conv4-32", feature_mode="flatten",
        epochs=60, steps_per_epoch=1000, meta_batch=4 if shots == 1 else 2,
        train_shots=shots, train_queries=15, optimizer="adam", lr=1e-3, schedule="constant",
        early_stop_patience=None, val_episodes=600, hparams=hparams,
    )


def _paper(method: str, dataset: str, shots: int) -> TrainBudget:
    if method == "mtl":
        return _mtl_paper(dataset, shots)
    if method == "metaoptnet":
        train_shots = 10 if dataset == "tiered" else 15
        smoothing = 0.1 if dataset == "mini" else 0.0
        return _metaoptnet_style_paper(dataset, shots, train_shots,
                                       {"label_smoothing": smoothing})
    if method == "r2d2":
        return _metaoptnet_style_paper(dataset, shots, 5 if dataset == "cifar-fs" else 15, {})
    if method == "protonet":
        return _metaoptnet_style_paper(dataset, shots, 15, {})
    if method == "maml":
        return _maml_paper(dataset, shots, {"inner_lr": 0.01, "train_steps": 5,
                                            "test_steps": 10})
    if method == "anil":
        # Raghu et al. 2020 train ANIL with MAML's setup; inner loop on the head only.
        return _maml_paper(dataset, shots, {})
    raise ValueError(f"no paper budget for method {method!r}")


def resolve_budget(name: str, method: str, dataset: str, shots: int) -> TrainBudget:
    """The budget ``name`` for ``method`` on ``dataset`` with ``shots`` test shots."""
    if name == "smoke":
        return _smoke(dataset)
    if name == "quick":
        return _quick(dataset, method)
    if name == "paper":
        return _paper(method, dataset, shots)
    raise ValueError(f"unknown budget {name!r}; valid budgets: {', '.join(BUDGETS)}")


def describe_budgets() -> list[str]:
    """One line per budget for ``bench list``."""
    s, q = _smoke("glyphs"), _quick("glyphs")
    return [
        f"smoke  {s.epochs} epochs x {s.steps_per_epoch} steps x {s.meta_batch} tasks, "
        f"{s.val_episodes} val episodes; {s.backbone} on glyphs/omniglot, resnet12 elsewhere "
        "(CI: seconds on a CPU)",
        f"quick  up to {q.epochs} epochs x {q.steps_per_epoch} steps x {q.meta_batch} tasks, "
        f"early stop {q.early_stop_patience}, RAdam lr {q.lr:g}; {q.backbone} on "
        "glyphs/omniglot, resnet12 elsewhere; MAML with one inner step at rate 0.5 "
        "(minutes on a CPU)",
        "paper  the original papers' optimiser, schedule, epochs and episode shapes per "
        "(method, dataset, shots) (FACTS.md 4): MTL RAdam+plateau, MetaOptNet/R2D2/ProtoNet "
        "SGD 60x1000x8, MAML/ANIL Adam 60k iterations",
    ]


@dataclass(frozen=True)
class RunConfig:
    """One run: a (method, dataset, ways, shots, seed, budget) cell of a sweep."""

    method: str
    dataset: str
    ways: int
    shots: int
    seed: int
    budget: TrainBudget
    queries: int = 15  # test queries per class
    episodes: int = 2000  # test episodes
    precision: str = "fp32"  # fp32 | bf16
    solver: str = "sklearn"  # unified-protocol solver: sklearn | batched
    compile: bool = False  # torch.compile the backbone (compile time counts as training time)
    channels_last: bool | None = None  # None: channels_last on CUDA, NCHW on the CPU
    logreg_c: float = 3.0  # inverse L2 strength of the unified head (paper App. C.2: 1/0.33)

    @property
    def key(self) -> str:
        """File-name key; one result file per key."""
        return (f"{self.method}_{self.dataset}_{self.ways}w{self.shots}s_{self.budget.name}"
                f"_seed{self.seed}")

    def with_overrides(self, **changes: Any) -> "RunConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as stored in result files and checkpoints (``config``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """Inverse of :meth:`to_dict` (also after a JSON round trip)."""
        return cls(**{**data, "budget": TrainBudget.from_dict(data["budget"])})
