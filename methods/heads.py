"""Differentiable episode heads, batched over tasks: pure functions of feature tensors.

Every function takes support features ``[T, S, D]`` with labels ``[T, S]`` in ``0..ways-1``
and works on all ``T`` tasks at once. Heads that are linear in the query are split in two
steps, *fit* (support -> class weights ``[T, D, ways]``) and :func:`linear_logits` (query ->
logits), so a method's native adaptation fits once and scores any number of queries.

- Ridge regression (R2D2; Bertinetto et al., "Meta-learning with differentiable closed-form
  solvers", ICLR 2019), solved in the support dimension (Woodbury form).
- Crammer-Singer multi-class SVM dual (MetaOptNet; Lee et al., "Meta-Learning with
  Differentiable Convex Optimization", CVPR 2019), solved with qpth's batched interior-point
  solver (Amos & Kolter, "OptNet", ICML 2017), which differentiates through the KKT conditions.
- Prototypes and negative squared Euclidean distances (ProtoNet; Snell et al., "Prototypical
  Networks for Few-shot Learning", NeurIPS 2017).

:class:`EpisodeHeadMethod` at the end is the scaffolding the three methods share: one backbone
forward per batch, the head fitted on every task at once, cross-entropy on the queries.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from core.budget import DATASET_AUGMENTATION, TrainBudget, ramp_steps_ending_at_epoch
from datasets import DatasetInfo
from datasets.episodes import TaskBatch
from methods.base import FewShotMethod, Predictor

# qpth prints an "inaccurate solution" banner whenever it stops before its residuals fall
# below 1 and ``verbose >= 0``. MetaOptNet stops after 3 iterations at test time by design,
# so the banner would be printed for nearly every test batch; -1 silences it.
_QPTH_SILENT = -1


def check_episode(support: torch.Tensor, support_labels: torch.Tensor) -> None:
    """Raise ``ValueError`` unless support features are ``[T, S, D]`` and labels ``[T, S]``.
    Shape checks only: nothing is synchronised with the device."""
    if support.dim() != 3:
        raise ValueError(f"support features must be [tasks, shots*ways, dim], got "
                         f"{tuple(support.shape)}; flatten each image's features first")
    if support_labels.shape != support.shape[:2]:
        raise ValueError(f"support labels {tuple(support_labels.shape)} do not match support "
                         f"features {tuple(support.shape)}: expected {tuple(support.shape[:2])}")


def one_hot(labels: torch.Tensor, ways: int, dtype: torch.dtype) -> torch.Tensor:
    """``[T, S]`` integer labels -> ``[T, S, ways]`` one-hot rows in ``dtype``."""
    return F.one_hot(labels.long(), ways).to(dtype)


def linear_logits(query: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Query features ``[T, Q, D]`` times class weights ``[T, D, W]`` -> logits ``[T, Q, W]``."""
    return torch.bmm(query, weights.to(query.dtype))


# --------------------------------------------------------------------------------------------
# Ridge regression (R2D2)
# --------------------------------------------------------------------------------------------
def ridge_weights(support: torch.Tensor, support_labels: torch.Tensor, ways: int,
                  lam: float) -> torch.Tensor:
    """Closed-form ridge regression onto one-hot targets (Bertinetto et al. 2019).

    ``W = Xᵀ (X Xᵀ + λ I)⁻¹ Y``: the Woodbury form, an ``S x S`` system per task, equal to the
    primal ``(XᵀX + λI)⁻¹ XᵀY`` but cheap when the support set is smaller than the feature
    dimension. Returns ``[T, D, ways]``; differentiable w.r.t. ``support``.
    """
    check_episode(support, support_labels)
    if lam <= 0:
        raise ValueError(f"ridge lambda must be positive (it makes XXᵀ+λI invertible), got {lam}")
    targets = one_hot(support_labels, ways, support.dtype)
    gram = torch.bmm(support, support.transpose(1, 2))
    eye = torch.eye(support.shape[1], dtype=support.dtype, device=support.device)
    # XXᵀ + λI is symmetric positive definite: Cholesky rather than LU (torch.linalg.solve).
    # Half the work, and on the CPU, after any explicit torch.set_num_threads(k > 1), torch
    # 2.14's batched LU returns invalid pivots for systems of ~190 rows and more (measured
    # here); the batched Cholesky path stays correct.
    chol = torch.linalg.cholesky(gram + lam * eye)
    dual = torch.cholesky_solve(targets, chol)  # [T, S, W]
    return torch.bmm(support.transpose(1, 2), dual)


