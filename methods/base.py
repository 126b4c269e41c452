"""The contract every few-shot method implements (after easyfsl's ``FewShotClassifier``).

A method holds a backbone and only what makes it different: how a batch of training tasks
becomes a loss (:meth:`FewShotMethod.loss`) and, optionally, how it adapts natively to a test
task (:meth:`FewShotMethod.adapt`). Every method is also evaluated with the unified protocol of
Wang et al. (2021, Sec. 3.4): a fresh logistic-regression head on frozen, L2-normalised
features from :meth:`FewShotMethod.features`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

import torch
from torch import nn

from core.hparams import HParam, validate_hparams
from core.search import SearchDim
from datasets.episodes import TaskBatch
from methods.backbones import Backbone
from methods.taxonomy import Table1

if TYPE_CHECKING:
    from core.budget import TrainBudget
    from datasets import DatasetInfo

Predictor = Callable[[torch.Tensor], torch.Tensor]
"""Maps query images ``[T, Q, C, H, W]`` to logits ``[T, Q, ways]``."""


AUGMENTATION_POLICIES = ("dataset", "none")
TRAINING_BATCHES = ("episodes", "images")


class FewShotMethod(nn.Module):
    """Base class. A method implements :meth:`loss` (and :meth:`adapt` if it has a native
    test-time adaptation) and declares, as class attributes, everything the harness needs to
    know about it; ``bench/`` reads these and never tests a method's name:

    - ``display_name``: how tables and plots print it (default: its registered name);
    - ``citation``: the paper it comes from;
    - ``hparam_spec``: its hyperparameters (:class:`core.hparams.HParam`: default, type, range);
    - ``task_local_batch_norm``: True when every training forward normalises with one task's
      own batch statistics (MAML), so data-parallel runs must not synchronise batch norm;
    - ``quick_hparams``: hyperparameters the CPU budgets (``smoke`` and ``quick``) set: the
      method's CPU-sized exceptions, each explained where it is declared;
    - ``training_batches``: what one training step draws, ``"episodes"`` (``meta_batch``
      few-shot tasks) or ``"images"`` (a plain mini-batch of ``meta_batch`` training images,
      each a one-image task whose ``classes[t, 0]`` is its training class:
      :mod:`datasets.batches`);
    - ``table1``: the method's cell of the paper's Table 1 (inner-loop layers x regulariser,
      :mod:`methods.taxonomy`), or that it stands outside it; a method with a cell is
      gradient-based meta-learning, a target of ``bench table``'s time to accuracy;
    - ``augmentation``: the training augmentation policy, ``"dataset"`` (the dataset's
      declared training augmentation) or ``"none"``; :meth:`training_augmentation` applies it;
    - ``efficiency_reference``: the paper's speed-ups are relative to this method (one method
      declares it: MetaOptNet, Table 4 and Figure 2);
    - ``comparison_baseline``: ``bench table``'s paired comparisons (and ``bench table
      --brief``'s cost ratios) set every method against this one by default (one method
      declares it: MTL, the paper's question being whether MTL is as accurate as
      meta-learning);
    - ``native_reuses_features``: its native adaptation sees every image only through
      :meth:`task_features` in eval mode, so an image's features do not depend on the episode
      it is in; the evaluator then embeds each distinct test image once, as the unified
      protocol does, and calls :meth:`adapt_features` per episode (the method implements it).
      Not for adaptations that normalise with a batch's statistics (MAML) or touch the
      backbone;
    - ``reported_as``: the rows of the paper's tables (``bench/reference/paper.csv``: a
      method name, with its head where the source names one, e.g. ``"MetaOptNet-SVM"``) that
      report this method under its paper budget, each with why, where the row is not simply
      the method's own (``bench table`` shows the row next to the method and the why in its
      footnote); default: its display name;
    - ``native_ways_fixed``: its native adaptation starts from a head with one output per
      class of its *training* episodes (MAML's and ANIL's ``nn.Linear(D, ways)``), so it can
      classify only episodes with that many classes; False (the default) when the native
      adaptation builds its head from the episode's own classes (prototypes, ridge, SVM), or
      when there is none. ``bench eval`` and :mod:`bench.api` refuse other way counts for the
      native protocol of a method that declares it;
    - ``search_space``: what ``bench tune`` searches for it beyond the shared optimiser space
      (:mod:`core.search`: a :class:`~core.search.Range` or :class:`~core.search.Choice` per
      hyperparameter of ``hparam_spec``, inside its declared range); empty: only the shared
      space;
    - ``relative_cost``: what one of its runs costs on a CPU relative to MTL's at the same
      budget, shape and test episodes (training, validation and both test protocols; 1.0:
      as MTL), from the main job's per-run profile (docs/performance.md). ``bench run
      --jobs`` starts the costliest runs first, so no long run finishes alone at the end;
      a rough figure is enough (it only orders runs);
    - :meth:`paper_budget`: its original paper's training setting per (dataset, shots).

    ``name`` is set by :func:`methods.register_method`; ``display_name``,
    ``efficiency_reference``, ``comparison_baseline`` and ``reported_as`` are not inherited by a
    registered subclass unless it declares them.
    ``hparams`` may only contain keys of ``hparam_spec``, with values it accepts
    (:func:`core.hparams.validate_hparams`: typos and bad values are errors).
    """

    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    hparam_spec: ClassVar[Mapping[str, HParam]] = {}
    """The method's hyperparameters: default, type, valid range and meaning of each."""
    task_local_batch_norm: ClassVar[bool] = False
    quick_hparams: ClassVar[Mapping[str, Any]] = {}
    training_batches: ClassVar[str] = "episodes"
    table1: ClassVar[Table1] = None
    augmentation: ClassVar[str] = "dataset"
    efficiency_reference: ClassVar[bool] = False
    comparison_baseline: ClassVar[bool] = False
    native_reuses_features: ClassVar[bool] = False
    native_ways_fixed: ClassVar[bool] = False
    reported_as: ClassVar[Mapping[str, str]] = {}
    search_space: ClassVar[Mapping[str, SearchDim]] = {}
    relative_cost: ClassVar[float] = 1.0

    @classmethod
    def paper_budget(cls, dataset: DatasetInfo, shots: int) -> TrainBudget:
        """The original paper's training setting on ``dataset`` for ``shots``-shot testing
        (``dataset.benchmark`` tells which benchmark it is)."""
        raise NotImplementedError(f"method {cls.name!r} declares no paper budget "
                                  f"(FewShotMethod.paper_budget)")

    @classmethod
    def training_augmentation(cls, dataset: DatasetInfo | None, budget: TrainBudget
                              ) -> str | None:
        """The training augmentation to use on ``dataset`` (None: a dataset built outside
        the registry) under ``budget``: the dataset's declared one unless the policy is
        ``"none"``. Override for a policy that depends on the budget."""
        if cls.augmentation == "none" or dataset is None:
            return None
        return dataset.train_augmentation

    def __init__(self, backbone: Backbone, n_train_classes: int, ways: int,
                 hparams: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.n_train_classes = n_train_classes
        self.ways = ways
        self.hparams = self.resolve_hparams(hparams or {})

    @classmethod
    def resolve_hparams(cls, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults updated with ``overrides``, checked against :attr:`hparam_spec`
        (:class:`core.hparams.HParamError`, a ``ValueError``, otherwise). Needs no model."""
        return validate_hparams(f"method {cls.name!r}", cls.hparam_spec, overrides)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[B, D]`` of images ``[B, C, H, W]`` (what the unified protocol sees)."""
        return self.backbone(images)

    def task_features(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[T, S, D]`` of ``[T, S, C, H, W]``, all tasks in one forward."""
        t, s = images.shape[:2]
        return self.features(images.flatten(0, 1)).view(t, s, -1)

    def embed_episode(self, batch: TaskBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Support and query images of every task through :meth:`task_features` in ONE
        forward (so batch norm sees every image of the batch once), split again: support
        features ``[T, S, D]`` and query features ``[T, Q, D]``."""
        n_support = batch.support.shape[1]
        features = self.task_features(batch.images)
        return features[:, :n_support], features[:, n_support:]

    def loss(self, batch: TaskBatch) -> torch.Tensor:
        """Mean training loss over the tasks of ``batch`` (a scalar with a graph)."""
        raise NotImplementedError

    @property
    def has_native_adaptation(self) -> bool:
        return type(self).adapt is not FewShotMethod.adapt

    def adapt(self, support: torch.Tensor, support_labels: torch.Tensor) -> Predictor:
        """The method's own test-time adaptation on support ``[T, S, C, H, W]``.

        Methods without one (MTL) do not override this; their native protocol is the unified one.
        """
        raise NotImplementedError(f"{self.name} has no native adaptation")

    def adapt_for_selection(self, support: torch.Tensor, support_labels: torch.Tensor
                            ) -> Predictor:
        """The native adaptation that validation-based model selection uses
        (``--select-on native``); the test-time :meth:`adapt` unless a method's reference
        validates differently (MetaOptNet: more solver iterations than at test)."""
        return self.adapt(support, support_labels)

    def adapt_features(self, support: torch.Tensor, support_labels: torch.Tensor,
                       selection: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
        """:meth:`adapt` (``selection``: :meth:`adapt_for_selection`) from eval-mode support
        features ``[T, S, D]`` (those of :meth:`task_features`); the predictor maps query
        features ``[T, Q, D]`` to logits. Only for methods that declare
        ``native_reuses_features``, where ``adapt(images)`` equals
        ``adapt_features(task_features(images))`` applied to ``task_features(query)``."""
        raise NotImplementedError(f"{self.name} does not adapt from features "
                                  "(native_reuses_features is False)")

    def on_optimizer_step(self) -> None:
        """Called by the training step after every optimiser step (advances DropBlock's ramp)."""
        self.backbone.advance_schedule()
