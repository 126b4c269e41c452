"""Run configuration and training budgets.

A *budget* is a named preset per (method, dataset, shots): ``smoke`` (CI: seconds on a CPU),
``quick`` (minutes on a CPU; meaningful on glyphs and Omniglot), ``converged`` (quick trained
until its validation curve plateaus, :func:`converged_budget`) and ``paper`` (the original
papers' hyperparameters, which each method declares in its own
:meth:`~methods.base.FewShotMethod.paper_budget`). Every result records the resolved budget.

:class:`RunConfig` is one run and the one place that says what a run *is*:

- its **identity** (:meth:`RunConfig.identity`): the whole resolved configuration, everything
  that can change a number (the budget with every field and every method hyperparameter, the
  backbone, feature mode, augmentation, DropBlock ramp, precision, solver, the unified head's C,
  compile, channels_last, ways, shots, queries, test episodes, the selection protocol, the
  dataset's name), minus the seed, plus the fingerprint of the dataset's splits
  (:func:`bench.store.checkpoint.dataset_identity`). The device is provenance, not identity;
- its **key** (:attr:`RunConfig.key`), the file name of its result, claim and checkpoint: the
  readable ``mtl_glyphs_5w1s_quick_seed0`` when every setting is the budget's default with the
  command line's defaults, else that plus ``_`` and 8 hex digits of :meth:`settings_hash`
  (the data fingerprint is not hashed: a result made from other data at the same key is refused,
  :func:`bench.store.results.existing_result`);
- its **variant** (:meth:`RunConfig.variant`): the settings that differ from those defaults,
  ``"normalize_features=false"``, which tables show next to the method.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Mapping

from core.budget import BUDGETS, DATASET_AUGMENTATION, TrainBudget, as_image_batches
from core.convergence import PlateauRule
from core.keys import check_key
from datasets import (DATASETS, TRAIN_AUGMENTATIONS, DatasetInfo,
                      efficiency_reference as reference_dataset,)
from methods import METHODS
from methods.base import FewShotMethod
from methods.plugins import MethodImportError, method_class

#: The live learning-curve logs ``bench run --log`` can write (:mod:`bench.run.epoch_log`).
LOG_FORMATS = ("tensorboard", "csv")


# ---------------------------------------------------------------------------------------------
# smoke and quick: identical for every method, so CPU comparisons are like for like (both take
# a method's declared quick_hparams: its CPU-sized exceptions; a method trained on image
# batches draws as many images per step as the episodes hold, core.budget.as_image_batches).
# The backbone depends on whether the dataset declares small character images.

SMOKE_BACKBONE = {True: "conv4-32", False: "resnet12"}
QUICK_BACKBONE = {True: "conv4-64", False: "resnet12"}


SELECTION_PROTOCOLS = ("unified", "native")
"""What model selection reads on the validation split (``--select-on``)."""
SETTINGS_HASH_LENGTH = 8
#: What a run records along the way without changing any number it trains, selects or tests:
#: ``--test-every N`` evaluates the test split every N epochs on the first
#: ``test_every_episodes`` test episodes, for the learning curve only (never for selection;
#: excluded from device-hours). ``--log`` writes the live learning curves
#: (:mod:`bench.run.epoch_log`). A run with them is the same run as one without.
RECORDING_OPTIONS = ("test_every", "test_every_episodes", "log")
#: Config entries that are not part of a run's identity: the seed (replicates of one
#: experiment), where a method's code was imported from (the registered name is the method)
#: and the recording options.
NOT_IDENTITY = ("seed", "method_source", *RECORDING_OPTIONS)
DEFAULT_TEST_EVERY_EPISODES = 100


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
        epochs=8, steps_per_epoch=50, meta_batch=2, train_shots=5, train_queries=5, lr=3e-3,
        schedule="plateau", plateau_patience=2, early_stop_patience=4, val_episodes=100,
        hparams=dict(hparams or {}),
    )


#: The ``converged`` budget's stopping rule: less than half a point of validation accuracy gained
#: over the last quarter of the epochs (at least the last 5), read from epoch 8 (the quick
#: budget's length) on.
CONVERGED_RULE = PlateauRule(min_gain=0.5, window=0.25, min_epochs=8, min_window=5)
CONVERGED_MAX_EPOCHS = 60


def converged_budget(dataset: DatasetInfo, hparams: Mapping[str, Any] | None = None
                     ) -> TrainBudget:
    """The quick budget's tasks, steps and optimiser, trained until the validation curve has
    plateaued (:data:`CONVERGED_RULE`, :mod:`core.convergence`) rather than for a fixed number
    of epochs: at most :data:`CONVERGED_MAX_EPOCHS` epochs, the paper's ReduceLROnPlateau
    patience (4 epochs; paper Sec. 5.2), no patience-based early stop (the rule replaces it) and
    200 validation episodes per epoch, so the rule reads a curve with a standard error under one
    point. Why these numbers: docs/findings.md ("How long MTL takes to plateau": MTL with its
    defaults peaked at epoch 16 of 40, a faster head still gained at epoch 21, ProtoNet at
    epoch 8)."""
    quick = quick_budget(dataset, hparams)
    return replace(quick, name="converged", epochs=CONVERGED_MAX_EPOCHS, plateau_patience=4,
                   early_stop_patience=None, val_episodes=200, plateau_stop=CONVERGED_RULE)


#: The ``long`` budget's schedule: :data:`LONG_EPOCHS` epochs, the learning rate times 0.1 from
#: epoch 26 on and times 0.01 from epoch 36 on (cut after epochs 25 and 35), so every run
#: trains 15 epochs at reduced rates (docs/findings.md, "Why a fixed schedule").
LONG_EPOCHS = 40
LONG_LR_EPOCHS = (26, 36)
LONG_LR_FACTORS = (0.1, 0.01)


def long_budget(dataset: DatasetInfo, hparams: Mapping[str, Any] | None = None
                ) -> TrainBudget:
    """The quick budget's tasks, steps and optimiser trained for a fixed
    :data:`LONG_EPOCHS` epochs with a step schedule (x0.1 after epoch 25, x0.01 after 35), no
    early stop and 200 validation episodes per epoch; the model of the best validation epoch
    is tested. Every method trains the same number of steps and 15 epochs at reduced rates,
    which the ``converged`` rule did not guarantee (it stopped 33 of 38 Omniglot runs before any
    cut); ``bench tune``'s trials use it with pruning on the per-epoch validation curve."""
    quick = quick_budget(dataset, hparams)
    return replace(quick, name="long", epochs=LONG_EPOCHS, schedule="step",
                   lr_epochs=LONG_LR_EPOCHS, lr_factors=LONG_LR_FACTORS,
                   early_stop_patience=None, val_episodes=200)