# --------------------------------------------------------------------------------------------
# Crammer-Singer multi-class SVM (MetaOptNet-SVM)
# --------------------------------------------------------------------------------------------
def crammer_singer_qp(support: torch.Tensor, support_labels: torch.Tensor, ways: int,
                      c_reg: float, dual_ridge: float = 1.0
                      ) -> tuple[torch.Tensor, ...]:
    """The Crammer-Singer dual as qpth's ``(Q, p, G, h, A, b)``, batched over tasks.

    Variables ``α ∈ R^{S·ways}``, index ``i·ways + m`` (support sample i, class m)::

        min ½ αᵀ (K ⊗ I_ways + dual_ridge·I) α − Σ_i α_i^{y_i}
        s.t. α_i^m ≤ c_reg·[m = y_i],  Σ_m α_i^m = 0  (every i)

    with ``K = X Xᵀ``. This is MetaOptNet's "SVM-CS" head (Lee et al. 2019, and
    ``MetaOptNetHead_SVM_CS``). The ``dual_ridge·I`` term (1.0 in MetaOptNet) makes Q
    positive definite; since ``K ⊗ I + I = (K + I) ⊗ I`` it is the exact Crammer-Singer SVM on
    features augmented with a one-hot sample indicator ``[x_i, √dual_ridge·e_i]``.
    """
    check_episode(support, support_labels)
    if c_reg <= 0 or dual_ridge <= 0:
        raise ValueError(f"c_reg and dual_ridge must be positive, got {c_reg} and {dual_ridge}")
    t, s, _ = support.shape
    n = s * ways
    dtype, device = support.dtype, support.device
    gram = torch.bmm(support, support.transpose(1, 2))  # [T, S, S]
    eye_w = torch.eye(ways, dtype=dtype, device=device)
    # (K ⊗ I_w)[(i,m),(j,m')] = K_ij·δ_mm'
    q = (gram[:, :, None, :, None] * eye_w[None, None, :, None, :]).reshape(t, n, n)
    q = q + dual_ridge * torch.eye(n, dtype=dtype, device=device)
    targets = one_hot(support_labels, ways, dtype).reshape(t, n)
    p = -targets
    g = torch.eye(n, dtype=dtype, device=device)
    h = c_reg * targets
    a = torch.kron(torch.eye(s, dtype=dtype, device=device),
                   torch.ones(1, ways, dtype=dtype, device=device))  # [S, S·ways]
    b = torch.zeros(s, dtype=dtype, device=device)
    return q, p, g, h, a, b


