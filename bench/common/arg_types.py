"""Argument types shared by every subcommand's options (argparse ``type=`` functions; no torch,
so ``--help`` stays fast)."""
from __future__ import annotations

import argparse
import json


def int_list(text: str) -> list[int]:
    """``1,5`` -> ``[1, 5]``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def name_list(text: str) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]``: a comma-separated list, spaces stripped."""
    return [v.strip() for v in text.split(",") if v.strip()]


def key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE``, the value JSON-decoded where it can be (``--hparam``, ``--set``)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value: object = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value
