"""Episode sampling (N-way, K-shot, Q-query), seeded independently of the model.

The sampler owns a NumPy ``Generator``; it never touches torch's global RNG, so two methods
with the same sampler seed see byte-identical episodes (paired comparisons). Support and query
images of an episode are distinct images; labels are ``0..ways-1`` in the order the classes
were drawn.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from datasets.base import ClassSplit


@dataclass(frozen=True)
class EpisodeIndices:
    """Index form of ``n_tasks`` episodes (everything int64, on the CPU).

    ``support``: ``[T, ways*shots]`` image indices into the split, class-major
    (the first ``shots`` belong to label 0, ...); ``query``: ``[T, ways*queries]`` likewise;
    ``classes``: ``[T, ways]`` split-level class of each episode label.
    """

    support: torch.Tensor
    query: torch.Tensor
    classes: torch.Tensor
    ways: int
    shots: int
    queries: int

    @property
    def n_tasks(self) -> int:
        return int(self.classes.shape[0])

    @property
    def images(self) -> torch.Tensor:
        """``[T, ways*(shots+queries)]``: each episode's support indices, then its query ones."""
        return torch.cat([self.support, self.query], dim=1)

    def slice(self, start: int, stop: int) -> "EpisodeIndices":
        """Episodes ``start`` to ``stop - 1`` (a view; the episodes themselves unchanged)."""
        return EpisodeIndices(self.support[start:stop], self.query[start:stop],
                              self.classes[start:stop], self.ways, self.shots, self.queries)

    @property
    def support_labels(self) -> torch.Tensor:
        return episode_labels(self.n_tasks, self.ways, self.shots)

    @property
    def query_labels(self) -> torch.Tensor:
        return episode_labels(self.n_tasks, self.ways, self.queries)

    def digest(self) -> str:
        """sha256 of the episodes' indices: equal digests mean identical episodes."""
        h = hashlib.sha256()
        h.update(f"{self.ways},{self.shots},{self.queries};".encode())
        for t in (self.support, self.query, self.classes):
            h.update(t.numpy().astype("<i8").tobytes())
        return h.hexdigest()


def episode_labels(n_tasks: int, ways: int, per_class: int) -> torch.Tensor:
    """``[n_tasks, ways*per_class]`` labels 0,0,..,1,1,.. (class-major)."""
    return torch.arange(ways).repeat_interleave(per_class).expand(n_tasks, -1).contiguous()


class EpisodeSampler:
    """Draws episodes from one split with its own seeded NumPy generator."""

    def __init__(self, split: ClassSplit, ways: int, shots: int, queries: int, seed: int) -> None:
        if ways < 2:
            raise ValueError(f"ways must be at least 2, got {ways}")
        if shots < 1 or queries < 0:
            raise ValueError(f"need shots >= 1 and queries >= 0, got {shots} and {queries}")
        if ways > split.n_classes:
            raise ValueError(
                f"{ways}-way episodes need {ways} classes but split {split.name!r} has "
                f"{split.n_classes}"
            )
        per_class = shots + queries
        eligible = [c for c, n in enumerate(split.class_sizes()) if n >= per_class]
        if len(eligible) < ways:
            raise ValueError(
                f"split {split.name!r}: only {len(eligible)} classes have at least {per_class} "
                f"images (shots {shots} + queries {queries}); {ways} are needed"
            )
        self.split = split
        self.ways, self.shots, self.queries = ways, shots, queries
        self.seed = seed
        self._eligible = np.asarray(eligible)
        self._members = [split.indices_of_class(c).numpy() for c in range(split.n_classes)]
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def sample(self, n_tasks: int) -> EpisodeIndices:
        """Draw ``n_tasks`` episodes; consecutive calls continue the same stream."""
        w, k, q = self.ways, self.shots, self.queries
        support = np.empty((n_tasks, w * k), dtype=np.int64)
        query = np.empty((n_tasks, w * q), dtype=np.int64)
        classes = np.empty((n_tasks, w), dtype=np.int64)
        for t in range(n_tasks):
            chosen = self.rng.choice(self._eligible, size=w, replace=False)
            classes[t] = chosen
            for j, c in enumerate(chosen):
                members = self._members[c]
                picks = members[self.rng.choice(len(members), size=k + q, replace=False)]
                support[t, j * k:(j + 1) * k] = picks[:k]
                query[t, j * q:(j + 1) * q] = picks[k:]
        return EpisodeIndices(torch.from_numpy(support), torch.from_numpy(query),
                              torch.from_numpy(classes), w, k, q)

    def batches(self, n_tasks: int, batch_size: int) -> Iterator[EpisodeIndices]:
        """``n_tasks`` episodes in chunks of at most ``batch_size``."""
        done = 0
        while done < n_tasks:
            size = min(batch_size, n_tasks - done)
            yield self.sample(size)
            done += size

    def state_dict(self) -> dict:
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["bit_generator"]


