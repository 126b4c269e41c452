"""``python -m bench speed``: steady-state training throughput of every method next to its bare
backbone, and the paper-budget device-hours it implies.

Wang, Zhao & Li (ICML 2021, Sec. 5.2, Table 4) report that MTL trains about 23x faster than
MetaOptNet-SVM (Lee et al., CVPR 2019) on mini-ImageNet 5-way 5-shot (3.7 vs 85.6 GPU-hours).
This command measures where that time goes, per method:

* the **training step** exactly as a run takes it, built by :func:`bench.run.training.build_training`
  and run by :func:`bench.run.training.train_step` (episode sampling, gathering on the device,
  augmentation, forward, backward, optimiser step), under the method's
  budget (``paper`` by default: the episode shape, backbone and feature mode of the original
  papers), the run's precision policy (:mod:`bench.common.precision`) and memory format
  (:func:`bench.run.training.prepare_for_device`: channels_last on CUDA, optional ``torch.compile``);
* a **bare backbone** forward+backward on images of the same batch shape (the method's
  meta-batch x images per task), same precision and memory format, no head, no data path and
  no optimiser step: the floor the method's step is compared with.

Steady state: ``--warmup`` steps run first and are excluded (the first of them, reported apart
as ``first_step_s``, holds any compilation and allocator/cuDNN warm-up); then each of ``--steps``
steps is timed alone between two synchronised clock reads (:class:`bench.common.timing.SectionTimer`:
the device is synchronised before every read). Median and mean are over the timed steps.
FLOPs of one step are counted once, eagerly, with ``torch.utils.flop_counter.FlopCounterMode``
(matrix products and convolutions, forward and backward; element-wise work and qpth's
factorisations beyond its batched products are not counted), before any timing.

* the **validation** of one epoch: ``--val-episodes`` episodes of the budget's validation
  shape (after one excluded warm-up episode), under the selection protocol a run would use
  (``--select-on``, unified by default, with the run's solver and C), timed as a run's
  validation is; seconds per episode x the budget's validation episodes gives an epoch's
  validation time, which the run device-hours add to the training steps' (the paper's
  GPU-hours are whole training runs, validation included).

Images are synthetic uint8 (no dataset files needed) with the dataset's channels, image size
and number of training classes; images/s counts each image of the meta-batch once per step,
as ``images_seen`` in a run's result does. The extrapolation to whole budgets and the printed
report are :mod:`bench.cost.speed_report`'s.
"""
from __future__ import annotations

import argparse
import copy
import gc
import math
import statistics
import sys
import traceback
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
from torch import nn

from bench.common import provenance
from bench.common.config import RunConfig, resolve_budget
from bench.common.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from bench.common.precision import autocast
from bench.common.timing import TIMING_RULE, SectionTimer
from bench.cost.speed_args import DEFAULT_OUT  # noqa: F401  (bench.cost.speed's API)
from bench.cost.speed_args import add_arguments
from bench.cost.speed_report import (REFERENCE_CSV, backend_settings, budget_projection,
                                     extrapolate, format_report, report_path,)
from bench.run.evaluate import evaluate_native, evaluate_unified
from bench.run.training import (build_method, build_training, images_per_task, prepare_for_device,
                                resolve_device, stream_seed, train_step,)
from core.atomic import write_json_atomic
from core.budget import TrainBudget
from core.registry import UnknownNameError
from datasets import DATASETS, DatasetInfo, efficiency_reference
from datasets.augment import Normalizer, augmentation_applies
from datasets.base import ClassSplit, FewShotDataset
from datasets.episodes import EpisodeLoader, EpisodeSampler
from methods import METHODS
from methods.plugins import method_class, resolve_method

SPEED_SCHEMA = "bridgebench.speed/1"
FLOP_NOTE = ("FLOPs of one step counted once with torch.utils.flop_counter.FlopCounterMode "
             "(matmul/bmm/conv and their backward, 2 FLOPs per multiply-add; element-wise ops "
             "and non-matmul linear algebra are not counted)")
