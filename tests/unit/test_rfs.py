"""RFS supervised pre-training: the image-batch sampler, the loss over all training classes,
its budgets (RFS's train_supervised.py), and how a run builds its training stream."""
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.common.config import RunConfig, resolve_budget
from bench.run.training import (EpochSchedule, build_optimizer, build_training, images_per_task,
                            stream_seed)
from datasets import DATASETS
from datasets.augment import Normalizer
from datasets.base import ClassSplit, FewShotDataset
from datasets.batches import ImageBatchSampler
from datasets.episodes import EpisodeLoader, EpisodeSampler
from methods import METHODS
from methods.backbones import build_backbone
from methods.rfs import RFS


def split(n_classes: int = 5, per_class: int = 7, seed: int = 0, name: str = "train"
          ) -> ClassSplit:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n_classes * per_class, 1, 28, 28), dtype=torch.uint8,
                           generator=g)
    labels = torch.randperm(n_classes * per_class, generator=g) % n_classes  # shuffled order
    return ClassSplit(name, images, labels, tuple(f"{name}{c}" for c in range(n_classes)))


def tiny_dataset() -> FewShotDataset:
    return FewShotDataset("tiny", split(8, 8, 0, "train"), split(5, 8, 1, "val"),
                          split(5, 8, 2, "test"), mean=(0.5,), std=(0.25,))


# ------------------------------------------------------------------ the image-batch sampler

def test_each_pass_draws_distinct_images_and_drops_the_incomplete_last_batch():
    data = split()  # 35 images
    sampler = ImageBatchSampler(data, seed=3)
    passes = [[sampler.sample(8) for _ in range(4)] for _ in range(3)]  # 4 x 8 = 32 of 35
    for batches in passes:
        drawn = torch.cat([b.support.flatten() for b in batches]).tolist()
        assert len(set(drawn)) == 32  # no image twice within a pass
    firsts = [torch.cat([b.support.flatten() for b in batches]) for batches in passes]
    assert not torch.equal(firsts[0], firsts[1])  # every pass reshuffled
    batch = passes[0][0]
    assert (batch.ways, batch.shots, batch.queries) == (1, 1, 0)
    assert batch.support.shape == (8, 1) and batch.query.shape == (8, 0)
    torch.testing.assert_close(batch.classes[:, 0], data.labels[batch.support[:, 0]])
    assert torch.equal(batch.support_labels, torch.zeros(8, 1, dtype=torch.long))


def test_the_stream_depends_on_the_seed_alone_and_resumes_from_its_state():
    data = split()
    a, b = ImageBatchSampler(data, seed=3), ImageBatchSampler(data, seed=3)
    for _ in range(5):
        a.sample(6)
    state = a.state_dict()
    rest = [a.sample(6).support for _ in range(7)]  # crosses a pass boundary
    for _ in range(5):
        b.sample(6)
    c = ImageBatchSampler(data, seed=99)
    c.load_state_dict(state)
    assert all(torch.equal(x, y.support) for x, y in zip(rest, (c.sample(6) for _ in rest)))
    assert not torch.equal(ImageBatchSampler(data, 4).sample(6).support,
                           ImageBatchSampler(data, 3).sample(6).support)


def test_a_batch_larger_than_the_split_is_refused():
    with pytest.raises(ValueError, match="batch of 36 images .* holds 35 images"):
        ImageBatchSampler(split(), seed=0).sample(36)


# ------------------------------------------------------------------ the method

def make_rfs(n_classes: int = 5) -> RFS:
    torch.manual_seed(0)
    backbone = build_backbone("conv4-32", in_channels=1, image_size=28, feature_mode="avg")
    return RFS(backbone, n_train_classes=n_classes, ways=5).double()