def resolve_budget(name: str, method: str | type[FewShotMethod], dataset: str | DatasetInfo,
                   shots: int) -> TrainBudget:
    """The budget ``name`` for ``method`` on ``dataset`` with ``shots`` test shots (names or
    the registered class and entry); ``paper`` is the method's own
    :meth:`~methods.base.FewShotMethod.paper_budget`."""
    if name not in BUDGETS:
        raise ValueError(f"unknown budget {name!r}; valid budgets: {', '.join(BUDGETS)}")
    cls = method_class(method) if isinstance(method, str) else method
    info = DATASETS.get(dataset) if isinstance(dataset, str) else dataset
    if name == "smoke":
        budget = smoke_budget(info, cls.quick_hparams)
    elif name == "quick":
        budget = quick_budget(info, cls.quick_hparams)
    elif name == "converged":
        budget = converged_budget(info, cls.quick_hparams)
    elif name == "long":
        budget = long_budget(info, cls.quick_hparams)
    else:
        budget = cls.paper_budget(info, shots)
    if name != "paper" and cls.training_batches == "images":
        budget = as_image_batches(budget)
    return resolved_budget(budget, cls, info)


def resolved_budget(budget: TrainBudget, cls: type[FewShotMethod],
                    info: DatasetInfo | None) -> TrainBudget:
    """``budget`` with every method hyperparameter (the class's defaults updated with the
    budget's own, :meth:`~methods.base.FewShotMethod.resolve_hparams`) and its augmentation
    resolved (:data:`~core.budget.DATASET_AUGMENTATION`: the dataset's declared one under the
    method's policy; ``info`` None: a dataset outside the registry, which declares none), so
    the budget says exactly what a run uses."""
    hparams = {name: _as_declared(cls.hparam_spec.get(name), value)
               for name, value in cls.resolve_hparams(budget.hparams).items()}
    augmentation = budget.augmentation
    if augmentation == DATASET_AUGMENTATION:
        augmentation = cls.training_augmentation(info, budget)
    if augmentation is not None and augmentation not in TRAIN_AUGMENTATIONS:
        raise ValueError(f"unknown training augmentation {augmentation!r}; valid: none, "
                         f"{', '.join(TRAIN_AUGMENTATIONS)}")
    if hparams == budget.hparams and augmentation == budget.augmentation:
        return budget
    return replace(budget, hparams=hparams, augmentation=augmentation)


def _as_declared(spec: Any, value: Any) -> Any:
    """A whole number given for a float hyperparameter (``--hparam scale_init=1``) as a float,
    so one setting has one spelling in a run's identity."""
    if spec is not None and spec.type is float and isinstance(value, int) \
            and not isinstance(value, bool):
        return float(value)
    return value