#: Compiled runs: warm-up steps run beyond ``--warmup`` until one compiles no new graph.
MAX_SETTLE_STEPS = 10
CPU_MEMORY_NOTE = "peak device memory is measured on CUDA only; on a CPU it is reported as None"


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


@dataclass
class StepTiming:
    """Wall-clock seconds of timed steps (warm-up apart) and images processed per step."""

    seconds: list[float]
    warmup_seconds: list[float]
    images: list[int]

    @property
    def median(self) -> float:
        return float(statistics.median(self.seconds))

    @property
    def mean(self) -> float:
        return float(statistics.fmean(self.seconds))

    @property
    def images_per_step(self) -> int:
        return int(self.images[0]) if self.images else 0

    @property
    def images_per_second(self) -> float:
        """Images of one step over the median step time."""
        return self.images_per_step / self.median if self.median > 0 else math.nan

    @property
    def first_step(self) -> float | None:
        """The first warm-up step alone (holds any compilation), or None without warm-up."""
        return self.warmup_seconds[0] if self.warmup_seconds else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "median_s": self.median, "mean_s": self.mean,
            "min_s": min(self.seconds), "max_s": max(self.seconds),
            "times_s": [round(s, 6) for s in self.seconds],
            "first_step_s": self.first_step, "warmup_s": sum(self.warmup_seconds),
            "warmup_steps": len(self.warmup_seconds),
            "images_per_step": self.images_per_step,
            "images_per_s": self.images_per_second,
            "images_per_s_mean": (sum(self.images) / sum(self.seconds)
                                  if sum(self.seconds) > 0 else math.nan),
        }


def time_steps(step: Callable[[], int], steps: int, warmup: int, timer: SectionTimer,
               after_warmup: Callable[[], None] | None = None,
               graphs: Callable[[], int] | None = None) -> StepTiming:
    """Run ``warmup`` steps, then time each of ``steps`` steps alone.

    ``step`` performs one step and returns the number of images it processed. Every step,
    warm-up included, lies between two :meth:`SectionTimer.now` reads, each of which
    synchronises the device first; warm-up seconds are kept apart and excluded from the
    statistics. ``after_warmup`` is called once between the two phases (untimed).

    ``graphs`` (compiled runs: the number of graphs compiled so far) makes the warm-up go on,
    by up to :data:`MAX_SETTLE_STEPS` steps, until a warm-up step compiles nothing, so the
    timed steps are steady-state ones (at least one warm-up step runs then).
    """
    if steps < 1:
        raise ValueError(f"--steps must be at least 1, got {steps}")
    if warmup < 0:
        raise ValueError(f"--warmup must be 0 or more, got {warmup}")
    warm: list[float] = []
    compiled = graphs() if graphs is not None else 0
    for done in range(warmup + (MAX_SETTLE_STEPS if graphs is not None else 0)):
        if done >= max(warmup, 1) and (graphs is None or graphs() == compiled):
            break  # the last warm-up step compiled nothing: steady state
        compiled = graphs() if graphs is not None else 0
        start = timer.now()
        step()
        warm.append(timer.now() - start)
    if after_warmup is not None:
        after_warmup()
    seconds: list[float] = []
    images: list[int] = []
    for _ in range(steps):
        start = timer.now()
        n = step()
        seconds.append(timer.now() - start)
        images.append(int(n))
    return StepTiming(seconds, warm, images)


def count_flops(step: Callable[[], Any]) -> int:
    """Floating-point operations of one call of ``step`` (forward and backward matrix work)."""
    from torch.utils.flop_counter import FlopCounterMode  # here: it loads triton; only measuring needs it

    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


# --------------------------------------------------------------------------------------------
# Synthetic data and configuration
# --------------------------------------------------------------------------------------------


