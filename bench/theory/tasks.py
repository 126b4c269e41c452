"""The synthetic few-shot regression problem of Wang, Zhao & Li (ICML 2021), Sec. 5.1.

Each task has parameters ``mu ~ N(0, I_d)`` and ``nu ~ Uniform(1.3, 1.6)``; its points are
``x ~ N(mu, nu^2 I_d)`` and its labels ``y = nu * ||x - mu||_2^2``. The paper writes
``y = nu (x - mu)^2`` with a scalar label (k = 1), which we read as the squared Euclidean norm.
Training uses N = 20 tasks of n = 10 points; each test task has 5 support and 10 query points;
d = 10.

Inputs are then normalised as the paper assumes (Sec. 4.3, "inputs normalized to have unit
variance, following Xiao et al. (2020)"): by default each input is rescaled onto the sphere
``||x||^2 = d`` (unit mean square per coordinate), so every input has the same NNGP variance and
the deep-kernel structure of the paper's Lemma 4 applies. Labels are computed from the raw
inputs, before normalisation. ``"standardize"`` is offered as an alternative (coordinate-wise
z-scoring with the training inputs' mean and standard deviation).

Labels stay raw (``y = nu ||x - mu||^2``: mean about 31, standard deviation about 15), so
differences of predictions are in the paper's label units. :func:`label_std` gives the scale
that puts them in units of one label standard deviation, and :func:`rescale_labels` the same
problem with rescaled (and optionally centred) labels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Normalization = Literal["sphere", "standardize"]
from bench.theory.options import NORMALIZATIONS  # noqa: E402  (defined without torch)


@dataclass(frozen=True)
class ProblemConfig:
    """Sizes and task distribution of the Sec. 5.1 problem (defaults are the paper's)."""

    dim: int = 10
    n_train_tasks: int = 20
    n_train_points: int = 10
    n_test_tasks: int = 20
    n_support: int = 5
    n_query: int = 10
    nu_low: float = 1.3
    nu_high: float = 1.6
    normalization: Normalization = "sphere"

    def __post_init__(self) -> None:
        for name in ("dim", "n_train_tasks", "n_train_points", "n_test_tasks", "n_support",
                     "n_query"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.nu_low <= self.nu_high:
            raise ValueError(f"need 0 < nu_low <= nu_high, got {self.nu_low}, {self.nu_high}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"unknown normalization {self.normalization!r}; choose one of {NORMALIZATIONS}"
            )


@dataclass(frozen=True)
class TaskSet:
    """One seed's data. Training: ``x_train [N, n, d]``, ``y_train [N, n]``. Test tasks:
    support ``x_support [T, n', d]``, ``y_support [T, n']`` and query ``x_query [T, m, d]``,
    ``y_query [T, m]`` (the paper's X', Y' and X, Y)."""

    x_train: Tensor
    y_train: Tensor
    x_support: Tensor
    y_support: Tensor
    x_query: Tensor
    y_query: Tensor


def _sample_tasks(
    n_tasks: int, n_points: int, config: ProblemConfig, generator: torch.Generator,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor]:
    """Raw inputs ``[n_tasks, n_points, d]`` and labels ``[n_tasks, n_points]``."""
    mu = torch.randn(n_tasks, 1, config.dim, generator=generator, dtype=dtype)
    nu = config.nu_low + (config.nu_high - config.nu_low) * torch.rand(
        n_tasks, 1, 1, generator=generator, dtype=dtype
    )
    noise = torch.randn(n_tasks, n_points, config.dim, generator=generator, dtype=dtype)
    x = mu + nu * noise
    y = nu[..., 0] * ((x - mu) ** 2).sum(-1)
    return x, y


def normalize_inputs(x: Tensor, reference: Tensor, method: Normalization) -> Tensor:
    """Normalise inputs ``[..., d]`` to unit variance; ``reference`` supplies z-score statistics."""
    dim = x.shape[-1]
    if method == "sphere":
        return x * (dim**0.5) / x.norm(dim=-1, keepdim=True)
    if method == "standardize":
        flat = reference.reshape(-1, dim)
        return (x - flat.mean(0)) / flat.std(0)
    raise ValueError(f"unknown normalization {method!r}; choose one of {NORMALIZATIONS}")


def make_tasks(
    seed: int, config: ProblemConfig = ProblemConfig(), dtype: torch.dtype = torch.float64
) -> TaskSet:
    """Draw the training and test tasks of one seed (deterministic in ``seed``)."""
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train = _sample_tasks(
        config.n_train_tasks, config.n_train_points, config, generator, dtype
    )
    x_test, y_test = _sample_tasks(
        config.n_test_tasks, config.n_support + config.n_query, config, generator, dtype
    )
    norm = config.normalization
    x_train_n = normalize_inputs(x_train, x_train, norm)
    x_test_n = normalize_inputs(x_test, x_train, norm)
    split = config.n_support
    return TaskSet(
        x_train=x_train_n,
        y_train=y_train,
        x_support=x_test_n[:, :split],
        y_support=y_test[:, :split],
        x_query=x_test_n[:, split:],
        y_query=y_test[:, split:],
    )


def label_std(tasks: TaskSet) -> float:
    """Population standard deviation (``ddof=0``) of all ``N n`` training labels of one seed.

    One scale per seed, fitted on the training labels and applied to every label of that seed
    (training, support and query), as a ``StandardScaler`` fitted on the training labels would.
    The predictors of Lemma 1 are linear in the labels, so dividing all labels by this scale
    divides every prediction, and every ``||F_ANIL - F_MTL||``, by it exactly.
    """
    return float(tasks.y_train.std(unbiased=False))


def rescale_labels(tasks: TaskSet, scale: float, shift: float = 0.0) -> TaskSet:
    """The same tasks with every label replaced by ``(y - shift) / scale``; inputs unchanged."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return TaskSet(
        x_train=tasks.x_train,
        y_train=(tasks.y_train - shift) / scale,
        x_support=tasks.x_support,
        y_support=(tasks.y_support - shift) / scale,
        x_query=tasks.x_query,
        y_query=(tasks.y_query - shift) / scale,
    )


def standardize_labels(tasks: TaskSet) -> TaskSet:
    """Labels z-scored with the training labels' mean and :func:`label_std` (centred)."""
    return rescale_labels(tasks, label_std(tasks), float(tasks.y_train.mean()))
