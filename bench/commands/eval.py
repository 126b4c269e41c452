"""``python -m bench eval MODEL [MODEL ...]``: re-evaluate trained models
(:mod:`bench.store.model_files`) on any dataset with the model's channel count, any
ways/shots/queries/episodes/seed, either protocol, and a list of L2 penalties for the unified
head::

    python -m bench eval results/models/mtl_glyphs_5w5s_quick_seed0.pt \\
        --logreg-c 0.1,0.33,1,3,10 --episodes 2000 --out results
    python -m bench eval results/models/ --dataset omniglot --data-root ~/data/omniglot \\
        --shots 1,5 --protocol unified

Every setting left out is the model's own run's (its dataset, ways, shots, queries, test
episodes, seed, C, solver and precision), so ``bench eval MODEL`` reproduces the run's test
accuracies exactly. One eval result per (model, dataset, ways, shots, C, protocol, seed) goes
to ``<out>/evals/`` (:mod:`bench.api.evaluation`); ``bench table`` turns those into the L2
penalty table (the paper's Table 5). A model file that cannot be used (not a model file,
truncated, a checkpoint, a method that is not available here, images with other channels) is
reported in one line and the other models are evaluated; the exit status is then 1.

A model file is data: its bytes must be those its run's result recorded (when that result is
beside it, ``<out>/runs/<key>.json``), its weights finite, and a method it names by import
path (``method_source``) is imported only with ``--allow-import`` or that path given again
with ``--methods``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from bench.commands.config_file import add_config_argument
from bench.commands.import_options import add_import_arguments
from bench.common import options
from bench.common.arg_types import name_list
from bench.common.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE

HELP = ("re-evaluate trained models (<out>/models/*.pt): other data, shots, protocols, L2 "
        "penalties; one eval result each under <out>/evals")

if TYPE_CHECKING:
    import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``bench eval``'s options: its own, ``--config``, then ``--allow-import`` and
    ``--methods``."""
    parser.add_argument("models", type=Path, nargs="+", metavar="MODEL",
                        help="model files (<out>/models/<key>.pt, written by `bench run`) or "
                             "folders of them")
    parser.add_argument("--dataset", type=name_list, default=None,
                        help="dataset name(s), comma-separated (default: each model's own); "
                             "another dataset needs the model's channel count, and images of "
                             "another size are resized to the model's")
    options.add_data_root(parser, "folder with the dataset's files (as for `bench run`)")
    parser.add_argument("--allow-nonstandard", action="store_true",
                        help="use data that departs from the standard split (an empty class "
                             "folder, ...) with a warning instead of refusing it")
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="evaluate on the test split (default) or the validation split")
    options.add_ways(parser, None, "default: the model's run's")
    options.add_shots(parser, None, "e.g. 1,5 (default: the model's run's)")
    options.add_queries(parser, None, "queries per class (default: the model's run's)")
    parser.add_argument("--episodes", type=int, default=None,
                        help="episodes (default: the model's run's test episodes)")
    parser.add_argument("--seed", type=int, default=None,
                        help="episode seed: the episodes `bench run` tests a run of this seed "
                             "on (default: the model's run's seed)")
    parser.add_argument("--protocol", type=name_list, default=["unified", "native"],
                        help="unified, native or both (default); native is skipped for a "
                             "method without its own adaptation (it is the unified one)")
    parser.add_argument("--logreg-c", default=None, metavar="C[,C...]",
                        help="inverse L2 penalty(ies) of the unified head, comma-separated, "
                             "e.g. 0.1,0.33,1,3,10 (lambda = 1/C; default: the model's run's, "
                             "3 = the paper's lambda 0.33); features are computed once for all")
    options.add_solver(parser, None, "unified-protocol solver (default: the model's run's)")
    options.add_precision(parser, None, "default: the model's run's")
    options.add_device(parser)
    parser.add_argument("--out", type=Path, default=Path("results"),
                        help="results folder; eval results go to <out>/evals/")
    parser.add_argument("--force", action="store_true",
                        help="redo evals whose result exists (same model file and settings)")
    options.add_no_progress(parser)
    add_config_argument(parser)
    add_import_arguments(parser)


def _parse_Cs(text: str | None) -> list[float] | None:
    # here, not at the top: bench.api imports torch
    from bench.api import check_C

    if text is None:
        return None
    values = name_list(text)
    if not values:
        raise ValueError("--logreg-c: expected at least one value")
    try:
        return [check_C(v) for v in values]
    except ValueError as error:
        raise ValueError(f"--logreg-c: {error}") from None