def _split(name: str, n_classes: int, per_class: int, shape: tuple[int, int, int],
           first: int, generator: torch.Generator) -> ClassSplit:
    images = torch.randint(0, 256, (n_classes * per_class, *shape), dtype=torch.uint8,
                           generator=generator)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    names = tuple(f"synthetic-{first + k:05d}" for k in range(n_classes))
    return ClassSplit(name, images, labels, names)


def synthetic_dataset(name: str, image_size: int, channels: int, n_train_classes: int,
                      per_class: int, seed: int = 0, val_classes: int = 5,
                      val_per_class: int | None = None) -> FewShotDataset:
    """A :class:`FewShotDataset` of random uint8 images with a real dataset's name, image
    shape and number of training classes; ``val_classes`` x ``val_per_class`` (default
    ``per_class``) validation images, for timing validation episodes; test: 5 classes
    (unused here)."""
    generator = torch.Generator().manual_seed(seed)
    shape = (channels, image_size, image_size)
    train = _split("train", n_train_classes, per_class, shape, 0, generator)
    val = _split("val", val_classes, val_per_class or per_class, shape, n_train_classes,
                 generator)
    test = _split("test", 5, per_class, shape, n_train_classes + val_classes, generator)
    return FewShotDataset(name=name, train=train, val=val, test=test,
                          mean=(0.5,) * channels, std=(0.25,) * channels,
                          source=f"synthetic uint8 noise for bench speed (seed {seed})")


def dataset_shape(name: str | None, image_size: int | None) -> tuple[str, int, int]:
    """Canonical dataset name (default: the dataset that declares ``efficiency_reference``,
    the one the paper's Table 4 was timed on), image size (default: the dataset's own) and
    channels."""

    info = DATASETS.get(name) if name is not None else efficiency_reference()
    size = image_size if image_size is not None else info.image_size
    return info.name, size, info.channels


def budget_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The budget fields the command line overrides (meta-batch, backbone, episode shape)."""
    return {key: value for key, value in (
        ("meta_batch", args.meta_batch), ("backbone", args.backbone),
        ("feature_mode", args.feature_mode), ("train_shots", args.train_shots),
        ("train_queries", args.train_queries)) if value is not None}


def speed_budget(method: str, dataset: str, shots: int, args: argparse.Namespace) -> TrainBudget:
    """The budget whose episode shape is measured, with the command line's overrides."""
    budget = resolve_budget(args.budget, method, dataset, shots)
    overrides = budget_overrides(args)
    return replace(budget, **overrides) if overrides else budget


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------


