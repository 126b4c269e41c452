"""Data-parallel training on the CPU with two gloo processes equals one process with the same
global meta-batch: every method's optimiser steps (per-task meta-gradients, synchronised and
task-local batch norm, uneven shards), and ``torchrun ... -m bench run`` end to end."""
import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from bench.common.config import RunConfig, resolve_budget
from bench.run.distributed import SINGLE, Parallel, shutdown
from bench.run.training import build_training, parallel_train_step, stream_seed
from datasets.base import ClassSplit, FewShotDataset
from datasets.batches import ImageBatchSampler
from datasets.episodes import EpisodeSampler
from interrupted_cli import INTERRUPTED, KEY, RUN  # beside this file (pytest puts it on sys.path)

REPO = Path(__file__).resolve().parents[2]
METHODS = ("mtl", "anil", "maml", "protonet", "r2d2", "metaoptnet", "imaml", "minibatchprox",
           "rfs")
META_BATCH = 3  # two processes: shards of 2 and 1 tasks (uneven on purpose)
STEPS = 2


def tiny_dataset() -> FewShotDataset:
    g = torch.Generator().manual_seed(0)

    def split(name: str, first: int) -> ClassSplit:
        labels = torch.arange(8).repeat_interleave(8)
        images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=g)
        return ClassSplit(name, images, labels, tuple(f"{name}{first + c}" for c in range(8)))

    return FewShotDataset("tiny", split("train", 0), split("val", 100), split("test", 200),
                          mean=(0.5,), std=(0.25,))


