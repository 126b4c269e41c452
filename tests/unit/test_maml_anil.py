"""MAML and ANIL: meta-gradients against independent references, BN handling, adaptation.

References: ``higher`` (Grefenstette et al. 2019) unrolls the same inner loop with its own
differentiable SGD; central finite differences in float64 check the exact (second-order)
meta-gradient without any autograd at all.
"""
from __future__ import annotations

import copy

import higher
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from datasets.episodes import TaskBatch, episode_labels
from methods import METHODS
from methods.anil import ANIL
from methods.backbones import Backbone, build_backbone
from methods.maml import MAML

WAYS = 3


class TinyConv(Backbone):
    """conv 3x3 -> BatchNorm2d -> tanh -> 2x2 average pool on 1x4x4 images (smooth, so finite
    differences are exact up to O(eps^2)); out_dim = 4 * channels."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, padding=1, bias=False)  # BN cancels a bias
        self.bn = nn.BatchNorm2d(channels)
        self.out_dim = 4 * channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(torch.tanh(self.bn(self.conv(x))), 2).flatten(1)


def make_batch(n_tasks: int = 2, shots: int = 2, queries: int = 3, ways: int = WAYS,
               separable: bool = False, seed: int = 0, dtype=torch.float64,
               size: int = 4) -> TaskBatch:
    """Random 1-channel episodes; ``separable``: each class is a fixed prototype plus noise."""
    g = torch.Generator().manual_seed(seed)

    def images(per_class: int) -> torch.Tensor:
        x = torch.randn(n_tasks, ways * per_class, 1, size, size, generator=g, dtype=dtype)
        if separable:
            x = 0.3 * x + 2.0 * prototypes.repeat_interleave(per_class, dim=1)
        return x

    prototypes = torch.randn(n_tasks, ways, 1, size, size, generator=g, dtype=dtype)
    return TaskBatch(images(shots), episode_labels(n_tasks, ways, shots), images(queries),
                     episode_labels(n_tasks, ways, queries),
                     torch.arange(ways).expand(n_tasks, -1))


def make_method(cls, seed: int = 0, **hparams):
    torch.manual_seed(seed)
    return cls(TinyConv(), n_train_classes=10, ways=WAYS, hparams=hparams).double()


def meta_gradient(method, batch: TaskBatch) -> list[torch.Tensor]:
    params = [p for p in method.parameters() if p.requires_grad]
    return list(torch.autograd.grad(method.loss(batch), params))


# ---------------------------------------------------------------- references (test-only)

def higher_maml_gradient(method: MAML, batch: TaskBatch, first_order: bool) -> list[torch.Tensor]:
    """MAML's meta-gradient unrolled by ``higher`` on the same parameters, one task at a time.

    First order: ``track_higher_grads=False`` cuts the graph between steps, so the meta-gradient
    is the query-loss gradient w.r.t. the adapted (fast) weights, summed over tasks.
    """
    net = nn.Sequential(method.backbone, method.head).train()  # shares the method's parameters
    params = list(net.parameters())
    lr, steps = method.hparams["inner_lr"], method.hparams["train_steps"]
    total, fo_grads = 0.0, [torch.zeros_like(p) for p in params]
    for t in range(batch.n_tasks):
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        with higher.innerloop_ctx(net, opt, copy_initial_weights=False,
                                  track_higher_grads=not first_order) as (fnet, diffopt):
            for _ in range(steps):
                diffopt.step(F.cross_entropy(fnet(batch.support[t]), batch.support_labels[t]))
            query_loss = F.cross_entropy(fnet(batch.query[t]), batch.query_labels[t])
            if first_order:
                grads = torch.autograd.grad(query_loss, list(fnet.parameters()))
                fo_grads = [a + b / batch.n_tasks for a, b in zip(fo_grads, grads)]
            else:
                total = total + query_loss / batch.n_tasks
    return fo_grads if first_order else list(torch.autograd.grad(total, params))


def higher_anil_gradient(method: ANIL, batch: TaskBatch, first_order: bool
                         ) -> list[torch.Tensor]:
    """ANIL's meta-gradient with ``higher`` adapting ``method.head`` task by task on features of
    one backbone forward (as ANIL computes them). Returns [backbone grads..., head grads...]."""
    n_support = batch.support.shape[1]
    images = torch.cat([batch.support, batch.query], 1)
    features = method.backbone(images.flatten(0, 1)).view(batch.n_tasks, images.shape[1], -1)
    lr, steps = method.hparams["inner_lr"], method.hparams["train_steps"]
    backbone_params = list(method.backbone.parameters())
    head_params = list(method.head.parameters())
    total, fast = 0.0, []
    for t in range(batch.n_tasks):
        support, query = features[t, :n_support], features[t, n_support:]
        opt = torch.optim.SGD(method.head.parameters(), lr=lr)
        with higher.innerloop_ctx(method.head, opt, copy_initial_weights=False,
                                  track_higher_grads=not first_order) as (fhead, diffopt):
            for _ in range(steps):
                diffopt.step(F.cross_entropy(fhead(support), batch.support_labels[t]))
            total = total + F.cross_entropy(fhead(query), batch.query_labels[t]) / batch.n_tasks
            fast.append(list(fhead.parameters()))
    if not first_order:
        return list(torch.autograd.grad(total, backbone_params + head_params))
    grads = torch.autograd.grad(total, backbone_params + [p for ps in fast for p in ps])
    n_bb, n_head = len(backbone_params), len(head_params)
    per_task = [grads[n_bb + i * n_head: n_bb + (i + 1) * n_head] for i in range(len(fast))]
    return list(grads[:n_bb]) + [sum(g[j] for g in per_task) for j in range(n_head)]


def assert_all_close(actual: list[torch.Tensor], expected: list[torch.Tensor],
                     rtol: float = 1e-5, atol: float = 1e-10) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=rtol, atol=atol)


# ---------------------------------------------------------------- registration and hparams

def test_registered_under_their_names():
    assert METHODS.get("maml") is MAML
    assert METHODS.get("anil") is ANIL


@pytest.mark.parametrize("cls", [MAML, ANIL])
@pytest.mark.parametrize("bad", [{"inner_lr": 0.0}, {"train_steps": 0}, {"test_steps": -1},
                                 {"train_steps": 2.5}, {"test_inner_lr": -0.1},
                                 {"first_order": "yes"}, {"inner_steps": 3}])
def test_bad_hyperparameters_are_rejected(cls, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        cls(TinyConv(), n_train_classes=10, ways=WAYS, hparams=bad)


def test_anil_rejects_non_bool_freeze():
    with pytest.raises(ValueError, match="freeze_head_init"):
        ANIL(TinyConv(), n_train_classes=10, ways=WAYS, hparams={"freeze_head_init": 1})


@pytest.mark.parametrize("cls", [MAML, ANIL])
def test_training_batch_without_queries_is_rejected(cls):
    with pytest.raises(ValueError, match="queries >= 1"):
        make_method(cls).loss(make_batch(queries=0))


# ---------------------------------------------------------------- meta-gradient vs higher

@pytest.mark.parametrize("first_order", [False, True])
def test_maml_meta_gradient_matches_higher(first_order):
    method = make_method(MAML, inner_lr=0.3, train_steps=3, first_order=first_order).train()
    batch = make_batch()
    ours = meta_gradient(method, batch)
    assert_all_close(ours, higher_maml_gradient(method, batch, first_order))


@pytest.mark.parametrize("first_order", [False, True])
def test_anil_meta_gradient_matches_higher(first_order):
    method = make_method(ANIL, inner_lr=0.5, train_steps=3, first_order=first_order).train()
    batch = make_batch()
    ours = meta_gradient(method, batch)
    assert_all_close(ours, higher_anil_gradient(method, batch, first_order))


@pytest.mark.parametrize("cls", [MAML, ANIL])
def test_first_order_differs_from_second_order(cls):
    """Guards the comparisons above against an order switch that does nothing."""
    batch = make_batch()
    grads = {fo: meta_gradient(make_method(cls, inner_lr=0.5, train_steps=3, first_order=fo),
                               batch) for fo in (False, True)}
    diff = max((a - b).abs().max().item() for a, b in zip(grads[False], grads[True]))
    assert diff > 1e-4


# ---------------------------------------------------------------- vs finite differences

def finite_difference(method, batch: TaskBatch, param: torch.Tensor, index: tuple[int, ...],
                      eps: float = 1e-6) -> float:
    values = []
    with torch.no_grad():
        original = param[index].item()
        for sign in (1.0, -1.0):
            param[index] = original + sign * eps
            values.append(method.loss(batch).item())
        param[index] = original
    return (values[0] - values[1]) / (2 * eps)


@pytest.mark.parametrize("cls,hparams", [
    (MAML, {"inner_lr": 0.3, "train_steps": 2}),
    (ANIL, {"inner_lr": 0.5, "train_steps": 3}),
    (ANIL, {"inner_lr": 0.5, "train_steps": 3, "freeze_head_init": True}),
], ids=["maml", "anil", "anil-frozen-head"])
def test_second_order_meta_gradient_matches_finite_differences(cls, hparams):
    method = make_method(cls, **hparams).train()
    batch = make_batch()
    named = [(n, p) for n, p in method.named_parameters() if p.requires_grad]
    grads = dict(zip([n for n, _ in named], meta_gradient(method, batch)))
    g = torch.Generator().manual_seed(1)
    checked = 0
    for name, param in named:
        for flat in {0, param.numel() - 1, int(torch.randint(param.numel(), (1,), generator=g))}:
            index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), param.shape))
            numeric = finite_difference(method, batch, param, index)
            analytic = grads[name][index].item()
            assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8), (name, index)
            checked += 1
    assert checked >= 6


# ---------------------------------------------------------------- ANIL's frozen head (Eq. 5)

def test_frozen_head_init_stays_zero_and_untrained():
    method = make_method(ANIL, inner_lr=0.5, train_steps=3, freeze_head_init=True).train()
    assert not any(p.requires_grad for p in method.head.parameters())
    assert not method.head.weight.any() and not method.head.bias.any()
    before = copy.deepcopy(method.state_dict())
    opt = torch.optim.SGD(method.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    for _ in range(2):
        opt.zero_grad()
        method.loss(make_batch()).backward()
        opt.step()
    assert method.head.weight.grad is None and method.head.bias.grad is None
    assert torch.equal(method.head.weight, before["head.weight"])
    assert torch.equal(method.head.bias, before["head.bias"])
    assert not torch.equal(method.backbone.conv.weight, before["backbone.conv.weight"])


def test_frozen_head_backbone_gradient_matches_higher_with_zero_head():
    """Eq. 5's backbone gradient equals Eq. 3's when the (trainable) head init happens to be 0."""
    frozen = make_method(ANIL, inner_lr=0.5, train_steps=3, freeze_head_init=True).train()
    trainable = make_method(ANIL, inner_lr=0.5, train_steps=3).train()
    trainable.load_state_dict(frozen.state_dict())
    batch = make_batch()
    ours = meta_gradient(frozen, batch)
    n_backbone = len(list(trainable.backbone.parameters()))
    reference = higher_anil_gradient(trainable, batch, first_order=False)[:n_backbone]
    assert_all_close(ours, reference)


# ---------------------------------------------------------------- batch norm bookkeeping

def test_maml_running_stats_come_only_from_initial_parameters():
    """After a training loss, the BN buffers equal those of plain forwards of the *initial*
    network on each task's support set: adapted-parameter and query forwards leave no trace."""
    method = make_method(MAML, inner_lr=0.3, train_steps=3).train()
    reference = copy.deepcopy(method)
    batch = make_batch()
    method.loss(batch).backward()
    with torch.no_grad():
        for t in range(batch.n_tasks):
            reference.backbone(batch.support[t])
    expected = dict(reference.named_buffers())
    for name, buffer in method.named_buffers():
        torch.testing.assert_close(buffer, expected[name], rtol=0, atol=1e-12)
    assert int(method.backbone.bn.num_batches_tracked) == batch.n_tasks


