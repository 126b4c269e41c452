"""Data-parallel training with ``torch.distributed`` (``torchrun --nproc_per_node=N -m bench run``).

How a run is split over ``N`` processes (ranks), for every method:

- **Tasks.** Every rank draws the same meta-batch of ``B`` tasks from the same sampler stream
  and loads (and augments) all of it with the same generator, exactly as one process would;
  rank ``r`` then keeps a contiguous shard of the tasks (sizes differ by at most one, ``B >= N``).
  Its loss, the mean over its tasks, is weighted by ``shard / B``.
- **Gradients.** After the backward pass the gradients of all ranks are summed with one
  ``all_reduce`` (one flat buffer, which also carries the loss and a stop vote), so each rank
  holds the gradient of the mean loss over all ``B`` tasks. This is exact for per-task
  meta-gradients too: MAML's and ANIL's second-order terms live inside each task's graph, on
  the rank that owns the task. Every rank then takes the same optimiser step.
- **Batch norm.** Methods that embed the support and query images of all tasks of a
  meta-batch in one forward (MTL, ANIL, ProtoNet, R2D2, MetaOptNet) normalise with the
  statistics of the whole meta-batch; their batch-norm layers become :class:`SyncedBatchNorm2d`,
  which sums per-channel statistics over the ranks with a differentiable ``all_reduce``, so
  the forward and backward passes equal the single-process ones. A method that declares
  ``task_local_batch_norm`` (MAML, iMAML, Meta-MinibatchProx) normalises every forward with one
  task's own statistics (:mod:`methods.maml`, :mod:`methods.proximal`), which sharding leaves
  unchanged; its running statistics, an exponential average updated task after task, are
  recombined after each step in task order (:func:`reconcile_running_stats`), as if one
  process had seen all tasks.
- **Solvers.** MetaOptNet's qpth solve stops its interior-point iterations for a whole batch
  of QPs at once, so a task's SVM depends, within the solver's tolerance, on which tasks share
  its solve, here the rank's shard (as in MetaOptNet's own multi-GPU ``DataParallel`` recipe);
  solved to convergence (``double_precision``, more ``train_max_iter``) it does not.
- **Schedules.** DropBlock's ramp counts optimiser steps (``Backbone.schedule_step``); every
  rank takes every step, so the ramp is identical on all ranks.
- **Randomness.** Model initialisation, episodes and augmentation are identical on all ranks;
  dropout and DropBlock masks come from torch's global generator, seeded per rank
  (:func:`rank_seed`), so they are independent across ranks (as with one process, where each
  image gets its own mask), though not the same draws as one process would make.
- **Evaluation.** Validation and test episodes are drawn identically on every rank; each rank
  evaluates a contiguous slice and the per-episode accuracies are gathered in episode order.
- **Accounting.** Device-hours = timed training seconds (the slowest rank's) x world size.
  Only rank 0 writes files (claims, checkpoints, results).

Gloo on the CPU and NCCL on GPUs; the tests run two gloo processes on the CPU.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from datasets.episodes import EpisodeIndices, TaskBatch
from methods.base import FewShotMethod

class DistributedSetupError(RuntimeError):
    """A distributed run that cannot work as asked; the message says what to change."""


@dataclass(frozen=True)
class Parallel:
    """This process's place in a data-parallel run (``world_size == 1``: a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """The contiguous slice of ``n`` items this rank owns (sizes differ by at most one)."""
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def shard_sizes(self, n: int) -> list[int]:
        base, extra = divmod(n, self.world_size)
        return [base + (1 if r < extra else 0) for r in range(self.world_size)]


SINGLE = Parallel()
_JOINED = False  # set by init_from_environment in a process of a data-parallel run


def environment_world_size() -> int:
    """``$WORLD_SIZE`` as set by torchrun (or submitit's export), else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_environment(device_name: str) -> tuple[Parallel, str]:
    """Join the process group that torchrun (or a Slurm job) described in the environment.

    Returns this process's :class:`Parallel` and the device name to use (``cuda:<local rank>``
    when ``device_name`` asks for CUDA). Gloo serves CPU runs, NCCL CUDA runs.
    """
    world = environment_world_size()
    if world <= 1:
        return SINGLE, device_name
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto"
                                                  and torch.cuda.is_available())
    if use_cuda:
        if torch.cuda.device_count() == 0:
            raise DistributedSetupError("a CUDA run was asked for but no GPU is visible; use "
                                        "--device cpu for a gloo run on the CPU")
        device_name = f"cuda:{local_rank % torch.cuda.device_count()}"
        torch.cuda.set_device(torch.device(device_name))
    else:
        device_name = "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world,
                                timeout=timedelta(minutes=30))
    global _JOINED
    _JOINED = True
    return Parallel(rank=rank, world_size=world, local_rank=local_rank), device_name


def shutdown(parallel: Parallel) -> None:
    """Tear the process group down together: without the barrier a rank that finishes first
    can destroy gloo's pairs while another still uses them. The process must then end through
    :func:`finish_process` (an immediate exit): gloo's threads can still abort a normal
    interpreter exit ("terminate called without an active exception", seen in CI after the
    barrier was added)."""
    if parallel.enabled and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def joined_process_group() -> bool:
    """Whether this process joined a data-parallel process group (:func:`init_from_environment`
    with ``WORLD_SIZE`` > 1)."""
    return _JOINED


def finish_process(code: int) -> int:
    """End a process that joined a process group at once with exit status ``code``, after
    flushing its output: skipping the interpreter's teardown (static destructors of the
    collective library's threads) is what removes the abort at exit. A process that never
    joined one gets ``code`` back to return normally."""
    if not _JOINED:
        return code
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more to say
            pass
    os._exit(code)


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank ``rank``'s global torch generator (dropout masks) in run seed ``seed``."""
    return int(np.random.SeedSequence([seed, 5, rank]).generate_state(1)[0])


