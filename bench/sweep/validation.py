"""One validation pass over a whole sweep, before anything trains or is written.

``bench run`` calls :func:`argument_problems` on the command line's numbers, then
:func:`sweep_problems` on every run configuration with its loaded dataset, and stops with exit
code 2 and one line per problem if there is any: nothing trains, no result, claim or checkpoint
is written. What is checked:

- ranges: ways >= 2, shots >= 1, queries >= 1, test episodes >= 1, seeds in torch's seed range;
- every method hyperparameter of every run (the budget's own and ``--hparam``'s) through the
  method's declaration (:meth:`methods.base.FewShotMethod.resolve_hparams`: type and range);
- the backbone and the budget's episode shapes (meta-batch, training shots and queries,
  validation episodes);
- every episode shape against the split it is drawn from (:func:`split_problem`): training
  episodes (ways, the budget's training shots and queries; for a method that trains on image
  batches, ``training_batches = "images"``: a batch of ``meta_batch`` images) on the train
  split, validation
  episodes (ways, the budget's validation shots or the run's shots, the run's queries) on the
  val split, test episodes (ways, shots, queries) on the test split. The loaded dataset knows
  its classes and images per class, so the check is exact (it is the episode sampler's).

Duplicates in the command line's lists (``--seeds 0,0``, ``--methods mtl,MTL``) are collapsed
by :func:`collapse_duplicates` with a note, so no run is trained twice in one command.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Hashable, Iterable, Sequence, TypeVar

from bench.common.config import RunConfig
from core.budget import schedule_problems
from datasets import ClassSplit, FewShotDataset
from methods.backbones import BACKBONES
from methods.plugins import method_class

T = TypeVar("T")

#: torch.manual_seed takes seeds 0 .. 2**64 - 1 (the episode streams take any seed >= 0).
MAX_SEED = 2**64 - 1


def _at_least(flag: str, values: Iterable[int], minimum: int, why: str) -> list[str]:
    return [f"{flag} {value}: must be at least {minimum} ({why})"
            for value in dict.fromkeys(values) if value < minimum]


def argument_problems(ways: int, shots: Sequence[int], queries: int, episodes: int,
                      seeds: Sequence[int]) -> list[str]:
    """What is wrong with the sweep's numbers, one line each (empty: nothing)."""
    problems = _at_least("--ways", [ways], 2, "an episode must tell classes apart")
    problems += _at_least("--shots", shots, 1, "support images per class")
    problems += _at_least("--queries", [queries], 1, "test query images per class; accuracy "
                                                     "is measured on them")
    problems += _at_least("--episodes", [episodes], 1, "test episodes")
    problems += [f"--seeds {seed}: must be between 0 and {MAX_SEED} (torch's seed range)"
                 for seed in dict.fromkeys(seeds) if not 0 <= seed <= MAX_SEED]
    return problems


def out_problem(out: Path, flag: str = "--out") -> str | None:
    """A results folder that is a file, or lies under one (nothing is created here)."""
    for path in (out, *out.parents):
        if path.exists():
            return None if path.is_dir() else (f"{flag} {out} is not writable: {path} is a "
                                               "file, not a folder")
    return None


def split_problem(split: ClassSplit, what: str, ways: int, shots: int, queries: int
                  ) -> str | None:
    """Why ``ways``-way episodes of ``shots`` + ``queries`` images per class cannot be drawn
    from ``split`` (None: they can); ``what`` says which episodes these are."""
    if ways < 2 or shots < 1 or queries < 0:
        return None  # a range problem, reported by argument_problems
    per_class = shots + queries
    eligible = sum(1 for n in split.class_sizes() if n >= per_class)
    if eligible >= ways:
        return None
    if ways > split.n_classes:
        return (f"{what}: {ways}-way episodes need {ways} classes, but the {split.name} split "
                f"has {split.n_classes}")
    return (f"{what}: {ways}-way episodes of {shots} shot(s) + {queries} queries need {ways} "
            f"classes with at least {per_class} images each, but only {eligible} of the "
            f"{split.name} split's {split.n_classes} classes have that many (largest: "
            f"{max(split.class_sizes(), default=0)} images)")


def config_problems(config: RunConfig, dataset: FewShotDataset) -> list[str]:
    """What is wrong with one run: its hyperparameters, budget and episode shapes."""
    budget = config.budget
    cls = method_class(config.method, config.method_source)
    problems = []
    try:
        cls.resolve_hparams(budget.hparams)
    except ValueError as error:
        problems.append(str(error))
    if budget.backbone.strip().lower() not in BACKBONES:
        problems.append(f"--backbone {budget.backbone!r}: unknown; valid backbones: "
                        f"{', '.join(BACKBONES)}")
    for field, minimum in (("meta_batch", 1), ("train_shots", 1), ("train_queries", 0),
                           ("val_episodes", 1), ("epochs", 1), ("steps_per_epoch", 1)):
        if getattr(budget, field) < minimum:
            problems.append(f"budget {budget.name!r} of {config.method} on {config.dataset}: "
                            f"{field} is {getattr(budget, field)}, must be at least {minimum}")
    problems += schedule_problems(budget)
    where = config.dataset  # the message says the episodes' shape where it matters
    val_shots = budget.val_shots or config.shots
    training = f"{where}, {config.method}'s training"
    budget_name = f"(budget {budget.name!r})"
    shapes = [(dataset.val, f"{where}, validation episodes", val_shots, config.queries),
              (dataset.test, f"{where}, test episodes", config.shots, config.queries)]
    if cls.training_batches == "images":  # batches of meta_batch images, one per task
        if (budget.train_shots, budget.train_queries) != (1, 0):
            problems.append(f"{training} {budget_name}: {config.method} trains on image "
                            "batches, one image per task, so its budget needs train_shots=1 "
                            f"and train_queries=0, not {budget.train_shots} and "
                            f"{budget.train_queries}")
        if budget.meta_batch > len(dataset.train):
            problems.append(f"{training} {budget_name}: batches of {budget.meta_batch} images, "
                            f"but the train split holds {len(dataset.train)}")
    else:
        shapes.insert(0, (dataset.train, f"{training} episodes {budget_name}",
                          budget.train_shots, budget.train_queries))
    for split, what, shots, queries in shapes:
        problem = split_problem(split, what, config.ways, shots, queries)
        if problem:
            problems.append(problem)
    return problems


def sweep_problems(configs: Sequence[RunConfig], datasets: dict[str, FewShotDataset]
                   ) -> list[str]:
    """:func:`config_problems` of every run, each distinct line once, in sweep order."""
    lines: dict[str, None] = {}
    for config in configs:
        for line in config_problems(config, datasets[config.dataset]):
            lines.setdefault(line)
    return list(lines)


def collapse_duplicates(values: Sequence[T], flag: str, key: Callable[[T], Hashable] = str,
                        show: Callable[[T], str] = str) -> tuple[list[T], str | None]:
    """``values`` with repeats (same ``key``) removed, first occurrence kept, and a note
    naming what was collapsed (None when nothing was)."""
    seen: dict[Hashable, T] = {}
    repeated: list[str] = []
    for value in values:
        k = key(value)
        if k in seen:
            repeated.append(show(value))
        else:
            seen[k] = value
    if not repeated:
        return list(values), None
    return list(seen.values()), (f"note: {flag} repeats {', '.join(repeated)}; each is done "
                                 "once")


def unique_runs(configs: Sequence[RunConfig]) -> tuple[list[RunConfig], str | None]:
    """One configuration per run key (two spellings of one run are one run)."""
    return collapse_duplicates(configs, "the sweep", key=lambda c: c.key, show=lambda c: c.key)