def test_the_loss_is_the_cross_entropy_of_every_image_among_all_training_classes():
    data = split()
    method = make_rfs().train()
    loader = EpisodeLoader(data, Normalizer((0.5,), (0.25,)), "cpu")
    indices = ImageBatchSampler(data, seed=1).sample(10)
    batch = loader.load(indices)
    batch = replace(batch, support=batch.support.double())
    images = loader.gather(indices.support[:, 0]).double()
    reference = F.cross_entropy(method.classifier(method.backbone(images)),
                                data.labels[indices.support[:, 0]])
    torch.testing.assert_close(method.loss(batch), reference, rtol=1e-12, atol=0)
    # an episode batch: label j of task t is training class classes[t, j]
    episodes = EpisodeSampler(data, 3, 2, 1, seed=2).sample(2)
    episode = loader.load(episodes)
    episode = replace(episode, support=episode.support.double(), query=episode.query.double())
    flat = episodes.images.flatten()
    reference = F.cross_entropy(method.classifier(method.backbone(loader.gather(flat).double())),
                                data.labels[flat])
    torch.testing.assert_close(method.loss(episode), reference, rtol=1e-12, atol=0)
    assert not method.has_native_adaptation  # native = unified, RFS's own protocol


def test_a_run_of_rfs_draws_image_batches_and_every_other_method_episodes():
    dataset = tiny_dataset()
    for name in ("rfs", "mtl"):
        budget = resolve_budget("smoke", name, "glyphs", 1)
        config = RunConfig(name, "tiny", 5, 1, 0, budget)
        training = build_training(config, dataset, torch.device("cpu"))
        expected = ImageBatchSampler if name == "rfs" else EpisodeSampler
        assert type(training.sampler) is expected
        assert training.sampler.seed == stream_seed(0, "train")
    budget = replace(resolve_budget("smoke", "rfs", "glyphs", 1), train_shots=5)
    with pytest.raises(ValueError, match="train_shots=1 and train_queries=0"):
        build_training(RunConfig("rfs", "tiny", 5, 1, 0, budget), dataset,
                       torch.device("cpu"))


@pytest.mark.parametrize("name", ["smoke", "quick"])
def test_cpu_budgets_give_rfs_as_many_images_per_step_as_an_episodic_step(name):
    rfs = resolve_budget(name, "rfs", "glyphs", 5)
    mtl = resolve_budget(name, "mtl", "glyphs", 5)
    assert rfs.meta_batch * images_per_task(RFS, 5, rfs) == \
        mtl.meta_batch * images_per_task(METHODS.get("mtl"), 5, mtl)
    assert replace(rfs, meta_batch=mtl.meta_batch, train_shots=mtl.train_shots,
                   train_queries=mtl.train_queries, hparams=mtl.hparams) == mtl


def rfs_learning_rate(epoch: int) -> float:
    """[RFS] util.adjust_learning_rate for 1-based ``epoch`` with the train_supervised.py
    defaults (0.05, decay 0.1 at epochs '60,80')."""
    steps = int(np.sum(epoch > np.asarray([60, 80])))
    return 0.05 * 0.1 ** steps


@pytest.mark.parametrize("dataset, steps", [("mini", 600), ("tiered", 7010), ("cifar-fs", 600),
                                            ("fc100", 562), ("glyphs", 600)])
def test_the_paper_budget_is_rfs_train_supervised(dataset, steps):
    budget = resolve_budget("paper", "rfs", dataset, 5)
    assert (budget.backbone, budget.feature_mode) == ("resnet12", "avg")
    assert (budget.optimizer, budget.lr, budget.momentum, budget.nesterov,
            budget.weight_decay) == ("sgd", 0.05, 0.9, False, 5e-4)
    assert (budget.epochs, budget.meta_batch, budget.steps_per_epoch) == (100, 64, steps)
    assert (budget.train_shots, budget.train_queries, budget.early_stop_patience) == (1, 0, None)
    assert RFS.training_augmentation(DATASETS.get(dataset), budget) == \
        DATASETS.get(dataset).train_augmentation
    optimizer = build_optimizer(budget, [nn.Parameter(torch.zeros(1))])
    schedule = EpochSchedule(budget, optimizer)
    for epoch in range(1, budget.epochs + 1):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(rfs_learning_rate(epoch),
                                                                rel=1e-12)
        optimizer.step()
        schedule.step(0.0)