def check_meta_batch(meta_batch: int, parallel: Parallel) -> None:
    if parallel.enabled and meta_batch < parallel.world_size:
        raise DistributedSetupError(
            f"a meta-batch of {meta_batch} task(s) cannot be shared by {parallel.world_size} "
            f"processes (each needs at least one task); use at most {meta_batch} processes "
            "(torchrun --nproc_per_node) for this budget")


# --------------------------------------------------------------------------- collectives

def broadcast_object(obj: Any, parallel: Parallel) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not parallel.enabled:
        return obj
    box = [obj if parallel.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any, parallel: Parallel) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not parallel.enabled:
        return [obj]
    out: list[Any] = [None] * parallel.world_size
    dist.all_gather_object(out, obj)
    return out


def max_over_ranks(value: float, parallel: Parallel) -> float:
    if not parallel.enabled:
        return value
    return max(gather_objects(float(value), parallel))


def sharded_map(fn: Callable[[EpisodeIndices], list[float]], episodes: EpisodeIndices,
                parallel: Parallel) -> list[float]:
    """``fn`` on this rank's contiguous slice of ``episodes``; the results of all ranks
    concatenated in episode order."""
    if not parallel.enabled:
        return fn(episodes)
    part = parallel.shard(episodes.n_tasks)
    mine = fn(episodes.slice(part.start, part.stop)) if part.stop > part.start else []
    return [a for chunk in gather_objects(mine, parallel) for a in chunk]


def shard_batch(batch: TaskBatch, parallel: Parallel) -> TaskBatch:
    """This rank's tasks of a loaded meta-batch."""
    if not parallel.enabled:
        return batch
    part = parallel.shard(batch.n_tasks)
    return batch.slice(part.start, part.stop)


def broadcast_module(module: nn.Module, parallel: Parallel) -> None:
    """Rank 0's parameters and buffers on every rank (identical by seeding; made certain)."""
    if not parallel.enabled:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


# --------------------------------------------------------------------------- batch norm

class _AllReduceSum(torch.autograd.Function):
    """``all_reduce(SUM)`` with autograd: the sum is linear and every rank's output depends
    on every rank's input, so the backward pass sums the output gradients over the ranks."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad.contiguous())


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Differentiable sum of ``tensor`` over the ranks."""
    return _AllReduceSum.apply(tensor)


class SyncedBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training-mode statistics span all ranks.

    Per channel, the sum and then the sum of squared deviations are added up over the ranks
    with :func:`all_reduce_sum` (differentiable: its backward sums the gradients over the
    ranks), giving the mean and biased variance of the whole meta-batch;
    the running statistics get the unbiased variance, as ``BatchNorm2d`` does. The module has
    the same parameters, buffers and state-dict keys as ``BatchNorm2d``; in eval mode it is
    ``BatchNorm2d``. Every rank must call it the same number of times (one forward per loss).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        xf = x.float()
        channels = x.shape[1]
        count = torch.tensor([x.numel() // channels], dtype=torch.float32, device=x.device)
        dist.all_reduce(count)
        total = all_reduce_sum(xf.sum(dim=(0, 2, 3)))
        mean = total / count
        centred = xf - mean.view(1, -1, 1, 1)
        var = all_reduce_sum(centred.pow(2).sum(dim=(0, 2, 3))) / count
        if self.track_running_stats and self.running_mean is not None:
            self._update_running(mean.detach(), var.detach(), float(count.item()))
        out = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out.to(x.dtype)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, count: float) -> None:
        self.num_batches_tracked.add_(1)
        factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                  else self.momentum)
        unbiased = var * (count / max(count - 1.0, 1.0))
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype),
                                               alpha=factor)


def synchronise_batch_norm(module: nn.Module) -> int:
    """Turn every ``nn.BatchNorm2d`` of ``module`` into :class:`SyncedBatchNorm2d` in place
    (same tensors, same state-dict keys); returns how many layers changed."""
    changed = 0
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = SyncedBatchNorm2d
            changed += 1
    return changed