@pytest.mark.parametrize("cls", [MAML, ANIL])
def test_loss_under_no_grad_equals_training_loss(cls):
    """A validation loss under no_grad takes the graph-free path and gets the same value."""
    method = make_method(cls, inner_lr=0.3, train_steps=3).eval()  # eval: no buffer updates
    batch = make_batch()
    with torch.no_grad():
        quiet = method.loss(batch)
    assert not quiet.requires_grad
    torch.testing.assert_close(quiet, method.loss(batch).detach(), rtol=1e-12, atol=0)


# ---------------------------------------------------------------- native adaptation

def support_accuracy(predictor, batch: TaskBatch) -> float:
    logits = predictor(batch.support)
    return (logits.argmax(-1) == batch.support_labels).double().mean().item()


@pytest.mark.parametrize("cls", [MAML, ANIL])
def test_adapt_under_no_grad_fits_support_and_leaves_the_method_unchanged(cls):
    method = make_method(cls, inner_lr=0.1, test_inner_lr=0.5, test_steps=10)
    with torch.no_grad():  # zero head: before adaptation every prediction is class 0 (chance)
        method.head.weight.zero_()
        method.head.bias.zero_()
    method.eval()
    batch = make_batch(n_tasks=3, shots=4, separable=True)
    state = copy.deepcopy(method.state_dict())
    unadapted = copy.deepcopy(method)
    unadapted.hparams["test_steps"] = 0
    with torch.no_grad():
        predictor = method.adapt(batch.support, batch.support_labels)
        logits = predictor(batch.query)
        after = support_accuracy(predictor, batch)
        before = support_accuracy(unadapted.adapt(batch.support, batch.support_labels), batch)
    assert logits.shape == (3, WAYS * 3, WAYS)
    assert torch.isfinite(logits).all() and not logits.requires_grad
    assert before == pytest.approx(1 / WAYS)
    assert after > before and after >= 0.9
    for name, value in method.state_dict().items():
        same = torch.equal(value, state[name]) if torch.is_tensor(value) else value == state[name]
        assert same, f"adapt() changed {name}"
    assert all(p.grad is None for p in method.parameters())


