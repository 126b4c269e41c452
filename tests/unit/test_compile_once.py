"""``--compile`` compiles ResNet-12 once: DropBlock's keep rate reaches the compiled forward as
a tensor (a 0-d buffer), so dynamo does not specialise on it and recompile as it ramps; and the
tensor keep rate drops exactly what the Python number did (eager numbers do not change)."""
import torch
from torch._dynamo.testing import CompileCounter

from methods.backbones import DropBlock, ResNet12

#: One graph for the training-mode forward (one more allowed, say for a dynamic-shape
#: recompile); a keep rate read as a Python number compiles 8, one per step until dynamo's
#: recompile limit, and then runs eagerly.
MAX_GRAPHS = 2


def test_ten_training_steps_with_a_ramping_keep_rate_compile_at_most_two_graphs():
    torch._dynamo.reset()
    torch.manual_seed(0)
    net = ResNet12(in_channels=1, image_size=16, feature_mode="avg", ramp_steps=10)
    counter = CompileCounter()
    net.compile(backend=counter)  # dynamo's tracing alone, no code generation
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    images = torch.randn(2, 1, 16, 16)
    rates = []
    for _ in range(10):  # as bench.run.training.train_step: forward, backward, step, ramp
        loss = net(images).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        net.advance_schedule()
        rates.append(net.keep_rate)
    torch._dynamo.reset()
    assert len(set(rates)) == 10  # the keep rate changed at every step
    assert 1 <= counter.frame_count <= MAX_GRAPHS


def test_a_tensor_keep_rate_drops_the_same_blocks_as_the_python_number():
    block = DropBlock(block_size=3).train()
    x = torch.randn(2, 4, 8, 8)
    for rate in (0.9, 0.5):
        torch.manual_seed(7)
        as_number = block(x, rate)
        torch.manual_seed(7)
        as_tensor = block(x, torch.tensor(rate))
        assert torch.equal(as_number, as_tensor)
        assert not torch.equal(as_number, x)  # something was dropped