def svm_dual_coefficients(support: torch.Tensor, support_labels: torch.Tensor, ways: int,
                          c_reg: float = 0.1, max_iter: int = 15, dual_ridge: float = 1.0,
                          double_precision: bool = False) -> torch.Tensor:
    """Solve the Crammer-Singer dual (:func:`crammer_singer_qp`) for all tasks in one batched
    qpth call; returns ``α`` as ``[T, S, ways]`` in the dtype of ``support``.

    ``max_iter`` caps the interior-point iterations (MetaOptNet: 15 in training and
    validation, 3 at test). ``double_precision`` solves in float64 (MetaOptNet's option).
    qpth's Cholesky "Q is SPD" pre-check is skipped: Q is positive definite by construction
    (its smallest eigenvalue is at least ``dual_ridge``), and the solver factorises Q itself.
    Gradients flow to ``support`` through Q (qpth differentiates the KKT conditions at the
    returned point, which is exact only as far as the solver converged).
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    qp = crammer_singer_qp(support, support_labels, ways, c_reg, dual_ridge)
    if double_precision:
        qp = tuple(x.double() for x in qp)
    q, p, g, h, a, b = qp
    # Here, not at the top: qpth imports cvxpy and scipy (3 s), which only this solve needs.
    from qpth.qp import QPFunction

    solver = QPFunction(verbose=_QPTH_SILENT, maxIter=max_iter, check_Q_spd=False)
    try:
        alpha = solver(q, p, g, h, a, b)  # only Q depends on the features
    except RuntimeError as err:
        if "lu_solve" not in str(err) or q.is_cuda:
            raise
        raise RuntimeError(
            f"qpth's batched LU factorisation failed on the CPU ({err}). With torch 2.14 this "
            f"happens for QPs of ~190 variables and more once torch.set_num_threads(k) has been "
            f"called with k > 1 in this process (measured; the default setting is unaffected). "
            f"Do not call torch.set_num_threads with k > 1: set OMP_NUM_THREADS before starting "
            f"Python instead, or call torch.set_num_threads(1)."
        ) from err
    return alpha.reshape(support.shape[0], support.shape[1], ways).to(support.dtype)


def svm_weights(support: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Primal class weights ``w_m = Σ_i α_i^m x_i`` as ``[T, D, ways]``, so that
    ``logits_{q,m} = Σ_i α_i^m ⟨x_i, q⟩ = ⟨w_m, q⟩`` (:func:`linear_logits`)."""
    return torch.bmm(support.transpose(1, 2), alpha)


# --------------------------------------------------------------------------------------------
# Prototypes (ProtoNet)
# --------------------------------------------------------------------------------------------
def prototypes(support: torch.Tensor, support_labels: torch.Tensor, ways: int) -> torch.Tensor:
    """Class means of the support features, ``[T, ways, D]`` (Snell et al. 2017, Eq. 1).

    Every class must have at least one support sample (the episode sampler guarantees it);
    an empty class would give a zero prototype, so it is not checked here (that would need a
    device synchronisation).
    """
    check_episode(support, support_labels)
    targets = one_hot(support_labels, ways, support.dtype)  # [T, S, W]
    counts = targets.sum(1).clamp_min(1.0)  # [T, W]
    return torch.bmm(targets.transpose(1, 2), support) / counts.unsqueeze(-1)


def prototype_logits(query: torch.Tensor, protos: torch.Tensor,
                     normalize_by_dim: bool = True) -> torch.Tensor:
    """``−‖q − c_m‖²`` for query ``[T, Q, D]`` and prototypes ``[T, W, D]`` -> ``[T, Q, W]``
    (Snell et al. 2017, Eq. 2 with the squared Euclidean distance). With ``normalize_by_dim``
    the distance is divided by D, as in MetaOptNet's ``ProtoNetHead(normalize=True)``."""
    protos = protos.to(query.dtype)
    sq_dist = ((query * query).sum(-1, keepdim=True)
               - 2.0 * torch.bmm(query, protos.transpose(1, 2))
               + (protos * protos).sum(-1).unsqueeze(1))
    logits = -sq_dist
    return logits / query.shape[-1] if normalize_by_dim else logits