def test_maml_adaptation_normalises_with_batch_statistics_in_eval_mode():
    """Transductive BN, as in Finn et al.: MAML's native predictions ignore running stats."""
    method = make_method(MAML, test_steps=3).eval()
    batch = make_batch()
    with torch.no_grad():
        logits = method.adapt(batch.support, batch.support_labels)(batch.query)
        method.backbone.bn.running_mean.fill_(5.0)
        method.backbone.bn.running_var.fill_(0.01)
        shifted = method.adapt(batch.support, batch.support_labels)(batch.query)
    torch.testing.assert_close(shifted, logits, rtol=1e-12, atol=1e-12)


def test_anil_adaptation_normalises_each_tasks_sets_with_their_own_statistics():
    """Issue 10: ANIL's native protocol as MAML's (and Finn's and Raghu's code): each task's
    support set and each task's query set on their own batch statistics, in eval mode too;
    the running statistics (the unified protocol's) neither matter nor change."""
    method = make_method(ANIL, test_steps=3, inner_lr=0.5).eval()
    batch = make_batch(n_tasks=2)
    with torch.no_grad():
        logits = method.adapt(batch.support, batch.support_labels)(batch.query)
        running = method.backbone.bn.running_mean.clone()
        method.backbone.bn.running_mean.fill_(5.0)
        method.backbone.bn.running_var.fill_(0.01)
        shifted = method.adapt(batch.support, batch.support_labels)(batch.query)
        assert torch.equal(method.backbone.bn.running_mean, torch.full_like(running, 5.0))
        # Task 0's query features: the batch-statistics forward of its queries alone.
        method.backbone.train()
        alone = method.backbone(batch.query[0])
        method.backbone.bn.running_mean.fill_(5.0)
        method.backbone.eval()
    torch.testing.assert_close(shifted, logits, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(method.batch_norm_features(batch.query)[0], alone,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [MAML, ANIL])
def test_predictor_rejects_a_different_number_of_tasks(cls):
    method = make_method(cls).eval()
    batch = make_batch(n_tasks=2)
    with torch.no_grad():
        predictor = method.adapt(batch.support, batch.support_labels)
        with pytest.raises(ValueError, match="adapted to 2 tasks"):
            predictor(batch.query[:1])


# ---------------------------------------------------------------- training

@pytest.mark.parametrize("cls,hparams", [
    (MAML, {"inner_lr": 0.1, "train_steps": 2}),
    (ANIL, {"inner_lr": 0.5, "train_steps": 3}),
    (ANIL, {"inner_lr": 0.5, "train_steps": 3, "freeze_head_init": True}),
], ids=["maml", "anil", "anil-frozen-head"])
def test_training_loss_falls(cls, hparams):
    method = make_method(cls, **hparams).train()
    batch = make_batch(n_tasks=2, shots=2, queries=3, separable=True, seed=3)
    opt = torch.optim.Adam(method.parameters(), lr=0.02)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = method.loss(batch)
        loss.backward()
        opt.step()
        method.on_optimizer_step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("cls", [MAML, ANIL])
def test_second_order_step_on_conv4(cls):
    """A real Conv4-32 (28x28, 1 channel), 5-way 1-shot, 2 tasks, paper inner-loop defaults."""
    torch.manual_seed(0)
    method = cls(build_backbone("conv4-32", in_channels=1, image_size=28), n_train_classes=20,
                 ways=5).train()
    batch = make_batch(n_tasks=2, shots=1, queries=1, ways=5, dtype=torch.float32, size=28)
    before = copy.deepcopy(method.state_dict())
    opt = torch.optim.Adam(method.parameters(), lr=1e-3)
    loss = method.loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in method.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads[:-2])  # backbone receives a meta-gradient
    opt.step()
    assert not torch.equal(method.state_dict()["head.weight"], before["head.weight"])