def train_steps(method_name: str, parallel: Parallel,
                episode_seed: int = 7) -> dict[str, torch.Tensor]:
    """``STEPS`` optimiser steps of ``method_name`` (conv4-32, MAML/ANIL second order with 2
    inner steps, iMAML/MinibatchProx 2 inner steps, iMAML 3 CG steps, RFS on batches of 3
    images) from seed 0; returns the state dict and the losses.

    SGD, not Adam: Conv4's conv bias feeds batch norm, which removes it, so its gradient is
    rounding noise; Adam would scale that noise to full-size steps, different for any
    summation order, while SGD keeps it at rounding size."""
    dataset = tiny_dataset()
    budget = resolve_budget("smoke", method_name, "glyphs", 1)
    hparams = {"maml": {"train_steps": 2}, "anil": {"train_steps": 2},
               "imaml": {"train_steps": 2, "cg_steps": 3}, "minibatchprox": {"train_steps": 2},
               # qpth stops its interior-point iterations for a whole batch of QPs at once, so
               # a task's SVM depends (to the solver's tolerance) on which tasks share its
               # solve; solved to convergence in float64 it does not.
               "metaoptnet": {"double_precision": True, "train_max_iter": 40}
               }.get(method_name, {})
    config = RunConfig(method_name, "tiny", 5, 1, 0,
                       replace(budget, meta_batch=META_BATCH, optimizer="sgd", lr=0.1,
                               hparams=hparams))
    # As a run builds it: seeded method, batch norm synchronised unless the method declares it
    # task-local, rank 0's weights everywhere (Conv4 has no dropout, so the per-rank seeds
    # draw nothing). The episodes are this test's own stream (seed 7), the same on every rank:
    # on the run's stream for seed 0 MetaOptNet's sharded steps drift from the single-process
    # ones by up to 2e-4 in the first conv weights after two steps, beyond this test's
    # tolerance (the first step's QP solves agree to 1e-10 between shards and whole batch,
    # also with 100 iterations; where the drift comes from is not established).
    training = build_training(config, dataset, torch.device("cpu"), parallel)
    method = training.method
    if training.method.training_batches == "images":  # RFS: 3 images, sharded 2 + 1
        sampler = ImageBatchSampler(dataset.train, 7)
    else:
        sampler = EpisodeSampler(dataset.train, 5, budget.train_shots, budget.train_queries,
                                 episode_seed)
    losses = [parallel_train_step(method, training.optimizer, training.loader, sampler,
                                  META_BATCH, parallel=parallel).loss for _ in range(STEPS)]
    state = {k: v.detach().clone() if torch.is_tensor(v) else v
             for k, v in method.state_dict().items()}
    state["losses"] = torch.tensor(losses)
    return state


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                                         rank=rank, world_size=world)
    parallel = Parallel(rank, world, rank)
    try:
        states = {name: train_steps(name, parallel) for name in METHODS}
        states[RUN_STREAM] = train_steps("metaoptnet", parallel, stream_seed(0, "train"))
        torch.save(states, f"{out}.rank{rank}")
    except BaseException:
        torch.distributed.destroy_process_group()
        raise  # mp.spawn reports it
    # As a torchrun worker ends (bench.run.distributed.finish_process): a barriered teardown, then
    # an immediate exit, so gloo's threads cannot abort the interpreter's exit.
    shutdown(parallel)
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_states(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ddp") / "states")
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    return [torch.load(f"{out}.rank{r}", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("method_name", METHODS)
def test_two_processes_take_the_steps_one_process_takes(method_name, two_process_states):
    single = train_steps(method_name, SINGLE)
    rank0, rank1 = (states[method_name] for states in two_process_states)
    for key, value in single.items():
        if not torch.is_tensor(value):  # DropBlock's step counter (extra state)
            assert rank0[key] == rank1[key] == value, key
            continue
        assert torch.equal(rank0[key], rank1[key]), f"{key} differs between the ranks"
        if key.endswith("num_batches_tracked"):
            assert torch.equal(rank0[key], value), key
            continue
        torch.testing.assert_close(rank0[key], value, rtol=2e-4, atol=2e-5, msg=key)


#: MetaOptNet on the run's own training stream of seed 0 (not this test's seed-7 stream).
RUN_STREAM = "metaoptnet@seed0-stream"
#: How far two processes may take MetaOptNet's weights from one process's on that stream, in
#: two SGD steps (lr 0.1): up to 1.8e-4 was seen in the first conv weights (issue 24). Its cause
#: is not established: the first step's QP solutions agree to 1e-10 between the shards and the
#: whole batch (double precision, 40 iterations), so the difference enters through float32
#: rounding of the features and gradients (the all_reduce sums the shards' gradients in another
#: order than one backward pass does), which the SVM's dual solution, with support vectors on
#: the margin, can amplify in the second step. The bound, 1e-3, is about 5x the drift seen; a
#: real sharding error (a lost task, a wrong weighting) changes a step by a fraction of the step
#: itself, which the per-method test above (seed-7 stream, 2e-5 + 2e-4 relative) would catch.
METAOPTNET_RUN_STREAM_ATOL = 1e-3


def test_metaoptnet_on_the_runs_stream_stays_within_its_stated_tolerance(two_process_states):
    single = train_steps("metaoptnet", SINGLE, stream_seed(0, "train"))
    rank0, rank1 = (states[RUN_STREAM] for states in two_process_states)
    for key, value in single.items():
        if not torch.is_tensor(value) or not value.is_floating_point():
            continue
        assert torch.equal(rank0[key], rank1[key]), f"{key} differs between the ranks"
        torch.testing.assert_close(rank0[key], value, rtol=0, atol=METAOPTNET_RUN_STREAM_ATOL,
                                   msg=key)


def _bench(*args: object, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, *prefix, "-m", "bench", *map(str, args)]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
    return proc


TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")


def _outputs(out: Path) -> tuple[dict, dict]:
    result = json.loads((out / "runs" / f"{KEY}.json").read_text())
    return result, torch.load(out / "checkpoints" / f"{KEY}.pt")


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp-run")
    _bench(*RUN, "--out", out, prefix=TORCHRUN)
    return _outputs(out)


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process_end_to_end(tmp_path, two_process_run):
    _bench(*RUN, "--out", tmp_path / "one")
    (one, one_final), (two, two_final) = _outputs(tmp_path / "one"), two_process_run
    assert two["provenance"]["device_count"] == 2
    assert two["timings"]["device_hours"] == pytest.approx(
        two["timings"]["train_seconds"] * 2 / 3600)
    assert two["timings"]["steps"] == one["timings"]["steps"] == 10
    assert two["timings"]["images_seen"] == one["timings"]["images_seen"]
    assert two["episode_hash"] == one["episode_hash"]
    assert two["selection"]["best_epoch"] == one["selection"]["best_epoch"]
    assert two["selection"]["val_curve"] == pytest.approx(one["selection"]["val_curve"],
                                                          abs=0.5)
    a, b = (torch.tensor(r["test"]["unified"]["accuracies"]) for r in (one, two))
    assert (a == b).float().mean() >= 0.9 and abs(a.mean() - b.mean()) <= 1.0
    # Conv and batch-norm weights (Adam turns the conv biases' rounding-noise gradients into
    # full steps, see train_steps, so those are not compared).
    for name, value in one_final["best"]["state"].items():
        if torch.is_tensor(value) and value.is_floating_point() and "blocks" in name \
                and name.endswith(".weight"):
            torch.testing.assert_close(two_final["best"]["state"][name], value, rtol=1e-3,
                                       atol=1e-5, msg=name)


@pytest.mark.slow
def test_a_two_process_run_stopped_by_sigterm_resumes_to_the_same_result(tmp_path,
                                                                         two_process_run):
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    stopped = subprocess.run([sys.executable, *TORCHRUN, str(script), "8", "SIGTERM", *RUN,
                              "--out", str(out)], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=300)
    assert stopped.returncode != 0 and "stopped by SIGTERM" in stopped.stderr
    saved = torch.load(out / "checkpoints" / f"{KEY}.pt")
    assert saved["world_size"] == 2 and len(saved["rng"]) == 2
    assert saved["progress"]["epochs"] == 1 and saved["progress"]["step_in_epoch"] > 0
    _bench(*RUN, "--out", out, prefix=TORCHRUN)
    (result, final), (reference, reference_final) = _outputs(out), two_process_run
    assert result["timings"]["resumes"] == 1
    assert result["test"]["unified"]["accuracies"] == reference["test"]["unified"]["accuracies"]
    assert result["selection"] == reference["selection"]
    for name, value in reference_final["model"].items():
        if torch.is_tensor(value):
            assert torch.equal(final["model"][name], value), name
