"""Run configuration and training budgets.

A *budget* is a named preset per (method, dataset, shots): ``smoke`` (CI: seconds on a CPU),
``quick`` (minutes on a CPU; meaningful on glyphs and Omniglot) and ``paper`` (the original
papers' hyperparameters, which each method declares in its own
:meth:`~methods.base.FewShotMethod.paper_budget`). Every result records the resolved budget.
:class:`RunConfig` is one run, its key and its serialisation.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Mapping

from core.budget import TrainBudget, as_image_batches
from datasets import DATASETS, DatasetInfo
from methods import METHODS
from methods.plugins import method_class

if TYPE_CHECKING:
    from methods.base import FewShotMethod

BUDGETS = ("smoke", "quick", "paper")


# ---------------------------------------------------------------------------------------------
# smoke and quick: identical for every method, so CPU comparisons are like for like (both take
# a method's declared quick_hparams: its CPU-sized exceptions; a method trained on image
# batches draws as many images per step as the episodes hold, core.budget.as_image_batches).
# The backbone depends on whether the dataset declares small character images.

SMOKE_BACKBONE = {True: "conv4-32", False: "resnet12"}
QUICK_BACKBONE = {True: "conv4-64", False: "resnet12"}


def smoke_budget(dataset: DatasetInfo, hparams: Mapping[str, Any] | None = None
                 ) -> TrainBudget:
    return TrainBudget(
        name="smoke", backbone=SMOKE_BACKBONE[dataset.small_images], feature_mode="avg",
        epochs=2, steps_per_epoch=5, meta_batch=2, train_shots=2, train_queries=3,
        schedule="constant", early_stop_patience=None, val_episodes=20,
        hparams=dict(hparams or {}),
    )


def quick_budget(dataset: DatasetInfo, hparams: Mapping[str, Any] | None = None
                 ) -> TrainBudget:
    return TrainBudget(
        name="quick", backbone=QUICK_BACKBONE[dataset.small_images], feature_mode="avg",
        epochs=8, steps_per_epoch=50, meta_batch=4, train_shots=5, train_queries=5, lr=3e-3,
        schedule="plateau", plateau_patience=2, early_stop_patience=4, val_episodes=100,
        hparams=dict(hparams or {}),
    )


def resolve_budget(name: str, method: str | type[FewShotMethod], dataset: str | DatasetInfo,
                   shots: int) -> TrainBudget:
    """The budget ``name`` for ``method`` on ``dataset`` with ``shots`` test shots (names or
    the registered class and entry); ``paper`` is the method's own
    :meth:`~methods.base.FewShotMethod.paper_budget`."""
    if name not in BUDGETS:
        raise ValueError(f"unknown budget {name!r}; valid budgets: {', '.join(BUDGETS)}")
    cls = method_class(method) if isinstance(method, str) else method
    info = DATASETS.get(dataset) if isinstance(dataset, str) else dataset
    if name == "paper":
        return cls.paper_budget(info, shots)
    budget = (smoke_budget if name == "smoke" else quick_budget)(info, cls.quick_hparams)
    return as_image_batches(budget) if cls.training_batches == "images" else budget


def describe_budgets() -> list[str]:
    """One line per budget for ``bench list``."""
    from datasets import efficiency_reference as reference_dataset

    small = "/".join(n for n in DATASETS.names() if DATASETS.get(n).small_images)
    classes = [METHODS.get(n) for n in METHODS.names()]
    s, q = smoke_budget(reference_dataset()), quick_budget(reference_dataset())
    exceptions = "".join(f"; {cls.display_name} with "
                         + ", ".join(f"{k}={v}" for k, v in cls.quick_hparams.items())
                         for cls in classes if cls.quick_hparams)
    on_images = [cls.display_name for cls in classes if cls.training_batches == "images"]
    if on_images:
        exceptions += (f"; {', '.join(on_images)} on batches of the same number of images "
                       f"({as_image_batches(s).meta_batch} and {as_image_batches(q).meta_batch})")
    reference = reference_dataset()
    papers = []
    for cls in classes:
        try:
            b = cls.paper_budget(reference, 5)
        except NotImplementedError:
            continue
        papers.append(f"{cls.display_name} {b.optimizer}/{b.schedule} {b.epochs}x"
                      f"{b.steps_per_epoch}x{b.meta_batch}")
    return [
        f"smoke  {s.epochs} epochs x {s.steps_per_epoch} steps x {s.meta_batch} tasks, "
        f"{s.val_episodes} val episodes; {SMOKE_BACKBONE[True]} on {small}, "
        f"{SMOKE_BACKBONE[False]} elsewhere; the quick exceptions below (CI: seconds on a CPU)",
        f"quick  up to {q.epochs} epochs x {q.steps_per_epoch} steps x {q.meta_batch} tasks, "
        f"early stop {q.early_stop_patience}, RAdam lr {q.lr:g}; {QUICK_BACKBONE[True]} on "
        f"{small}, {QUICK_BACKBONE[False]} elsewhere{exceptions} (minutes on a CPU)",
        "paper  the original papers' optimiser, schedule, epochs and episode shapes per "
        "(method, dataset, shots) (docs/references.md); on "
        f"{reference.name} 5-shot (epochs x steps x tasks): {', '.join(papers)}",
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
    method_source: str | None = None
    """Import path (``package.module:Class``) of a method given by it on the command line
    (:mod:`methods.plugins`), so every process that rebuilds the run imports it; None for a
    registered method (built in or an installed entry point)."""

    @property
    def key(self) -> str:
        """File-name key; one result file per key (the method's registered name, never its
        import path)."""
        return (f"{self.method}_{self.dataset}_{self.ways}w{self.shots}s_{self.budget.name}"
                f"_seed{self.seed}")

    def with_overrides(self, **changes: Any) -> "RunConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as stored in result files and checkpoints (``config``).

        ``method_source`` appears only when set, so the records and checkpoints of
        registered methods are exactly those of before it existed."""
        data = dataclasses.asdict(self)
        if data["method_source"] is None:
            del data["method_source"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """Inverse of :meth:`to_dict` (also after a JSON round trip)."""
        return cls(**{**data, "budget": TrainBudget.from_dict(data["budget"])})