def has_native_adaptation(cls: type[FewShotMethod]) -> bool:
    """Whether method class ``cls`` has a test-time adaptation of its own."""

    return cls.adapt is not FewShotMethod.adapt


def describe_budgets() -> list[str]:
    """One line per budget for ``bench list``."""

    small = "/".join(n for n in DATASETS.names() if DATASETS.get(n).small_images)
    classes = [METHODS.get(n) for n in METHODS.names()]
    s, q = smoke_budget(reference_dataset()), quick_budget(reference_dataset())
    c = converged_budget(reference_dataset())
    g = long_budget(reference_dataset())
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
        f"converged  quick's shape and optimiser for up to {c.epochs} epochs, plateau patience "
        f"{c.plateau_patience}, {c.val_episodes} val episodes; {c.plateau_stop.describe()} "
        "(tens of minutes per run on a CPU)",
        f"long  quick's shape and optimiser for {g.epochs} epochs, the learning rate x"
        f"{g.lr_factors[0]:g} from epoch {g.lr_epochs[0]} and x{g.lr_factors[1]:g} from epoch "
        f"{g.lr_epochs[1]}, {g.val_episodes} val episodes, the best validation epoch tested "
        "(what bench tune searches with; tens of minutes per run on a CPU)",
        "paper  the original papers' optimiser, schedule, epochs and episode shapes per "
        "(method, dataset, shots) (docs/references.md); on "
        f"{reference.name} 5-shot (epochs x steps x tasks): {', '.join(papers)}",
    ]


def _json_normalised(data: Any) -> Any:
    """``data`` as JSON would give it back (tuples become lists)."""
    return json.loads(json.dumps(data, allow_nan=True))


