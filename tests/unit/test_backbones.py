"""Tests for the shared backbones: ResNet-12 (Lee et al. 2019; Tian et al. 2020), DropBlock
(Ghiasi et al. 2018) with its optimiser-step ramp (docs/references.md#bugs-avoided, B4), and
Conv4 (Finn et al. 2017)."""
from __future__ import annotations

import io
import math

import higher
import pytest
import torch
from torch import nn

from methods.backbones import (
    BACKBONES,
    DROPBLOCK_RAMP_STEPS,
    FEATURE_MODES,
    Backbone,
    Conv4,
    DropBlock,
    ResNet12,
    build_backbone,
    dropblock_gamma,
    dropblock_keep_rate,
    grow_blocks,
    pooled_size,
)

# (backbone, feature mode) -> {image size: feature dim}
EXPECTED_DIMS = {
    ("resnet12", "avg"): {28: 640, 32: 640, 84: 640},
    ("resnet12", "flatten"): {28: 640, 32: 2560, 84: 16000},
    ("conv4-32", "avg"): {28: 32, 32: 32, 84: 32},
    ("conv4-32", "flatten"): {28: 32, 32: 128, 84: 800},
    ("conv4-64", "avg"): {28: 64, 32: 64, 84: 64},
    ("conv4-64", "flatten"): {28: 64, 32: 256, 84: 1600},
}


@pytest.fixture(scope="module")
def resnet84() -> ResNet12:
    torch.manual_seed(0)
    return ResNet12(in_channels=3, image_size=84)


def _small_resnet(**kwargs) -> ResNet12:
    torch.manual_seed(0)
    return ResNet12(in_channels=1, image_size=28, **kwargs)


# ---------------------------------------------------------------------------------- ResNet-12

def test_resnet12_parameter_count_matches_upstream(resnet84: ResNet12) -> None:
    trainable = sum(p.numel() for p in resnet84.parameters() if p.requires_grad)
    assert trainable == 12_424_320
    saved = resnet84.state_dict()  # persistent buffers only (not the keep-rate mirror)
    buffers = {n: b for n, b in resnet84.named_buffers() if n in saved}
    stats = sum(b.numel() for n, b in buffers.items() if not n.endswith("num_batches_tracked"))
    assert stats == 9_472  # running mean + var of 16 BNs
    assert sum(b.numel() for b in buffers.values()) == 9_488  # the 16 counters included


