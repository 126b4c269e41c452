"""Test-time evaluation: the same episodes for every method, two adaptation protocols.

- ``unified`` (Wang et al. 2021, Sec. 3.4 and App. C.2): features under ``no_grad`` in eval mode,
  L2-normalised, a fresh multinomial logistic-regression head (C = 3.0) fitted on each episode's
  support set, accuracy on its queries. Identical for every method.
- ``native``: the method's own adaptation (MAML's inner loop, ridge, SVM, prototypes). For a
  method without one (MTL), native is the unified protocol. A method that declares
  ``native_reuses_features`` (its adaptation sees images only through eval-mode features) has
  each distinct test image embedded once, as the unified protocol does, and its heads fitted
  per episode on the gathered features, in the same chunks of episodes as the per-episode
  path (:func:`evaluate_native`); the numbers are those of the per-episode path to float
  tolerance (tests/unit/test_native_reuse.py).

Accuracies are per episode, in percent.
"""
from __future__ import annotations

from typing import Callable

import torch
from tqdm.auto import tqdm

from bench.run import solver as solvers
from bench.common.precision import autocast
from datasets.episodes import EpisodeIndices, EpisodeLoader
from methods.base import FewShotMethod

SOLVERS = ("sklearn", "batched")


@torch.no_grad()
def image_features(method: FewShotMethod, loader: EpisodeLoader, indices: torch.Tensor,
                   batch_size: int = 256, precision: str = "fp32",
                   progress: bool = False) -> torch.Tensor:
    """``method.features`` of the split images ``indices`` (1-D), eval mode, float32 ``[U, D]``."""
    was_training = method.training
    method.eval()
    chunks = []
    try:
        for start in tqdm(range(0, len(indices), batch_size), desc="features", leave=False,
                          disable=not progress):
            images = loader.gather(indices[start:start + batch_size])
            with autocast(loader.device, precision):
                chunks.append(method.features(images).float())
    finally:
        method.train(was_training)
    return torch.cat(chunks)


def distinct_image_features(method: FewShotMethod, loader: EpisodeLoader,
                            episodes: EpisodeIndices, precision: str = "fp32",
                            progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``[U, D]`` of the U distinct images of ``episodes`` (eval mode is
    deterministic, so each is embedded once) and, per episode, the row of each of its images
    (``[T, S + Q]`` on the features' device)."""
    unique, inverse = torch.unique(episodes.images, return_inverse=True)
    feats = image_features(method, loader, unique, precision=precision, progress=progress)
    return feats, inverse.to(feats.device)


def episode_features(method: FewShotMethod, loader: EpisodeLoader, episodes: EpisodeIndices,
                     precision: str = "fp32", progress: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised support ``[T, W*K, D]`` and query ``[T, W*Q, D]`` features.

    Each distinct image is embedded once (eval mode is deterministic), then gathered.
    """
    feats, rows = distinct_image_features(method, loader, episodes, precision, progress)
    both = solvers.l2_normalize(feats)[rows]
    n_support = episodes.support.shape[1]
    return both[:, :n_support], both[:, n_support:]


def accuracy_percent(predictions: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Per-episode accuracy in percent from ``[T, Q]`` predictions and labels."""
    return (predictions.cpu() == labels.cpu()).double().mean(1).mul(100.0).tolist()


def evaluate_unified(method: FewShotMethod, loader: EpisodeLoader, episodes: EpisodeIndices,
                     solver: str = "sklearn", C: float = 3.0, precision: str = "fp32",
                     progress: bool = False) -> list[float]:
    """Per-episode accuracies of the unified protocol."""
    support, query = episode_features(method, loader, episodes, precision, progress)
    labels = episodes.support_labels
    if solver == "sklearn":
        predict: Callable = solvers.predict_sklearn
    elif solver == "batched":
        predict = solvers.predict_batched
    else:
        raise ValueError(f"unknown solver {solver!r}; valid: {', '.join(SOLVERS)}")
    predictions = predict(support, labels.to(support.device), query, C=C)
    return accuracy_percent(predictions, episodes.query_labels)


def evaluate_native(method: FewShotMethod, loader: EpisodeLoader, episodes: EpisodeIndices,
                    tasks_per_batch: int = 16, precision: str = "fp32",
                    progress: bool = False, selection: bool = False,
                    reuse_features: bool | None = None) -> list[float]:
    """Per-episode accuracies of the method's own adaptation (eval mode; the method's
    ``adapt`` decides how its inner loop treats batch norm), ``tasks_per_batch`` episodes
    adapted at once. ``selection``: the adaptation that validation-based selection uses
    (``adapt_for_selection``).

    ``reuse_features`` (default: what the method declares, ``native_reuses_features``): embed
    each distinct image once and adapt every chunk of episodes from its gathered features
    (:meth:`~methods.base.FewShotMethod.adapt_features`) instead of loading and embedding its
    images."""
    if reuse_features is None:
        reuse_features = type(method).native_reuses_features
    was_training = method.training
    method.eval()
    accuracies: list[float] = []
    try:
        if reuse_features:
            feats, rows = distinct_image_features(method, loader, episodes, precision,
                                                  progress)
            n_support = episodes.support.shape[1]
        starts = range(0, episodes.n_tasks, tasks_per_batch)
        for start in tqdm(starts, desc="native", leave=False, disable=not progress):
            chunk = episodes.slice(start, start + tasks_per_batch)
            with torch.no_grad(), autocast(loader.device, precision):
                if reuse_features:
                    both = feats[rows[start:start + tasks_per_batch]]
                    labels = chunk.support_labels.to(feats.device)
                    predictor = method.adapt_features(both[:, :n_support], labels, selection)
                    logits = predictor(both[:, n_support:])
                    query_labels = chunk.query_labels
                else:
                    batch = loader.load(chunk)
                    adapt = method.adapt_for_selection if selection else method.adapt
                    predictor = adapt(batch.support, batch.support_labels)
                    logits = predictor(batch.query)
                    query_labels = batch.query_labels
            accuracies += accuracy_percent(logits.argmax(-1), query_labels)
    finally:
        method.train(was_training)
    return accuracies