def canonical_json(data: Any) -> str:
    """One spelling of ``data`` whatever its dict order: sorted keys, no spaces."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True)


def flat_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as one dict with dotted keys (``budget.hparams.inner_lr``)."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            flat.update(flat_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _shown_key(key: str) -> str:
    for prefix in ("budget.hparams.", "budget."):
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def describe_differences(settings: Mapping[str, Any], reference: Mapping[str, Any]) -> str:
    """``"key=value, ..."`` for every setting of ``settings`` that differs from ``reference``
    (budget fields and hyperparameters by their own names; JSON values; sorted)."""
    mine, theirs = flat_settings(settings), flat_settings(reference)
    parts = []
    for key in sorted(set(mine) | set(theirs)):
        if key in mine and key in theirs and mine[key] == theirs[key]:
            continue
        value = json.dumps(mine[key]) if key in mine else "<unset>"
        parts.append(f"{_shown_key(key)}={value}")
    return ", ".join(parts)


@dataclass(frozen=True)
class RunConfig:
    """One run: a (method, dataset, ways, shots, seed, budget) cell of a sweep, and every
    other setting that can change its numbers (see the module docstring for its identity,
    key and variant).

    On construction the budget is resolved (:func:`resolved_budget`: every hyperparameter,
    the augmentation) when the method can be found, and ``select_on`` falls back to
    ``"unified"`` for a method without a native adaptation, so two configurations that run the
    same experiment are equal.
    """

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
    select_on: str = "unified"  # model selection on validation accuracy of this protocol
    method_source: str | None = None
    """Import path (``package.module:Class``) of a method given by it on the command line
    (:mod:`methods.plugins`), so every process that rebuilds the run imports it; None for a
    registered method (built in or an installed entry point)."""
    test_every: int = 0  # --test-every N: test accuracy in the learning curve every N epochs
    test_every_episodes: int = DEFAULT_TEST_EVERY_EPISODES  # ... on this many test episodes
    log: tuple[str, ...] = ()  # --log: live learning curves (bench.run.epoch_log.LOG_FORMATS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "log", tuple(dict.fromkeys(self.log)))
        unknown = [f for f in self.log if f not in LOG_FORMATS]
        if unknown:
            raise ValueError(f"log: unknown format(s) {', '.join(map(repr, unknown))}; valid: "
                             f"{', '.join(LOG_FORMATS)}")
        if self.test_every < 0:
            raise ValueError(f"test_every must be >= 0 epochs (0: off), not {self.test_every}")
        if self.test_every and not 1 <= self.test_every_episodes <= self.episodes:
            raise ValueError(f"test_every_episodes must be between 1 and the run's test "
                             f"episodes ({self.episodes}), not {self.test_every_episodes}")
        if self.select_on not in SELECTION_PROTOCOLS:
            raise ValueError(f"select_on must be one of {', '.join(SELECTION_PROTOCOLS)}, "
                             f"not {self.select_on!r}")
        cls = self._method_class()
        if cls is None:
            return
        info = DATASETS.get(self.dataset) if self.dataset in DATASETS else None
        try:
            object.__setattr__(self, "budget", resolved_budget(self.budget, cls, info))
        except ValueError:
            pass  # hyperparameters the method does not accept: its constructor says which
        if self.select_on == "native" and not has_native_adaptation(cls):
            object.__setattr__(self, "select_on", "unified")

    def _method_class(self) -> type[FewShotMethod] | None:
        """The method's class, or None when it cannot be found here (a result of a method
        that is no longer installed)."""
        if self.method not in METHODS and not self.method_source:
            return None
        try:
            return method_class(self.method, self.method_source)
        except (MethodImportError, KeyError):
            return None

    # ------------------------------------------------------------------ identity
    def settings(self) -> dict[str, Any]:
        """The identity's settings: :meth:`to_dict` without the seed and the method's import
        path, JSON-normalised (what :meth:`settings_hash` hashes)."""
        data = _json_normalised(self.to_dict())
        for key in NOT_IDENTITY:
            data.pop(key, None)
        return data

    def settings_hash(self) -> str:
        """8 hex digits of the SHA-256 of the canonical JSON of :meth:`settings`: the same in
        every Python process and for any order of the dicts."""
        digest = hashlib.sha256(canonical_json(self.settings()).encode("utf-8")).hexdigest()
        return digest[:SETTINGS_HASH_LENGTH]

    def identity(self, data_fingerprint: str | None) -> dict[str, Any]:
        """The run's identity: its :meth:`settings` and the fingerprint of its dataset's
        splits (``None``: unknown, a result written before fingerprints were recorded)."""
        return {"settings": self.settings(), "data": data_fingerprint}

    def defaults(self) -> "RunConfig | None":
        """This run with every setting at its default: the budget's own for (method, dataset,
        shots, budget name) and the command line's defaults for the rest; None when the
        budget cannot be resolved here (a method or dataset that is not available)."""
        cls = self._method_class()
        if cls is None or self.dataset not in DATASETS or self.budget.name not in BUDGETS:
            return None
        try:
            budget = resolve_budget(self.budget.name, cls, self.dataset, self.shots)
        except (NotImplementedError, ValueError):
            return None
        return RunConfig(method=self.method, dataset=self.dataset, ways=self.ways,
                         shots=self.shots, seed=self.seed, budget=budget,
                         method_source=self.method_source)

    @cached_property
    def _default_settings(self) -> dict[str, Any] | None:
        default = self.defaults()
        return default.settings() if default is not None else None

    def is_default(self) -> bool:
        """Every setting is the budget's default (with the command line's defaults)."""
        return self._default_settings == self.settings()

    def variant(self) -> str:
        """The settings that differ from the defaults (``"normalize_features=false,
        episodes=100"``); ``""`` for the defaults; ``"settings <hash>"`` when the defaults
        cannot be known here."""
        reference = self._default_settings
        if reference is None:
            return f"settings {self.settings_hash()}"
        return describe_differences(self.settings(), reference)

    @property
    def readable_key(self) -> str:
        return (f"{self.method}_{self.dataset}_{self.ways}w{self.shots}s_{self.budget.name}"
                f"_seed{self.seed}")

    @cached_property
    def key(self) -> str:
        """File-name key of the run's result, claim and checkpoint (the method's registered
        name, never its import path): :attr:`readable_key`, plus ``_`` and
        :meth:`settings_hash` unless :meth:`is_default`. A file-name key
        (:func:`core.keys.check_key`: a method or dataset name read from a file cannot make
        it a path)."""

        key = self.readable_key if self.is_default() else \
            f"{self.readable_key}_{self.settings_hash()}"
        return check_key(key, "run key")

    # ------------------------------------------------------------------ (de)serialisation
    def with_overrides(self, **changes: Any) -> "RunConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as stored in result files and checkpoints (``config``).

        ``method_source`` appears only when set, and the recording options only when set
        (``--test-every``, ``--log``), so the records and checkpoints of registered methods
        are exactly those of before they existed."""
        data = dataclasses.asdict(self)
        data["budget"] = self.budget.to_dict()
        if data["method_source"] is None:
            del data["method_source"]
        if not data["test_every"]:
            for key in ("test_every", "test_every_episodes"):
                del data[key]
        if data["log"]:
            data["log"] = list(data["log"])
        else:
            del data["log"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """Inverse of :meth:`to_dict` (also after a JSON round trip)."""
        return cls(**{**data, "budget": TrainBudget.from_dict(data["budget"])})