def _model_files(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The files ``paths`` name (a folder: its ``*.pt``, sorted) and a message per path that
    names nothing."""
    files, problems = [], []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.pt"))
            if not found:
                problems.append(f"{path}: a folder without model files (*.pt)")
            files += found
        elif path.exists():
            files.append(path)
        else:
            problems.append(f"{path}: no such model file")
    return files, problems


def run(args: argparse.Namespace) -> int:
    """``bench eval``: every setting, dataset and model file checked first (one ``error:``
    line each), then every usable model evaluated; returns the exit code."""
    # here, not at the top: these import torch
    from bench.common import provenance
    from bench.store.checkpoint import StorageError
    from datasets import DatasetError

    try:
        Cs, names, device = _settings(args)
    except (ValueError, StorageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    dataset = _Datasets(args, names)
    if names is not None:  # the datasets asked for: bad input stops before any work
        try:
            for name in names:
                dataset(name)
        except DatasetError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE
    models, problems = _usable_models(args, names, dataset)
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if not models:
        print("error: no usable model file; nothing evaluated", file=sys.stderr)
        return EXIT_USAGE

    started, done = time.perf_counter(), []
    failed = list(problems)
    meta = provenance.collect(device)
    identities: dict[str, dict[str, str]] = {}
    try:
        for model in models:
            records, failures = _evaluate(model, args, Cs, names, dataset, identities, device,
                                          meta)
            done += records
            failed += failures
    except StorageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    _print_summary(done, failed, time.perf_counter() - started, args.out)
    return EXIT_FAILED if failed else EXIT_OK


def _settings(args: argparse.Namespace) -> tuple[list[float] | None, list[str] | None,
                                                  torch.device]:
    """The ``--logreg-c`` values, the dataset names asked for and the device, after every
    option is checked (ValueError or StorageError: what is wrong) and the methods the files
    may import are allowed."""
    # here, not at the top: these import torch
    from bench.run.training import resolve_device
    from bench.store.checkpoint import ensure_writable
    from bench.store.eval_files import PROTOCOLS
    from datasets import DATASETS
    from methods.plugins import allow_from_arguments

    allow_from_arguments(getattr(args, "allow_import", False), getattr(args, "methods", []))
    Cs = _parse_Cs(args.logreg_c)
    bad = [p for p in args.protocol if p not in PROTOCOLS]
    if bad or not args.protocol:
        raise ValueError(f"--protocol: {', '.join(bad) or 'none given'}; valid: "
                         f"{', '.join(PROTOCOLS)}")
    for flag, value in (("--ways", args.ways), ("--queries", args.queries),
                        ("--episodes", args.episodes)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    if args.shots is not None and min(args.shots) < 1:
        raise ValueError(f"--shots must be at least 1, got {min(args.shots)}")
    device = resolve_device(args.device)
    names = [DATASETS.canonical(d) for d in args.dataset] if args.dataset else None
    ensure_writable(args.out)
    return Cs, names, device


class _Datasets:
    """The datasets of the evaluations, each loaded once when first asked for (with several
    ``--dataset`` names, ``--data-root`` holds a folder per dataset)."""

    def __init__(self, args: argparse.Namespace, names: list[str] | None) -> None:
        self.args, self.names, self.loaded = args, names, {}

    def __call__(self, name: str) -> Any:
        from datasets import load_dataset  # here, not at the top: it imports torch

        if name not in self.loaded:
            several = self.names is not None and len(self.names) > 1
            root = self.args.data_root / name if several and self.args.data_root is not None \
                else self.args.data_root
            self.loaded[name] = load_dataset(name, root,
                                             allow_nonstandard=self.args.allow_nonstandard)
        return self.loaded[name]


def _usable_models(args: argparse.Namespace, names: list[str] | None,
                   dataset: _Datasets) -> tuple[list, list[str]]:
    """The model files of ``args.models`` that can be evaluated as asked (every one checked
    before any evaluation), and a line per file or path that cannot."""
    # here, not at the top: these import torch
    import torch

    from bench.api import native_ways_problem, rebuild_method
    from bench.api.evaluation import check_channels
    from bench.store.model_files import ModelFileError, read_model_file

    files, problems = _model_files(args.models)
    models = []
    for path in files:
        try:
            model = read_model_file(path)
            method = rebuild_method(model, torch.device("cpu"))  # available, weights fit
            for name in names or []:
                check_channels(model, dataset(name))
            fixed = native_ways_problem(method, model.config.ways, args.ways or model.config.ways)
            if fixed and "native" in args.protocol:
                raise ValueError(f"{model.path}: {fixed}")
            models.append(model)
        except (ModelFileError, ValueError) as error:
            problems.append(str(error))
    return models, problems


def _evaluate(model: Any, args: argparse.Namespace, Cs: list[float] | None,
              names: list[str] | None, dataset: _Datasets, identities: dict,
              device: torch.device, meta: dict) -> tuple[list[dict], list[str]]:
    """Every evaluation of one model; returns (records written or found, failure lines)."""
    # here, not at the top: these import torch
    from bench.api import LoadedModel, rebuild_method
    from bench.store.checkpoint import dataset_identity
    from bench.api.evaluation import evaluate_model
    from bench.store.model_files import ModelFileError
    from datasets import DatasetError

    records: list[dict] = []
    failures: list[str] = []
    config = model.config
    try:
        loaded = LoadedModel(model, rebuild_method(model, device), device)
    except ModelFileError as error:
        return records, [str(error)]
    if "native" in args.protocol and not loaded.has_native_adaptation:
        tqdm.write(f"{model.key}: its method has no native adaptation of its own; its native "
                   "protocol is the unified one (evaluated once, as unified)")
    for name in names or [config.dataset]:
        try:
            data = dataset(name)
        except DatasetError as error:
            failures.append(f"{model.path}: {error}")
            tqdm.write(f"error: {failures[-1]}")
            continue
        if name not in identities:
            identities[name] = dataset_identity(data)
        for shots in args.shots or [config.shots]:
            settings = _eval_settings(args, config, data.name, shots)
            tqdm.write(f"{model.key} on {data.name} {settings.split}: {settings.ways}-way "
                       f"{shots}-shot, {settings.queries} queries, {settings.episodes} "
                       f"episodes, seed {settings.seed}")
            try:
                outcomes = evaluate_model(
                    loaded, data, identities[name], settings, args.protocol,
                    Cs or [config.logreg_c], args.out, meta, force=args.force,
                    progress=not args.no_progress)
            except ValueError as error:  # e.g. too few classes for these ways
                failures.append(f"{model.path}: {error}")
                tqdm.write(f"error: {failures[-1]}")
                continue
            _collect(outcomes, records, failures)
    return records, failures


def _eval_settings(args: argparse.Namespace, config: Any, dataset: str, shots: int) -> Any:
    """One evaluation's :class:`bench.store.eval_files.EvalSettings`: each setting the command
    line's, else that of the model's run (``config``)."""
    from bench.store.eval_files import EvalSettings  # here, not at the top: it imports torch

    return EvalSettings(
        dataset=dataset, split=args.split, ways=args.ways or config.ways,
        shots=shots, queries=args.queries or config.queries,
        episodes=args.episodes or config.episodes,
        seed=config.seed if args.seed is None else args.seed,
        solver=args.solver or config.solver,
        precision=args.precision or config.precision)


def _collect(outcomes: list, records: list[dict], failures: list[str]) -> None:
    """Each outcome of one evaluation into ``records`` (written or found) or ``failures``,
    with a line each."""
    from bench.store.eval_files import read_eval  # here, not at the top: it imports torch

    for outcome in outcomes:
        if outcome.status == "failed":
            failures.append(outcome.message)
            tqdm.write(outcome.message)
            continue
        record = outcome.record or read_eval(outcome.path)
        records.append(record)
        tqdm.write(outcome.message if outcome.status == "skipped" else
                   f"done {outcome.key}: {_cell(record)} -> {outcome.path}")


def _cell(record: dict) -> str:
    r = record["result"]
    return f"{r['mean']:.2f} ± {r['ci95']:.2f}%"


def _print_summary(records: list[dict], failed: list[str], seconds: float, out: Path) -> None:
    if records:
        print("\n| model | data | ways | shots | protocol | C | lambda = 1/C | accuracy (%) "
              "| episodes |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in records:
            s = r["settings"]
            C = s["logreg_c"]
            print(f"| {r['source_model']['key']} | {s['dataset']} {s['split']} | {s['ways']} | "
                  f"{s['shots']} | {s['protocol']} | {'–' if C is None else f'{C:g}'} | "
                  f"{'–' if C is None else f'{1 / C:.3g}'} | {_cell(r)} | {s['episodes']} |")
    print(f"\n{len(records)} eval result(s) in {out}/evals, {len(failed)} failed, "
          f"{seconds:.0f} s")
