"""Multiply-adds per image of a backbone and its single-process throughput on this machine.

Counts the convolutions' multiply-adds with forward hooks and times a forward pass and a
forward-and-backward pass over a batch (the median of ``--repeats`` timed passes after one
warm-up), so a CPU profile can be read against arithmetic (docs/performance.md, "The main
job's cost on two cores")::

    OMP_NUM_THREADS=1 python scripts/backbone_cost.py --backbone conv4-64 --channels 1 --size 28
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from methods.backbones import build_backbone  # noqa: E402


def conv_macs_per_image(net: torch.nn.Module, image: torch.Tensor) -> int:
    """Multiply-adds of every convolution of ``net`` for one image ``[1, C, H, W]``."""
    total = 0

    def count(module: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output[0].numel() * module.in_channels // module.groups * kh * kw

    hooks = [m.register_forward_hook(count) for m in net.modules()
             if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        net(image)
    for hook in hooks:
        hook.remove()
    return total


def median_seconds(step, repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="conv4-64")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    net = build_backbone(args.backbone, in_channels=args.channels, image_size=args.size)
    x = torch.randn(args.batch, args.channels, args.size, args.size)
    macs = conv_macs_per_image(net, x[:1])

    def forward() -> None:
        with torch.no_grad():
            net(x)

    def forward_backward() -> None:
        net.zero_grad(set_to_none=True)
        net(x).sum().backward()

    print(f"{args.backbone} at {args.size} px: {macs / 1e6:.2f} M multiply-adds per image "
          f"(convolutions); torch threads {torch.get_num_threads()}")
    for name, step, passes in (("forward", forward, 1), ("forward+backward", forward_backward, 3)):
        seconds = median_seconds(step, args.repeats)
        flops = 2 * macs * args.batch * passes
        print(f"{name}: {seconds * 1000:.1f} ms per {args.batch} images, "
              f"{flops / seconds / 1e9:.1f} GFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
