"""Plain mini-batches of training images, for methods that train on images rather than
episodes (supervised pre-training, Tian et al. 2020).

:class:`ImageBatchSampler` walks through the training split in a freshly shuffled order per
pass, like ``DataLoader(shuffle=True, drop_last=True)`` (RFS's ``train_supervised.py``): a
batch never spans two passes, and the images left over at the end of a pass, fewer than a
batch, are skipped. It owns a seeded NumPy generator and never touches torch's global one, so
its stream depends only on its seed, and its :meth:`~ImageBatchSampler.state_dict` continues
the stream exactly after a resume.

A batch of ``n`` images has the index form of ``n`` one-image tasks
(:class:`datasets.episodes.EpisodeIndices` with ``ways = shots = 1`` and no queries): image
``t`` is task ``t``'s only support image, its label is 0 and ``classes[t, 0]`` is its class in
the training split. So the episode loader, the training step, data-parallel sharding (by
task, i.e. by image) and the images-seen count work on it unchanged, and a method reads an
image's training class as ``batch.classes.gather(1, batch.labels)``.
"""
from __future__ import annotations

import numpy as np
import torch

from datasets.base import ClassSplit
from datasets.episodes import EpisodeIndices


class ImageBatchSampler:
    """Draws batches of distinct training images, one shuffled pass after another."""

    def __init__(self, split: ClassSplit, seed: int) -> None:
        if len(split.labels) == 0:
            raise ValueError(f"split {split.name!r} holds no images")
        self.split = split
        self.seed = seed
        self._labels = split.labels.numpy().astype(np.int64)
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self._order = np.empty(0, dtype=np.int64)  # the current pass's order
        self._position = 0  # images of it already drawn (or skipped)

    @property
    def n_images(self) -> int:
        return int(len(self._labels))

    def sample(self, n_images: int) -> EpisodeIndices:
        """The next ``n_images`` images of the current pass, as one-image tasks; a new
        shuffled pass starts when fewer than ``n_images`` are left in this one."""
        if not 1 <= n_images <= self.n_images:
            raise ValueError(f"a batch of {n_images} images cannot be drawn from split "
                             f"{self.split.name!r}, which holds {self.n_images} images")
        if self._position + n_images > len(self._order):
            self._order = self.rng.permutation(self.n_images)
            self._position = 0
        picks = self._order[self._position:self._position + n_images]
        self._position += n_images
        support = torch.from_numpy(picks.copy()).unsqueeze(1)
        classes = torch.from_numpy(self._labels[picks]).unsqueeze(1)
        return EpisodeIndices(support, support.new_empty((n_images, 0)), classes, ways=1,
                              shots=1, queries=0)

    def state_dict(self) -> dict:
        return {"bit_generator": self.rng.bit_generator.state,
                "order": torch.from_numpy(self._order.copy()), "position": self._position}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["bit_generator"]
        self._order = state["order"].numpy().astype(np.int64)
        self._position = int(state["position"])
