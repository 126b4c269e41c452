"""Shared pytest fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# One intra-op thread for the whole session. With torch 2.14 on the CPU, any explicit
# torch.set_num_threads(k > 1) (including restoring the default 2) makes later batched LU
# solves (torch.linalg.solve, qpth) return invalid pivots; tests that change the thread count
# then restore 1, which is safe. It also keeps timings of tests on a shared 2-core box sane.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The workplace's shared Omniglot archives, beside the repository (see their README.md).
SHARED_OMNIGLOT = REPO_ROOT.parent / "shared" / "data" / "omniglot"


#: Tests that train a method at the quick budget; among them the inner-loop methods, which
#: cost several times the others (iMAML and Meta-MinibatchProx about 5 minutes on the 2-core
#: CI machine), go first.
LONGEST_FIRST = ("test_quick_budget_beats_chance_by_15_points",)
COSTLIEST_METHODS = ("imaml", "minibatchprox", "maml", "anil")


def pytest_collection_modifyitems(config, items) -> None:
    """Start the few tests that take minutes first. Under ``pytest -n 2 --dist worksteal`` the
    first worker starts on them while the second runs the many short tests and then steals
    half of what is left, so the suite does not end with one worker on a five-minute test
    and the other idle."""
    def cost_rank(item) -> tuple[int, int]:
        if item.originalname not in LONGEST_FIRST:
            return 1, 0
        method = item.callspec.params.get("method") if hasattr(item, "callspec") else None
        return 0, (COSTLIEST_METHODS.index(method) if method in COSTLIEST_METHODS
                   else len(COSTLIEST_METHODS))

    items.sort(key=cost_rank)  # stable: the collection order is kept within each group


@pytest.fixture(scope="session")
def omniglot_root() -> Path:
    """Folder holding the two small Omniglot background archives.

    Skipped when absent, except in CI (``CI=true``), where a missing folder is a failure.
    """
    if not (SHARED_OMNIGLOT / "images_background_small1.zip").is_file():
        reason = (f"shared Omniglot archives not found in {SHARED_OMNIGLOT} "
                  f"(expected images_background_small1.zip and images_background_small2.zip)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI must provide them", pytrace=False)
        pytest.skip(reason)
    return SHARED_OMNIGLOT


@pytest.fixture(scope="session")
def smoke_models(tmp_path_factory) -> Path:
    """A results folder with two finished smoke runs on glyphs (5-way 1-shot, 20 test episodes,
    seed 0) and their model files: MTL (no native adaptation) and ProtoNet (one of its own)."""
    from bench.sweep.runs import run_sweep
    from datasets import load_dataset
    from smoke_model_runs import smoke_model_configs  # tests/integration

    out = tmp_path_factory.mktemp("smoke-models")
    configs = smoke_model_configs()
    summary = run_sweep(configs, {"glyphs": load_dataset("glyphs")}, torch.device("cpu"), out,
                        progress=False)
    assert summary.finished == [c.key for c in configs]
    return out


@pytest.fixture(autouse=True)
def _fresh_import_policy():
    """Every test starts with no recorded import path allowed (methods.plugins keeps the
    allowances of a process: one test's --allow-import must not leak into the next)."""
    from methods.plugins import reset_import_policy

    reset_import_policy()
    yield
    reset_import_policy()
