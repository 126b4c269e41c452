"""``--precision bf16`` works for every method: a whole smoke run (training, validation, both
test protocols) under bf16 autocast on the CPU, and one training step at the shape of the
method's paper budget (ResNet-12 widths 64-160-320-640 or its Conv4, 15-shot training
episodes where the paper trains on them, MetaOptNet's ``double_precision`` as the paper budget
sets it: off, a float32 QP).

The paper shapes are mini-ImageNet's except the image side: 16 px instead of 84 (one task per
step). At 84 px one MetaOptNet step takes about 90 s on a CPU (measured here, bf16, one task);
every method passed there too (docs/performance.md, "bf16"). At 16 px the flattened features
are 640-d instead of 16,000-d; the QP (75 support images x 5 ways = 375 dual variables), the
ridge system and every channel width are the paper's."""
import math
from dataclasses import replace

import pytest
import torch

from bench.common.config import RunConfig, resolve_budget
from bench.run.train_and_test import run_one
from bench.cost.speed import synthetic_dataset
from bench.run.training import build_training, train_step
from datasets import DATASETS, load_dataset
from methods import METHODS

PAPER_DATASET = "mini"
SIZE = 16


@pytest.fixture(scope="module")
def glyphs():
    return load_dataset("glyphs")


@pytest.mark.parametrize("method", METHODS.names())
def test_a_smoke_run_under_bf16_trains_validates_and_tests(method, glyphs):
    budget = replace(resolve_budget("smoke", method, "glyphs", 1), epochs=1, steps_per_epoch=2,
                     val_episodes=1)
    config = RunConfig(method, "glyphs", 5, 1, 0, budget, episodes=2, precision="bf16")
    result = run_one(config, glyphs, torch.device("cpu"), progress=False)
    assert result["status"] == "ok" and result["config"]["precision"] == "bf16"
    for protocol in ("unified", "native"):
        accuracies = result["test"][protocol]["accuracies"]
        assert len(accuracies) == 2 and all(0.0 <= a <= 100.0 for a in accuracies), protocol


@pytest.mark.parametrize("method", METHODS.names())
def test_one_paper_shape_training_step_under_bf16(method):
    info = DATASETS.get(PAPER_DATASET)
    budget = replace(resolve_budget("paper", method, info.name, 5), meta_batch=1,
                     augmentation=None)
    data = synthetic_dataset(info.name, SIZE, info.channels, info.train_classes,
                             max(budget.train_shots + budget.train_queries, 2))
    config = RunConfig(method, info.name, 5, 5, 0, budget, precision="bf16")
    training = build_training(config, data, torch.device("cpu"),
                              info=replace(info, image_size=SIZE))
    loss, images = train_step(training.method, training.optimizer, training.loader,
                              training.sampler, 1, "bf16")
    assert math.isfinite(loss) and images > 0
    for name, parameter in training.method.named_parameters():
        assert torch.isfinite(parameter).all(), name
    if method == "metaoptnet":  # the paper's 15-shot training episodes, a float32 QP
        assert budget.train_shots == 15 and budget.hparams["double_precision"] is False