@dataclass
class TaskBatch:
    """A batch of ``T`` episodes as float images on the device.

    ``support``: ``[T, ways*shots, C, H, W]``, ``support_labels``: ``[T, ways*shots]``;
    ``query``/``query_labels`` likewise with ``queries``; ``classes``: ``[T, ways]`` split-level
    class ids of labels ``0..ways-1`` (MTL selects its head rows with them).
    """

    support: torch.Tensor
    support_labels: torch.Tensor
    query: torch.Tensor
    query_labels: torch.Tensor
    classes: torch.Tensor

    @property
    def n_tasks(self) -> int:
        return int(self.support.shape[0])

    @property
    def ways(self) -> int:
        return int(self.classes.shape[1])

    @property
    def n_images(self) -> int:
        return int(self.support.shape[0] * (self.support.shape[1] + self.query.shape[1]))

    @property
    def images(self) -> torch.Tensor:
        """``[T, S+Q, C, H, W]``: each task's support images, then its query images."""
        return torch.cat([self.support, self.query], dim=1)

    @property
    def labels(self) -> torch.Tensor:
        """``[T, S+Q]``: the labels of :attr:`images`."""
        return torch.cat([self.support_labels, self.query_labels], dim=1)

    def slice(self, start: int, stop: int) -> "TaskBatch":
        """Tasks ``start`` to ``stop - 1`` (views of the same tensors)."""
        part = slice(start, stop)
        return TaskBatch(self.support[part], self.support_labels[part], self.query[part],
                         self.query_labels[part], self.classes[part])


class EpisodeLoader:
    """Holds a split's uint8 images on ``device`` and turns :class:`EpisodeIndices` into
    :class:`TaskBatch` by gathering on the device, then applying ``transform`` (float, augment,
    normalise) to all images of the batch at once."""

    #: Splits up to this many uint8 bytes live on the device (mini-ImageNet's train split is
    #: 0.8 GB); larger ones (tiered-ImageNet, memory-mapped) are gathered on the host.
    RESIDENT_LIMIT_BYTES = 4 * 1024 ** 3

    def __init__(self, split: ClassSplit, transform, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.resident = (self.device.type == "cpu"
                         or split.images.numel() <= self.RESIDENT_LIMIT_BYTES)
        self.images = split.images.to(self.device) if self.resident else split.images
        self.transform = transform

    def gather(self, indices: torch.Tensor) -> torch.Tensor:
        """Float images for an index tensor of any shape ``S``: ``[*S, C, H, W]``."""
        flat = indices.reshape(-1)
        if self.resident:
            batch = self.images.index_select(0, flat.to(self.device))
        else:
            batch = self.images.index_select(0, flat.cpu()).to(self.device, non_blocking=True)
        out = self.transform(batch)
        return out.reshape(*indices.shape, *out.shape[1:])

    def load(self, episodes: EpisodeIndices) -> TaskBatch:
        images = self.gather(episodes.images)
        n_support = episodes.support.shape[1]
        return TaskBatch(
            support=images[:, :n_support],
            support_labels=episodes.support_labels.to(self.device),
            query=images[:, n_support:],
            query_labels=episodes.query_labels.to(self.device),
            classes=episodes.classes.to(self.device),
        )
