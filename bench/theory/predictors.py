"""Lemma 1 of Wang, Zhao & Li (ICML 2021): test predictions of wide MTL and ANIL networks.

Eqs. (15)-(17) of Sec. 4.3, with ``torch.linalg.matrix_exp`` and linear solves in place of
explicit inverses. Phi'_ANIL comes in two forms (fact 2 below): by default the one the
appendix derives (eq. (61)), which Theorem 1's proof uses; ``variant="printed"`` is Lemma 1
verbatim. Notation (paper Sec. 3.4 and 4.3):
``(X, Y)`` are a test task's query points, ``(X', Y')`` its support points, ``calX, calY`` the
N training tasks stacked (``N n`` points), Theta the NTK and K the NNGP kernel. ``lam_tau`` is
the training inner loop's lambda * tau, ``lam_tau_hat`` the test-time fine-tuning's
lambda * tau_hat; they are separate parameters.

    G_tau_hat(X, X', Y') = K(X, X') K(X', X')^-1 (I - exp(-lambda tau_hat K(X', X'))) Y'
    T(X')                = K(X', X')^-1 (I - exp(-lambda tau_hat K(X', X')))          (17)
    [Phi_MTL]_ij         = Theta(X_i, X_j) - 1[i != j] K(X_i, X_j)
    [Phi'_MTL]_1j        = Theta(X, X_j) - K(X, X_j) - K(X, X') T(X') [Theta(X', X_j) - K(X', X_j)]
    [Phi_ANIL]_ij        = E_i Theta(X_i, X_j) E_j,   E_i = exp(-lambda tau K(X_i, X_i))
    [Phi'_ANIL]_1j       = [(Theta - K)(X, X_j) - K(X, X') T(X') (Theta - K)(X', X_j)] E_j  (61)
    (printed in Lemma 1 as [Theta(X, X_j) - K(X, X') T(X') Theta(X', X_j)] E_j)
    F_MTL  = G_tau_hat(X, X', Y') + Phi'_MTL Phi_MTL^-1 calY                              (15)
    F_ANIL = G_tau_hat(X, X', Y') + Phi'_ANIL Phi_ANIL^-1 [calY - G_tau(calX, calX, calY)]  (16)

Two facts this module makes testable:

1. The training lambda * tau cancels from F_ANIL exactly. G_tau(X_i, X_i, Y_i) = (I - E_i) Y_i,
   so calY - G_tau = E calY, and with Phi'_ANIL = P E (P the bracket above, E = diag(E_i)):
   Phi'_ANIL (E Theta E)^-1 E calY = P Theta^-1 calY, whatever lambda * tau is.
2. The appendix's own derivation of Phi'_ANIL (eq. (61), restated as eq. (66):
   Phi'_ANIL = Phi'_MTL diag(E_j)), which Theorem 1's proof (eq. (67)) uses, has Theta - K
   where Lemma 1 as printed has Theta. The ``"eq61"`` variant (the default) implements that
   form; ``"printed"`` is Lemma 1 verbatim. The cancellation holds for both.

Lemma 1 is the ``t -> infinity`` limit of Lemma 2 (Appendix B.2). ``flow_time = eta * t`` keeps
Lemma 2's finite-time factor ``T^{eta,t}_Phi = Phi^-1 (I - exp(-eta t Phi))`` (eq. (40)); there
the training lambda * tau does not cancel, because ``Phi_ANIL = E Theta E`` has directions that
gradient flow fits only slowly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

AnilVariant = Literal["printed", "eq61"]
ANIL_VARIANTS: tuple[str, ...] = ("eq61", "printed")
"""The eq. (61) form first: it is the default and the lead curve."""


@dataclass(frozen=True)
class TaskKernels:
    """Kernel blocks for N training tasks (``n`` points each) and B test tasks.

    Training blocks are ``[N n, N n]``; test blocks carry a leading test-task dimension ``B``:
    ``*_qt`` query x train ``[B, m, N n]``, ``*_st`` support x train ``[B, n', N n]``,
    ``k_qs`` query x support ``[B, m, n']``, ``k_ss`` support x support ``[B, n', n']``.
    """

    n_tasks: int
    theta_tt: Tensor
    k_tt: Tensor
    theta_qt: Tensor
    k_qt: Tensor
    theta_st: Tensor
    k_st: Tensor
    k_qs: Tensor
    k_ss: Tensor

    def __post_init__(self) -> None:
        total = self.theta_tt.shape[-1]
        if total % self.n_tasks:
            raise ValueError(
                f"{total} training points cannot be split into {self.n_tasks} equal tasks"
            )

    @property
    def points_per_task(self) -> int:
        return self.theta_tt.shape[-1] // self.n_tasks

    @classmethod
    def from_full(
        cls, ntk: Tensor, nngp: Tensor, n_tasks: int, n_train: int, n_test_tasks: int,
        n_support: int, n_query: int,
    ) -> "TaskKernels":
        """Slice full ``[P, P]`` kernels over points ordered as train, supports, queries.

        ``n_train`` is the total number of training points; supports come task by task
        (``n_test_tasks * n_support`` points), then queries likewise.
        """
        expected = n_train + n_test_tasks * (n_support + n_query)
        if ntk.shape[-1] != expected or nngp.shape[-1] != expected:
            raise ValueError(
                f"full kernels must be [{expected}, {expected}], got {tuple(ntk.shape)}"
            )
        t = slice(0, n_train)
        s0, q0 = n_train, n_train + n_test_tasks * n_support

        def block(kernel: Tensor, rows_start: int, rows_each: int, cols: slice | None) -> Tensor:
            rows = kernel[rows_start:rows_start + n_test_tasks * rows_each]
            rows = rows.reshape(n_test_tasks, rows_each, kernel.shape[-1])
            return rows[..., cols] if cols is not None else rows

        k_qs_all = block(nngp, q0, n_query, slice(s0, q0)).reshape(
            n_test_tasks, n_query, n_test_tasks, n_support
        )
        k_ss_all = block(nngp, s0, n_support, slice(s0, q0)).reshape(
            n_test_tasks, n_support, n_test_tasks, n_support
        )
        index = torch.arange(n_test_tasks)
        return cls(
            n_tasks=n_tasks,
            theta_tt=ntk[t, t],
            k_tt=nngp[t, t],
            theta_qt=block(ntk, q0, n_query, t),
            k_qt=block(nngp, q0, n_query, t),
            theta_st=block(ntk, s0, n_support, t),
            k_st=block(nngp, s0, n_support, t),
            k_qs=k_qs_all[index, :, index],
            k_ss=k_ss_all[index, :, index],
        )


def _identity_like(matrix: Tensor) -> Tensor:
    return torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device).expand_as(matrix)


def decay(kernel: Tensor, lam_tau: float) -> Tensor:
    """``exp(-lambda tau K)`` for square kernels ``[..., n, n]`` (gradient flow on a head)."""
    return torch.linalg.matrix_exp(-lam_tau * kernel)


def t_matrix(k_ss: Tensor, lam_tau_hat: float) -> Tensor:
    """Eq. (17): ``T(X') = K(X', X')^-1 (I - exp(-lambda tau_hat K(X', X')))`` by a solve."""
    return torch.linalg.solve(k_ss, _identity_like(k_ss) - decay(k_ss, lam_tau_hat))


def g_function(k_xs: Tensor, k_ss: Tensor, y_s: Tensor, lam_tau: float) -> Tensor:
    """``G(X, X', Y') = K(X, X') K(X', X')^-1 (I - exp(-lambda tau K(X', X'))) Y'``.

    ``k_xs`` is ``[..., m, n']``, ``k_ss`` ``[..., n', n']``, ``y_s`` ``[..., n']``; returns
    ``[..., m]``: the output on X of a wide network's zero-output head fine-tuned on (X', Y')
    by gradient flow (the paper's Remark after Lemma 1).
    """
    residual = (_identity_like(k_ss) - decay(k_ss, lam_tau)) @ y_s.unsqueeze(-1)
    return (k_xs @ torch.linalg.solve(k_ss, residual)).squeeze(-1)


def _task_blocks(matrix: Tensor, n_tasks: int) -> Tensor:
    """Diagonal blocks ``[N, n, n]`` of a ``[N n, N n]`` matrix."""
    n = matrix.shape[-1] // n_tasks
    blocks = matrix.reshape(n_tasks, n, n_tasks, n)
    index = torch.arange(n_tasks)
    return blocks[index, :, index]


def _block_diag_mask(n_tasks: int, n: int, like: Tensor) -> Tensor:
    same = torch.block_diag(*[torch.ones(n, n, dtype=like.dtype)] * n_tasks)
    return same.to(like.device)


def g_training(kern: TaskKernels, y_train: Tensor, lam_tau: float) -> Tensor:
    """``G_tau(calX, calX, calY) = vec(G_tau(X_i, X_i, Y_i))`` ``[N n]``; ``y_train`` ``[N, n]``."""
    k_ii = _task_blocks(kern.k_tt, kern.n_tasks)
    return g_function(k_ii, k_ii, y_train, lam_tau).reshape(-1)


def phi_mtl(kern: TaskKernels) -> Tensor:
    """MTL kernel ``Phi_MTL(calX, calX)`` ``[N n, N n]``: Theta minus K off the diagonal blocks."""
    mask = _block_diag_mask(kern.n_tasks, kern.points_per_task, kern.k_tt)
    return kern.theta_tt - (1.0 - mask) * kern.k_tt


def phi_mtl_prime(kern: TaskKernels, lam_tau_hat: float) -> Tensor:
    """``Phi'_MTL((X, X', tau_hat), calX)`` ``[B, m, N n]`` (Lemma 1, as printed)."""
    t = t_matrix(kern.k_ss, lam_tau_hat)
    return (kern.theta_qt - kern.k_qt) - kern.k_qs @ t @ (kern.theta_st - kern.k_st)


def training_decays(kern: TaskKernels, lam_tau: float) -> Tensor:
    """``E_i = exp(-lambda tau K(X_i, X_i))`` for every training task, ``[N, n, n]``."""
    return decay(_task_blocks(kern.k_tt, kern.n_tasks), lam_tau)


def _right_block_diag(matrix: Tensor, blocks: Tensor) -> Tensor:
    """``matrix @ diag(blocks)`` for ``matrix [..., r, N n]`` and ``blocks [N, n, n]``."""
    n_tasks, n = blocks.shape[0], blocks.shape[-1]
    split = matrix.reshape(*matrix.shape[:-1], n_tasks, n)
    return torch.einsum("...jn,jnk->...jk", split, blocks).reshape(matrix.shape)


def phi_anil(kern: TaskKernels, lam_tau: float) -> Tensor:
    """ANIL kernel ``Phi_ANIL(calX, calX) = diag(E) Theta diag(E)`` ``[N n, N n]``."""
    e = training_decays(kern, lam_tau)
    right = _right_block_diag(kern.theta_tt, e)
    return _right_block_diag(right.transpose(-1, -2), e).transpose(-1, -2)


def phi_anil_prime(
    kern: TaskKernels, lam_tau: float, lam_tau_hat: float, variant: AnilVariant = "eq61"
) -> Tensor:
    """``Phi'_ANIL((X, X', tau_hat), calX)`` ``[B, m, N n]``.

    ``"eq61"`` (default): ``[(Theta - K)(X, X_j) - K(X, X') T (Theta - K)(X', X_j)] E_j``
    (Appendix B.3, eqs. (61) and (66); the form Theorem 1's proof uses).
    ``"printed"``: the same with ``Theta`` in place of ``Theta - K`` (Lemma 1 verbatim).
    """
    if variant not in ANIL_VARIANTS:
        raise ValueError(f"unknown ANIL variant {variant!r}; choose one of {ANIL_VARIANTS}")
    t = t_matrix(kern.k_ss, lam_tau_hat)
    theta_qt, theta_st = kern.theta_qt, kern.theta_st
    if variant == "eq61":
        theta_qt, theta_st = theta_qt - kern.k_qt, theta_st - kern.k_st
    bracket = theta_qt - kern.k_qs @ t @ theta_st
    return _right_block_diag(bracket, training_decays(kern, lam_tau))


def _apply_inverse(
    phi_prime: Tensor, phi: Tensor, rhs: Tensor, flow_time: float | None = None
) -> Tensor:
    """``phi_prime @ T(phi) @ rhs`` with one solve; ``rhs`` is ``[N n]``, result ``[B, m]``.

    ``T(phi) = phi^-1`` for training run to convergence (Lemma 1, ``t = infinity``), or, given
    ``flow_time = eta * t``, Lemma 2's ``T^{eta,t}_phi = phi^-1 (I - exp(-eta t phi))``
    (eqs. (40), (42), (44)): the linearised network after gradient flow of duration ``eta t``.
    """
    if flow_time is not None:
        if flow_time < 0:
            raise ValueError(f"flow_time must be non-negative, got {flow_time}")
        rhs = (_identity_like(phi) - decay(phi, flow_time)) @ rhs
    coefficients = torch.linalg.solve(phi, rhs.unsqueeze(-1)).squeeze(-1)
    return phi_prime @ coefficients


def f_mtl(
    kern: TaskKernels, y_train: Tensor, y_support: Tensor, lam_tau_hat: float,
    flow_time: float | None = None,
) -> Tensor:
    """Eq. (15): MTL's test predictions on every query set, ``[B, m]``.

    ``flow_time = eta * t`` replaces ``Phi_MTL^-1`` by Lemma 2's finite-time ``T^{eta,t}``
    (eq. (44)); ``None`` is Lemma 1 exactly.
    """
    g = g_function(kern.k_qs, kern.k_ss, y_support, lam_tau_hat)
    prime = phi_mtl_prime(kern, lam_tau_hat)
    return g + _apply_inverse(prime, phi_mtl(kern), y_train.reshape(-1), flow_time)


def f_anil(
    kern: TaskKernels, y_train: Tensor, y_support: Tensor, lam_tau: float, lam_tau_hat: float,
    variant: AnilVariant = "eq61", flow_time: float | None = None,
) -> Tensor:
    """Eq. (16): ANIL's test predictions on every query set, ``[B, m]``.

    ``variant`` chooses Phi'_ANIL's form (see :func:`phi_anil_prime`); eq. (61) by default.

    ``flow_time = eta * t`` replaces ``Phi_ANIL^-1`` by Lemma 2's finite-time ``T^{eta,t}``
    (eq. (42)); ``None`` is Lemma 1 exactly. Only at finite time can the training
    ``lam_tau`` change the prediction.
    """
    g = g_function(kern.k_qs, kern.k_ss, y_support, lam_tau_hat)
    target = y_train.reshape(-1) - g_training(kern, y_train, lam_tau)
    prime = phi_anil_prime(kern, lam_tau, lam_tau_hat, variant)
    return g + _apply_inverse(prime, phi_anil(kern, lam_tau), target, flow_time)
