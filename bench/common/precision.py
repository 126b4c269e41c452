"""One precision policy for every method: ``fp32`` or ``bf16`` autocast."""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, ContextManager

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device, precision: str) -> ContextManager:
    """Context in which forward passes run at ``precision`` (parameters stay fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        import torch  # here, not at the top: the command line reads PRECISIONS without torch

        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