# --------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------
def smoothed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                           eps: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over all queries of all tasks; logits ``[T, Q, W]``, labels ``[T, Q]``.

    With ``eps > 0``, MetaOptNet's label smoothing: target ``1 − eps`` on the true class and
    ``eps / (W − 1)`` on each other class (not torch's ``label_smoothing``, which spreads
    ``eps / W`` over all classes including the true one).
    """
    ways = logits.shape[-1]
    flat_logits, flat_labels = logits.reshape(-1, ways), labels.reshape(-1).long()
    if eps == 0.0:
        return F.cross_entropy(flat_logits, flat_labels)
    if not 0.0 < eps < 1.0:
        raise ValueError(f"label smoothing eps must be in [0, 1), got {eps}")
    targets = F.one_hot(flat_labels, ways).to(flat_logits.dtype)
    targets = targets * (1.0 - eps) + (1.0 - targets) * (eps / (ways - 1))
    return -(targets * F.log_softmax(flat_logits, dim=-1)).sum(-1).mean()


# --------------------------------------------------------------------------------------------
# Method scaffolding shared by the three head-based methods
# --------------------------------------------------------------------------------------------
class EpisodeHeadMethod(FewShotMethod):
    """A method whose only difference is a head fitted on each episode's support features
    (R2D2, MetaOptNet, ProtoNet). Subclasses implement :meth:`fit_head` and
    :meth:`head_logits`; training and native adaptation are shared:

    - :meth:`loss`: support and query images of ALL tasks through the backbone in one forward,
      the head fitted on the support of every task at once, cross-entropy averaged over all
      queries of all tasks (with ``hparams["label_smoothing"]`` if the method has it).
    - :meth:`adapt`: the head fitted once on the support features; the predictor scores query
      images ``[T, Q, C, H, W]`` -> logits ``[T, Q, ways]`` with ``ways`` the episode's own
      class count (its support labels are ``0..ways-1``), whatever the training way count:
      prototypes, ridge and SVM heads are built from the episode's classes. It sees
      images only through eval-mode features, so the evaluator may embed each test image once
      (``native_reuses_features``, :meth:`adapt_features`).
    """

    native_reuses_features = True

    def fit_head(self, support: torch.Tensor, support_labels: torch.Tensor, ways: int,
                 training: bool) -> torch.Tensor:
        """Whatever the head needs from the support features ``[T, S, D]`` (class weights,
        prototypes). ``training`` is True inside :meth:`loss` (and for validation-based
        selection, :meth:`adapt_for_selection`), False inside :meth:`adapt`."""
        raise NotImplementedError

    def head_logits(self, query: torch.Tensor, fitted: torch.Tensor) -> torch.Tensor:
        """Logits ``[T, Q, ways]`` of query features ``[T, Q, D]`` under the fitted head."""
        raise NotImplementedError

    def loss(self, batch: TaskBatch) -> torch.Tensor:
        support, query = self.embed_episode(batch)
        with full_precision(support):
            fitted = self.fit_head(support.float(), batch.support_labels, batch.ways,
                                   training=True)
            logits = self.head_logits(query.float(), fitted)
        return smoothed_cross_entropy(logits, batch.query_labels,
                                      float(self.hparams.get("label_smoothing", 0.0)))

    def adapt(self, support: torch.Tensor, support_labels: torch.Tensor) -> Predictor:
        return self._image_predictor(support, support_labels, selection=False)

    def adapt_for_selection(self, support: torch.Tensor, support_labels: torch.Tensor
                            ) -> Predictor:
        """The head as [MON] ``train.py`` validates it: fitted as in training (MetaOptNet: 15
        QP iterations, not ``test.py``'s 3), on eval-mode features."""
        return self._image_predictor(support, support_labels, selection=True)

    def _image_predictor(self, support: torch.Tensor, support_labels: torch.Tensor,
                         selection: bool) -> Predictor:
        score = self.adapt_features(self.task_features(support), support_labels, selection)
        return lambda query: score(self.task_features(query))

    def adapt_features(self, support: torch.Tensor, support_labels: torch.Tensor,
                       selection: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
        """The head fitted on support features ``[T, S, D]`` (``selection``: as in training,
        :meth:`adapt_for_selection`); the predictor scores query features ``[T, Q, D]``."""
        ways = int(support_labels.max()) + 1  # the episode's classes, not the training ways
        with full_precision(support):
            fitted = self.fit_head(support.float(), support_labels, ways, training=selection)

        def predictor(query: torch.Tensor) -> torch.Tensor:
            with full_precision(query):
                return self.head_logits(query.float(), fitted)

        return predictor


#: [MON] runs the ResNet-12 of these benchmarks inside ``nn.DataParallel(device_ids=[0, 1, 2,
#: 3])`` (``train.py:43-45``), whose per-call replicas take DropBlock's forward counter, so the
#: ramp never advances there (docs/references.md#backbones).
DATA_PARALLEL_BENCHMARKS = ("mini-imagenet", "tiered-imagenet")
#: DropBlock forward calls per epoch in [MON] ``train.py`` on one device: 1,000 training batches
#: with a support and a query forward each (lines 201, 204), and 2,000 validation episodes with
#: the same two forwards (lines 242, 244, ``--val-episode 2000``).
FORWARDS_PER_EPOCH = 1000 * 2 + 2000 * 2
STEPS_PER_EPOCH = 1000


def metaoptnet_recipe(dataset: DatasetInfo, train_shots: int, hparams: dict[str, Any]
                      ) -> TrainBudget:
    """[MON] ``train.py`` (docs/references.md#metaoptnet-r2d2-protonet), the paper budget of
    the three head-based methods: SGD 0.1 Nesterov, wd 5e-4, 60 epochs x 1000 batches of 8
    episodes, lr x{1, 0.06, 0.012, 0.0024} from (1-based) epochs {1, 20, 40, 50}
    (``train.py:170-180``: ``LambdaLR`` stepped at the start of each epoch, so epoch 20 already
    runs at 0.06), 6 queries per class, validation on 2000 5-shot episodes, flattened ResNet-12
    features, the Lee et al. 2019 augmentation where the dataset declares it.

    DropBlock's ramp: on one device [MON]'s blocks count :data:`FORWARDS_PER_EPOCH` forward
    calls per epoch, so the 40,000-count ramp ends 6.7 epochs in (CIFAR-FS, FC100 and any
    dataset other than mini-/tiered-ImageNet: 6,667 optimiser steps here). On mini- and
    tiered-ImageNet [MON] trains in a 4-GPU ``nn.DataParallel``, whose replicas increment
    their own copy of the counter, so the ramp never advanced and DropBlock stayed inactive
    (derived from torch's replication, not run; FACTS 8.11): this budget does the same
    (``dropblock_ramp_steps=None``, overridable with ``--dropblock-ramp``)."""
    ramp = (None if dataset.benchmark in DATA_PARALLEL_BENCHMARKS
            else ramp_steps_ending_at_epoch(FORWARDS_PER_EPOCH, STEPS_PER_EPOCH))
    return TrainBudget(
        name="paper", backbone="resnet12", feature_mode="flatten", epochs=60,
        steps_per_epoch=STEPS_PER_EPOCH, meta_batch=8, train_shots=train_shots,
        train_queries=6, optimizer="sgd", lr=0.1, weight_decay=5e-4, momentum=0.9,
        nesterov=True, schedule="step", lr_epochs=(20, 40, 50),
        lr_factors=(0.06, 0.012, 0.0024), early_stop_patience=None, val_episodes=2000,
        val_shots=5, hparams=hparams, augmentation=DATASET_AUGMENTATION,
        dropblock_ramp_steps=ramp,
    )


def full_precision(reference: torch.Tensor) -> torch.autocast:
    """Autocast off: heads are fitted in float32 (or float64) whatever ``--precision`` is.

    Under ``bf16`` only the backbone runs in bfloat16; the ridge and SVM solves need float32
    (qpth's LU has no bfloat16 kernel, on the CPU or on CUDA).
    """
    return torch.autocast(device_type=reference.device.type, enabled=False)