def prepare_method(method: FewShotMethod, parallel: Parallel) -> None:
    """Make ``method`` ready for data-parallel training (see the module docstring): batch norm
    synchronised across ranks unless the method declares it task-local
    (``task_local_batch_norm``), rank 0's weights everywhere."""
    if not parallel.enabled:
        return
    if not method.task_local_batch_norm:
        synchronise_batch_norm(method)
    broadcast_module(method, parallel)


def running_stats(method: nn.Module) -> list[tuple[_BatchNorm, torch.Tensor, torch.Tensor,
                                                   int]]:
    """Snapshot (module, running mean, running var, batches tracked) of every tracking
    batch-norm layer, for :func:`reconcile_running_stats`."""
    return [(m, m.running_mean.clone(), m.running_var.clone(), int(m.num_batches_tracked))
            for m in method.modules()
            if isinstance(m, _BatchNorm) and m.track_running_stats
            and m.running_mean is not None]


@torch.no_grad()
def reconcile_running_stats(before: Sequence[tuple[_BatchNorm, torch.Tensor, torch.Tensor,
                                                   int]], parallel: Parallel) -> None:
    """Combine the running statistics that each rank updated on its own shard of tasks into
    those one process would have after updating them task after task, in task order.

    With momentum ``m``, rank ``r`` made ``k_r`` updates starting from ``b0`` and ended at
    ``b_r``; its own contribution is ``d_r = b_r - (1-m)^k_r b0``, and one process would end at
    ``(1-m)^K b0 + sum_r (1-m)^(k_{r+1} + ... ) d_r`` with ``K = sum_r k_r`` (exact). With
    ``momentum=None`` (cumulative average) the updates are weighted by count instead.
    """
    if not parallel.enabled or not before:
        return
    counts = [int(m.num_batches_tracked) - n0 for m, _, _, n0 in before]
    all_counts = gather_objects(counts, parallel)
    terms = []
    for i, (m, mean0, var0, n0) in enumerate(before):
        ks = [c[i] for c in all_counts]
        k_total, after = sum(ks), sum(ks[parallel.rank + 1:])
        k_mine = ks[parallel.rank]
        if m.momentum is None:
            mine_mean = m.running_mean * (n0 + k_mine) - mean0 * n0
            mine_var = m.running_var * (n0 + k_mine) - var0 * n0
            base_mean, base_var = mean0 * n0, var0 * n0
            denom = float(n0 + k_total) or 1.0
        else:
            keep = 1.0 - m.momentum
            mine_mean = (m.running_mean - keep ** k_mine * mean0) * keep ** after
            mine_var = (m.running_var - keep ** k_mine * var0) * keep ** after
            base_mean, base_var = keep ** k_total * mean0, keep ** k_total * var0
            denom = 1.0
        terms.append((m, mine_mean, mine_var, base_mean, base_var, denom, n0 + k_total))
    flat = torch.cat([torch.cat([t[1].reshape(-1), t[2].reshape(-1)]) for t in terms])
    dist.all_reduce(flat)
    offset = 0
    for m, mine_mean, mine_var, base_mean, base_var, denom, tracked in terms:
        n = mine_mean.numel()
        m.running_mean.copy_((base_mean + flat[offset:offset + n].view_as(mine_mean)) / denom)
        m.running_var.copy_((base_var + flat[offset + n:offset + 2 * n].view_as(mine_var))
                            / denom)
        m.num_batches_tracked.fill_(tracked)
        offset += 2 * n


# --------------------------------------------------------------------------- gradients

def all_reduce_gradients(params: Sequence[torch.nn.Parameter], extras: Sequence[float],
                         parallel: Parallel) -> list[float]:
    """Sum every parameter's gradient over the ranks, and the numbers ``extras`` with them
    (one ``all_reduce`` of one flat buffer); returns the summed extras.

    A gradient that is ``None`` on some ranks counts as zero there; one that is ``None`` on
    every rank stays ``None`` (so the optimiser skips that parameter, as with one process).
    """
    if not parallel.enabled:
        return list(extras)
    device = params[0].device if params else torch.device("cpu")
    pieces = [p.grad.reshape(-1).float() if p.grad is not None
              else torch.zeros(p.numel(), device=device) for p in params]
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32,
                           device=device)
    flat = torch.cat(pieces + [present, torch.tensor(list(extras), dtype=torch.float32,
                                                      device=device)])
    dist.all_reduce(flat)
    offset = 0
    for i, p in enumerate(params):
        n = p.numel()
        if flat[-len(extras) - len(params) + i] > 0:
            grad = flat[offset:offset + n].view_as(p).to(p.dtype)
            p.grad = grad.clone() if p.grad is None else p.grad.copy_(grad)
        else:
            p.grad = None
        offset += n
    return flat[len(flat) - len(extras):].tolist()


def weighted_loss(loss: torch.Tensor, n_local: int, n_global: int,
                  parallel: Parallel) -> torch.Tensor:
    """``loss`` (a mean over this rank's tasks) weighted so that the summed gradients of all
    ranks are those of the mean over all tasks."""
    if not parallel.enabled:
        return loss
    return loss * (n_local / n_global)