def test_resnet12_layer_layout(resnet84: ResNet12) -> None:
    convs = [m for m in resnet84.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 16  # 12 conv3x3 + 4 shortcut 1x1
    assert all(c.bias is None and c.stride == (1, 1) for c in convs)
    assert sorted({c.kernel_size for c in convs}) == [(1, 1), (3, 3)]
    assert all(c.padding == (1, 1) for c in convs if c.kernel_size == (3, 3))
    assert [b.conv3.out_channels for b in resnet84.blocks] == [64, 160, 320, 640]
    assert [b.dropblock is not None for b in resnet84.blocks] == [False, False, True, True]
    assert [b.dropblock.block_size for b in resnet84.blocks[2:]] == [5, 5]


def test_resnet12_initialisation(resnet84: ResNet12) -> None:
    w = resnet84.blocks[3].conv2.weight  # fan_out = 640 * 9
    assert w.std().item() == pytest.approx(math.sqrt(2.0 / (640 * 9)), rel=0.02)
    assert w.mean().item() == pytest.approx(0.0, abs=1e-4)
    for m in resnet84.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
            assert m.eps == 1e-5 and m.momentum == 0.1


@pytest.mark.parametrize("size,expected", [(84, [42, 21, 10, 5]), (32, [16, 8, 4, 2]),
                                           (28, [14, 7, 3, 1])])
def test_resnet12_spatial_sizes(size: int, expected: list[int]) -> None:
    model = ResNet12(in_channels=3, image_size=size).eval()
    seen: list[int] = []
    hooks = [b.register_forward_hook(lambda _m, _i, out: seen.append(out.shape[-1]))
             for b in model.blocks]
    with torch.no_grad():
        model(torch.randn(1, 3, size, size))
    for h in hooks:
        h.remove()
    assert seen == expected
    assert pooled_size(size) == expected[-1]


def test_default_dropblock_size_follows_image_size() -> None:
    assert ResNet12(image_size=84).dropblock_size == 5
    assert ResNet12(image_size=32).dropblock_size == 2
    assert ResNet12(image_size=32, dropblock_size=3).dropblock_size == 3
    assert build_backbone("resnet12", image_size=84, dropblock_size=2).blocks[3].dropblock.block_size == 2


# ---------------------------------------------------------------------------------- shapes

@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("mode", FEATURE_MODES)
@pytest.mark.parametrize("size", [28, 32, 84])
def test_output_shapes(name: str, mode: str, size: int) -> None:
    channels = 1 if size == 28 else 3
    model = build_backbone(name, in_channels=channels, image_size=size, feature_mode=mode)
    assert isinstance(model, Backbone)
    expected = EXPECTED_DIMS[(name, mode)][size]
    assert model.out_dim == expected
    batch = 1 if size == 84 else 2  # 84 px ResNet-12 is slow on a CPU
    with torch.no_grad():
        out = model.eval()(torch.randn(batch, channels, size, size))
    assert out.shape == (batch, expected)
    assert torch.isfinite(out).all()


def test_avg_mode_accepts_other_sizes_flatten_mode_rejects_them() -> None:
    avg = build_backbone("conv4-32", image_size=84, feature_mode="avg").eval()
    assert avg(torch.randn(1, 3, 32, 32)).shape == (1, 32)
    flat = build_backbone("conv4-32", image_size=84, feature_mode="flatten").eval()
    with pytest.raises(ValueError, match="image_size"):
        flat(torch.randn(1, 3, 32, 32))


def test_channels_last_matches_contiguous() -> None:
    torch.manual_seed(0)
    model = ResNet12(in_channels=3, image_size=32, feature_mode="flatten").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------- DropBlock

def test_dropblock_identity_in_eval_and_at_keep_rate_one() -> None:
    x = torch.randn(4, 8, 10, 10)
    block = DropBlock(5)
    assert torch.equal(block.eval()(x, 0.5), x)
    assert torch.equal(block.train()(x, 1.0), x)


def test_dropblock_masks_whole_blocks_inside_the_map() -> None:
    torch.manual_seed(0)
    seeds = (torch.rand(3, 4, 6, 7) < 0.1).float()
    for bs in (1, 2, 3, 5):
        fs_h, fs_w = 6 + bs - 1, 7 + bs - 1
        s = seeds[..., : fs_h - bs + 1, : fs_w - bs + 1]
        brute = torch.zeros(3, 4, fs_h, fs_w)
        for b, c, i, j in s.nonzero().tolist():
            brute[b, c, i:i + bs, j:j + bs] = 1.0
        assert torch.equal(grow_blocks(s, bs), brute)


def test_dropblock_gamma_formula() -> None:
    # docs/references.md#backbones: gamma = (1-keep)/bs^2 * fs^2/(fs-bs+1)^2
    assert dropblock_gamma(0.9, 5, 10, 10) == pytest.approx(0.1 / 25 * 100 / 36)
    assert dropblock_gamma(0.9, 2, 4, 4) == pytest.approx(0.1 / 4 * 16 / 9)
    assert dropblock_gamma(1.0, 5, 5, 5) == 0.0


def _expected_drop_fraction(gamma: float, bs: int, fs: int) -> float:
    """Exact E[dropped share]: a pixel is dropped unless all seeds covering it are off."""
    total = 0.0
    for i in range(fs):
        rows = min(i, fs - bs) - max(0, i - bs + 1) + 1
        for j in range(fs):
            cols = min(j, fs - bs) - max(0, j - bs + 1) + 1
            total += 1.0 - (1.0 - gamma) ** (rows * cols)
    return total / fs ** 2


def test_dropblock_drop_fraction_and_rescaling_at_full_ramp() -> None:
    torch.manual_seed(0)
    keep = dropblock_keep_rate(DROPBLOCK_RAMP_STEPS, 0.1)
    block = DropBlock(5).train()
    x = torch.rand(64, 64, 10, 10, dtype=torch.float64) + 0.5
    mask = block.keep_mask(x, keep)
    dropped = 1.0 - mask.mean().item()
    expected = _expected_drop_fraction(dropblock_gamma(keep, 5, 10, 10), 5, 10)
    assert dropped == pytest.approx(expected, abs=0.01)
    assert dropped == pytest.approx(1.0 - keep, abs=0.02)
    out = block(x, keep)
    assert out.dtype == torch.float64
    kept = out != 0
    assert (kept.float().mean().item()) == pytest.approx(1.0 - dropped, abs=0.01)
    # kept values are scaled by numel / kept, so the mean is preserved in expectation
    scale = out[kept] / x[kept]
    torch.testing.assert_close(scale, torch.full_like(scale, scale[0].item()))
    assert out.mean().item() == pytest.approx(x.mean().item(), rel=0.02)
    ones = torch.ones(32, 16, 10, 10)
    assert block(ones, keep).mean().item() == pytest.approx(1.0, rel=1e-5)


def test_dropblock_clamps_block_size_on_tiny_maps_and_survives_all_dropped() -> None:
    torch.manual_seed(0)
    block = DropBlock(5).train()
    x = torch.randn(200, 50, 1, 1)
    out = block(x, 0.9)  # bs clamped to 1: whole channels dropped with probability 0.1
    assert out.shape == x.shape
    assert (out == 0).float().mean().item() == pytest.approx(0.1, abs=0.02)
    everything = DropBlock(1).train()(x, 0.0)  # gamma = 1: every unit dropped
    assert torch.isfinite(everything).all() and torch.all(everything == 0)


def test_dropblock_runs_inside_resnet12_at_28px() -> None:
    model = _small_resnet().train()
    model.advance_schedule(DROPBLOCK_RAMP_STEPS)
    out = model(torch.randn(4, 1, 28, 28))
    assert out.shape == (4, 640) and torch.isfinite(out).all()


# ---------------------------------------------------------------------------------- ramp

def test_keep_rate_ramp_values() -> None:
    assert dropblock_keep_rate(0, 0.1) == 1.0
    assert dropblock_keep_rate(20_000, 0.1) == pytest.approx(0.95)
    assert dropblock_keep_rate(40_000, 0.1) == pytest.approx(0.9)
    assert dropblock_keep_rate(10 ** 6, 0.1) == pytest.approx(0.9)
    assert dropblock_keep_rate(100, 0.0) == 1.0


def test_ramp_counts_optimiser_steps_not_forward_calls() -> None:
    model = _small_resnet().train()
    seen: list[float] = []
    model.blocks[3].dropblock.register_forward_pre_hook(lambda _m, args: seen.append(args[1]))
    x = torch.randn(2, 1, 28, 28)
    model(x)
    model(x)
    model.eval()(x)
    assert model.schedule_step == 0 and seen == [1.0, 1.0, 1.0]
    model.train()
    model.advance_schedule()
    model.advance_schedule(19_999)
    model(x)
    model(x)
    assert model.schedule_step == 20_000
    assert seen[-2:] == [pytest.approx(0.95), pytest.approx(0.95)]
    model.advance_schedule(10 ** 6)
    model(x)
    assert seen[-1] == pytest.approx(0.9) and model.keep_rate == pytest.approx(0.9)


def test_schedule_step_survives_state_dict_round_trip() -> None:
    model = _small_resnet()
    model.advance_schedule(1234)
    restored = _small_resnet()
    restored.load_state_dict(model.state_dict())
    assert restored.schedule_step == 1234
    assert restored.keep_rate == model.keep_rate
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    again = _small_resnet()
    again.load_state_dict(torch.load(buffer, weights_only=True))
    assert again.schedule_step == 1234


# ---------------------------------------------------------------------------------- behaviour

def test_eval_mode_is_deterministic_and_dropout_is_active_in_training() -> None:
    model = _small_resnet()
    model.advance_schedule(DROPBLOCK_RAMP_STEPS)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
        model.train()
        assert not torch.equal(model(x), model(x))
        # stage 1-2 dropout is not ramped: active from step 0 when drop_rate > 0
        fresh = _small_resnet().train()
        assert not torch.equal(fresh(x), fresh(x))
        plain = _small_resnet(drop_rate=0.0).train()
        assert torch.equal(plain(x), plain(x))


@pytest.mark.parametrize("name", BACKBONES)
def test_backward_reaches_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = build_backbone(name, in_channels=1, image_size=28, feature_mode="flatten").train()
    model.advance_schedule(DROPBLOCK_RAMP_STEPS)
    model(torch.randn(4, 1, 28, 28)).pow(2).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert sum(p.grad.abs().sum().item() for p in model.parameters()) > 0


def test_functional_call_second_order_gradients() -> None:
    """MAML-style use: fast weights through ``torch.func.functional_call`` with create_graph.
    The meta-gradient must be the second-order one: it equals ``higher``'s unrolled SGD step
    (an independent implementation), which the first-order gradient (create_graph=False, the
    Hessian term dropped) does not. (A finite difference is no reference here: ReLU and
    max-pool kinks make the post-adaptation loss too rough for one.)"""
    torch.manual_seed(0)
    model = Conv4(filters=8, in_channels=1, image_size=28).double().train()
    params = dict(model.named_parameters())
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64)

    def meta_gradient(create_graph: bool) -> list[torch.Tensor]:
        loss = torch.func.functional_call(model, params, (x,)).pow(2).mean()
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        fast = {n: p - 0.1 * g for (n, p), g in zip(params.items(), grads)}
        outer = torch.func.functional_call(model, fast, (x,)).pow(2).mean()
        return list(torch.autograd.grad(outer, list(params.values())))

    second, first = meta_gradient(create_graph=True), meta_gradient(create_graph=False)
    with higher.innerloop_ctx(model, torch.optim.SGD(model.parameters(), lr=0.1),
                              copy_initial_weights=False) as (fmodel, diffopt):
        diffopt.step(fmodel(x).pow(2).mean())
        reference = torch.autograd.grad(fmodel(x).pow(2).mean(), list(model.parameters()))
    for ours, ref, fo in zip(second, reference, first):
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)
    gap = max(float((fo - ref).abs().max() / ref.abs().max()) for fo, ref in zip(first, reference))
    assert gap > 1e-3  # the second-order term is there to be found