class _BackboneOnly(nn.Module):
    """Holds a bare backbone where :func:`bench.run.training.prepare_for_device` expects a method."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone


def _reset_peak(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return int(torch.cuda.memory_allocated(device))


def _peak(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device))


def dynamo_graphs() -> int:
    """Graphs torch.compile (dynamo) has compiled so far in this process."""
    from torch._dynamo.utils import counters  # here: dynamo loads sympy; compiled runs only

    return int(counters["stats"]["unique_graphs"])


def dynamo_gave_up() -> int:
    """Times dynamo hit its recompile limit (and ran a frame eagerly from then on)."""
    from torch._dynamo.utils import counters  # here: dynamo loads sympy; compiled runs only

    return sum(int(n) for key, n in counters["unimplemented"].items()
               if "recompile" in str(key).lower())


def _measure(step: Callable[[], int], compile_fn: Callable[[], None] | None, steps: int,
             warmup: int, device: torch.device, timer_factory: Callable[[], SectionTimer]
             ) -> dict[str, Any]:
    """FLOPs (eager, once), then compile if asked, then the timed steps and peak memory.

    Compiled runs start from empty dynamo caches and also report how many graphs dynamo
    compiled during the timed steps: in a steady state that is 0; anything else means
    recompilation inside the timed steps.
    """
    flops = count_flops(step)
    if compile_fn is not None:
        import torch._dynamo  # here: dynamo loads sympy; compiled runs only

        torch._dynamo.reset()  # as in a fresh process: no graphs cached by an earlier model
        gave_up = dynamo_gave_up()
        compile_fn()
    at_start = _reset_peak(device)
    graphs: list[int] = []
    timing = time_steps(step, steps, warmup, timer_factory(),
                        after_warmup=(lambda: graphs.append(dynamo_graphs()))
                        if compile_fn is not None else None,
                        graphs=dynamo_graphs if compile_fn is not None else None)
    out = timing.to_dict()
    if compile_fn is not None:
        out["compile"] = {"graphs_compiled_while_timed": dynamo_graphs() - graphs[0],
                          "graphs_compiled_total": dynamo_graphs(),
                          "recompile_limit_hit": dynamo_gave_up() > gave_up}
    out.update({
        "flops_per_step": flops,
        "tflops_per_s": flops / timing.median / 1e12 if timing.median > 0 else math.nan,
        "peak_memory_bytes": _peak(device),
        "memory_at_start_bytes": at_start,
    })
    return out


def measure_method(config: RunConfig, dataset: FewShotDataset, device: torch.device,
                   steps: int, warmup: int,
                   timer_factory: Callable[[], SectionTimer] | None = None,
                   info: DatasetInfo | None = None, val_episodes: int = 0) -> dict[str, Any]:
    """Time ``config``'s training step, a bare backbone on the same batch shape and (with
    ``val_episodes``) its validation."""
    timer_factory = timer_factory or (lambda: SectionTimer(device))
    result, bare, images = measure_training_step(config, dataset, device, steps, warmup,
                                                 timer_factory, info)
    _free(device)  # the method, its optimiser state and the dataset copy are gone by now
    result["backbone_step"] = measure_backbone(bare, images, config, device, steps, warmup,
                                               timer_factory)
    _free(device)
    if val_episodes > 0:
        result["validation"] = measure_validation(config, dataset, device, val_episodes,
                                                  timer_factory)
    return result


def measure_validation(config: RunConfig, dataset: FewShotDataset, device: torch.device,
                       episodes: int, timer_factory: Callable[[], SectionTimer]
                       ) -> dict[str, Any]:
    """Seconds per validation episode of ``config`` as a run validates
    (:meth:`bench.run.session.TrainSession.validate`: its selection protocol, solver and C, on
    eval-mode features), timed over ``episodes`` episodes after one excluded warm-up."""

    budget = config.budget
    torch.manual_seed(config.seed)
    method = prepare_for_device(build_method(config, dataset), config.with_overrides(
        compile=False), device)
    loader = EpisodeLoader(dataset.val, Normalizer(dataset.mean, dataset.std), device)
    sampler = EpisodeSampler(dataset.val, config.ways, budget.val_shots or config.shots,
                             config.queries, stream_seed(config.seed, "val"))
    native = config.select_on == "native" and method.has_native_adaptation

    def validate(n: int) -> None:
        part = sampler.sample(n)
        if native:
            evaluate_native(method, loader, part, precision=config.precision, selection=True)
        else:
            evaluate_unified(method, loader, part, solver=config.solver, C=config.logreg_c,
                             precision=config.precision)

    validate(1)  # warm-up: first calls, imports, allocator
    timer = timer_factory()
    with timer.section("validation"):
        validate(episodes)
    seconds = timer.total("validation")
    return {"protocol": "native" if native else "unified",
            "solver": None if native else config.solver, "episodes_timed": episodes,
            "seconds": seconds, "seconds_per_episode": seconds / episodes}


def measure_training_step(config: RunConfig, dataset: FewShotDataset, device: torch.device,
                          steps: int, warmup: int, timer_factory: Callable[[], SectionTimer],
                          info: DatasetInfo | None = None
                          ) -> tuple[dict[str, Any], nn.Module, torch.Tensor]:
    """Time the training step of ``config`` as a run takes it: built by
    :func:`bench.run.training.build_training` (``info``: the dataset's registry entry, adjusted to
    the synthetic images) and run by :func:`bench.run.training.train_step`.

    Returns the measurement, an eager copy of the method's initial backbone (on the CPU) and
    one meta-batch of training images ``[T*N, C, H, W]`` drawn the same way, for the bare
    backbone measurement.
    """

    budget = config.budget
    # Compiled (if asked) after the FLOP count, below, so the count runs eagerly.
    training = build_training(config.with_overrides(compile=False), dataset, device, info=info)
    method = training.method
    method.train()
    # Taken before anything is compiled or trained; it waits on the CPU so that it does not
    # count towards the method's peak memory.
    bare = copy.deepcopy(method.backbone).to("cpu")

    def method_step() -> int:
        return train_step(method, training.optimizer, training.loader, training.sampler,
                          budget.meta_batch, config.precision)[1]

    compile_method = method.backbone.compile if config.compile else None
    result: dict[str, Any] = {"augmentation": training.augmentation or "normalize only"}
    result["step"] = _measure(method_step, compile_method, steps, warmup, device, timer_factory)
    batch = training.loader.load(training.sampler.sample(budget.meta_batch))
    images = batch.images.flatten(0, 1).contiguous()
    return result, bare, images


def measure_backbone(backbone: nn.Module, images: torch.Tensor, config: RunConfig,
                     device: torch.device, steps: int, warmup: int,
                     timer_factory: Callable[[], SectionTimer]) -> dict[str, Any]:
    """Bare forward+backward of ``backbone`` on ``images`` [N, C, H, W].

    Prepared like the method's (:func:`bench.run.training.prepare_for_device`: memory format, and
    compiled after the FLOP count if the run compiles), same precision, and its DropBlock
    schedule advances once per step as the method's does; the loss is the mean square of the
    features (no head), and there is no data path and no optimiser step.
    """

    holder = prepare_for_device(_BackboneOnly(backbone), config.with_overrides(compile=False),
                                device)
    holder.train()

    def step() -> int:
        with autocast(device, config.precision):
            features = holder.backbone(images)
        loss = features.float().square().mean()
        holder.zero_grad(set_to_none=True)
        loss.backward()
        holder.backbone.advance_schedule()
        return int(images.shape[0])

    compile_fn = holder.backbone.compile if config.compile else None
    return _measure(step, compile_fn, steps, warmup, device, timer_factory)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _check_args(args: argparse.Namespace) -> None:
    for name in ("steps", "meta_batch", "train_shots", "assume_epochs", "image_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be 0 or more, got {args.warmup}")
    if args.val_episodes < 0:
        raise ValueError(f"--val-episodes must be 0 or more, got {args.val_episodes}")
    if args.queries < 1:
        raise ValueError(f"--queries must be at least 1, got {args.queries}")
    if args.train_queries is not None and args.train_queries < 1:
        raise ValueError(f"--train-queries must be at least 1, got {args.train_queries}")


def measure_all(args: argparse.Namespace, device: torch.device,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure every requested method; a method that fails costs its row, not the run."""

    _check_args(args)
    sources = dict(resolve_method(m) for m in (args.methods or METHODS.names()))
    methods = list(sources)
    name, size, channels = dataset_shape(args.dataset, args.image_size)
    budgets = {m: speed_budget(m, name, args.shots, args) for m in methods}
    val_per_class = max((b.val_shots or args.shots) + args.queries for b in budgets.values())

    # The standard split's number of training classes, so MTL's head matrix has its real size;
    # enough images per class for every episode, and for every batch of images.
    info = DATASETS.get(name)
    per_class = max(max(b.train_shots + b.train_queries,
                        -(-b.meta_batch // info.train_classes)
                        if method_class(m, sources[m]).training_batches == "images" else 1)
                    for m, b in budgets.items())
    dataset = synthetic_dataset(name, size, channels, info.train_classes, per_class, args.seed,
                                val_classes=max(5, args.ways), val_per_class=val_per_class)
    # The budget's augmentation (the dataset's declared one, or none), at the measured image
    # size where it is defined there (--image-size may ask for another; then the step runs
    # without augmentation).
    applies = augmentation_applies(info.train_augmentation, size)
    info = replace(info, image_size=size,
                   train_augmentation=info.train_augmentation if applies else None)
    entries: list[dict[str, Any]] = []
    for method in methods:
        budget = budgets[method]
        if not augmentation_applies(budget.augmentation, size):
            budget = replace(budget, augmentation=None)
        config = RunConfig(method=method, dataset=name, ways=args.ways, shots=args.shots,
                           seed=args.seed, budget=budget, precision=args.precision,
                           compile=args.compile, queries=args.queries, solver=args.solver,
                           select_on=args.select_on, method_source=sources[method])
        budget = config.budget
        entry: dict[str, Any] = {
            "method": method, "display_name": METHODS.get(method).display_name,
            "backbone": budget.backbone, "feature_mode": budget.feature_mode,
            "meta_batch": budget.meta_batch,
            "images_per_task": images_per_task(method_class(method, sources[method]),
                                               args.ways, budget),
            "budget": budget.to_dict(),
        }
        if progress:
            progress(f"measuring {method} ({budget.backbone}/{budget.feature_mode}, "
                     f"{budget.meta_batch} x {entry['images_per_task']} images per step)")
        try:
            entry.update(measure_method(config, dataset, device, args.steps, args.warmup,
                                        info=info, val_episodes=args.val_episodes))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:  # one failing method (e.g. out of memory) costs its row
            entry["error"] = " ".join(f"{type(error).__name__}: {error}".split())
            entry["traceback"] = "".join(traceback.format_exception(error))[-3000:]
        finally:
            _free(device)
        if "error" not in entry:
            entry["throughput_ratio"] = (entry["step"]["images_per_s"]
                                         / entry["backbone_step"]["images_per_s"])
            entry["paper_budget"] = budget_projection(entry, args.assume_epochs)
        entries.append(entry)
    info = provenance.collect(device)
    return {
        "schema": SPEED_SCHEMA,
        "device": info["device"], "device_type": device.type,
        "torch": torch.__version__, "precision": args.precision, "image_size": size,
        "channels": channels, "dataset": name, "ways": args.ways, "shots": args.shots,
        "budget": args.budget, "compile": bool(args.compile),
        "channels_last": device.type == "cuda", "steps": args.steps, "warmup": args.warmup,
        "assume_epochs": args.assume_epochs, "timing_rule": TIMING_RULE,
        "steady_state": (f"{args.warmup} warm-up steps excluded; each of {args.steps} steps "
                         "timed alone between synchronised clock reads; median and mean"),
        "flop_note": FLOP_NOTE,
        "memory_note": ("torch.cuda.max_memory_allocated over the timed steps (includes the "
                        "synthetic dataset held on the device)" if device.type == "cuda"
                        else CPU_MEMORY_NOTE),
        "backends": backend_settings(device),
        "provenance": info,
        "methods": entries,
        "val_episodes": args.val_episodes, "select_on": args.select_on,
        "budget_overrides": budget_overrides(args),
        "extrapolation": extrapolate(entries, args.assume_epochs, REFERENCE_CSV,
                                     budget_overrides(args)),
    }


def run(args: argparse.Namespace) -> int:
    """``python -m bench speed``: measure, print the table, write the JSON report."""

    device = resolve_device(args.device)
    report = measure_all(args, device, progress=lambda m: print(m, file=sys.stderr,
                                                                flush=True))
    path = report_path(args.out, report["device"], report["precision"], report["image_size"],
                       report["compile"], report["dataset"], report["ways"], report["shots"])
    write_json_atomic(path, report)
    print(format_report(report))
    print(f"(written to {path})")
    failed = [e["method"] for e in report["methods"] if "error" in e]
    if failed:
        print(f"error: {len(failed)} method(s) failed: {', '.join(failed)} (traceback in the "
              "JSON report)", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m bench.cost.speed`` (same options as ``bench speed``)."""

    parser = argparse.ArgumentParser(prog="python -m bench speed", description=__doc__.split(
        "\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (UnknownNameError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
