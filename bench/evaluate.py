"""Test-time evaluation: the same episodes for every method, two adaptation protocols.

- ``unified`` (Wang et al. 2021, Sec. 3.4 and App. C.2): features under ``no_grad`` in eval mode,
  L2-normalised, a fresh multinomial logistic-regression head (C = 3.0) fitted on each episode's
  support set, accuracy on its queries. Identical for every method.
- ``native``: the method's own adaptation (MAML's inner loop, ridge, SVM, prototypes). For a
  method without one (MTL), native is the unified protocol.

Accuracies are per episode, in percent.
"""
from __future__ import annotations

from typing import Callable

import torch
from tqdm.auto import tqdm

from bench import solver as solvers
from bench.precision import autocast
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


def episode_features(method: FewShotMethod, loader: EpisodeLoader, episodes: EpisodeIndices,
                     precision: str = "fp32", progress: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised support ``[T, W*K, D]`` and query ``[T, W*Q, D]`` features.

    Each distinct image is embedded once (eval mode is deterministic), then gathered.
    """
    unique, inverse = torch.unique(episodes.images, return_inverse=True)
    feats = solvers.l2_normalize(image_features(method, loader, unique, precision=precision,
                                                progress=progress))
    both = feats[inverse.to(feats.device)]
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
                    progress: bool = False, selection: bool = False) -> list[float]:
    """Per-episode accuracies of the method's own adaptation (eval mode; the method's
    ``adapt`` decides how its inner loop treats batch norm). ``selection``: the adaptation
    that validation-based selection uses (``adapt_for_selection``)."""
    was_training = method.training
    method.eval()
    accuracies: list[float] = []
    try:
        starts = range(0, episodes.n_tasks, tasks_per_batch)
        for start in tqdm(starts, desc="native", leave=False, disable=not progress):
            chunk = episodes.slice(start, start + tasks_per_batch)
            batch = loader.load(chunk)
            with torch.no_grad(), autocast(loader.device, precision):
                adapt = method.adapt_for_selection if selection else method.adapt
                predictor = adapt(batch.support, batch.support_labels)
                logits = predictor(batch.query)
            accuracies += accuracy_percent(logits.argmax(-1), batch.query_labels)
    finally:
        method.train(was_training)
    return accuracies