# ---------------------------------------------------------------------------------- factory

def test_bad_name_lists_valid_backbones() -> None:
    with pytest.raises(ValueError) as err:
        build_backbone("resnet-12")
    message = str(err.value)
    assert all(name in message for name in BACKBONES)
    assert "Did you mean 'resnet12'" in message


def test_bad_feature_mode_and_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="avg, flatten"):
        build_backbone("conv4-64", feature_mode="mean")
    with pytest.raises(ValueError, match="too small"):
        build_backbone("resnet12", image_size=15)
    with pytest.raises(ValueError, match="in_channels"):
        build_backbone("conv4-32", in_channels=0)
    with pytest.raises(ValueError, match="drop_rate"):
        build_backbone("resnet12", drop_rate=1.0)


def test_factory_returns_the_named_architecture() -> None:
    assert isinstance(build_backbone("ResNet12"), ResNet12)
    conv = build_backbone("conv4-32", in_channels=1, image_size=28)
    assert isinstance(conv, Conv4) and conv.filters == 32
    convs = [m for m in conv.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and all(c.bias is not None for c in convs)
    assert build_backbone("conv4-64").filters == 64


def test_compiled_resnet12_does_not_recompile_as_the_ramp_advances() -> None:
    """The keep rate reaches forward as a 0-d buffer, so torch.compile does not specialise on
    the optimiser-step count (counted with dynamo's eager backend: no C++ compiler needed)."""
    import torch._dynamo
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    model = build_backbone("resnet12", in_channels=1, image_size=28).train()
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter)
    x = torch.randn(2, 1, 28, 28)
    for _ in range(4):
        compiled(x)
        model.advance_schedule(5000)
    assert model.keep_rate < 1.0
    assert counter.frame_count == 1
