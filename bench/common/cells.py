"""Which runs answer the same question: the cells and arms of the paired tables.

A *cell* holds the runs that one question compares across methods: the same dataset, ways,
shots and budget name, and the same sweep-wide settings (every entry of the run config that
is not in :data:`ARM_FIELDS` or :data:`REPLICATE_FIELDS`: queries, test episodes, precision,
solver, the unified head's C, ...) and the data's fingerprint where the result records one
(two contents of one dataset are two questions, as in :func:`bench.report.table.experiments`). An
*arm* is one trained configuration inside a cell: the method and its whole resolved budget
(backbone, optimiser, schedule, hyperparameters, ...).
The seeds of one arm are its replicates. Two arms of the same method differ in some setting:
they are told apart by a ``variant`` label ("backbone=conv4-32") and never averaged.

Used by :mod:`bench.report.compare` (paired differences against a baseline) and
:mod:`bench.report.cost_curves` (time to accuracy). Pure functions of loaded result dicts (the
schema of :mod:`bench.store.results`); no method or dataset is named here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

#: Config entries that belong to a method's arm rather than to the cell. A config entry that a
#: method sets for itself (rather than the sweep) must be listed here, or every method would
#: land in a cell of its own (and the tables would say the baseline is missing).
ARM_FIELDS: tuple[str, ...] = ("method", "method_source", "budget")
#: Config entries that tell replicates of one arm apart, and those that record more without
#: changing a number (``--test-every``, ``--log``, :data:`bench.common.config.RECORDING_OPTIONS`).
REPLICATE_FIELDS: tuple[str, ...] = ("seed", "test_every", "test_every_episodes", "log")
#: Cell settings that are always shown as columns of their own.
CELL_COLUMNS: tuple[str, ...] = ("dataset", "ways", "shots", "budget")


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict with dotted keys; lists become tuples (hashable)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, list):
            flat[name] = tuple(value)
        else:
            flat[name] = value
    return flat


def _format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value)


def _canonical(mapping: Mapping[str, Any]) -> str:
    return json.dumps(mapping, sort_keys=True, default=str)


def cell_settings(config: Mapping[str, Any],
                  arm_fields: Sequence[str] = ARM_FIELDS) -> dict[str, Any]:
    """The sweep-wide settings of a run (flattened), the budget's name included."""
    settings = {k: v for k, v in config.items()
                if k not in arm_fields and k not in REPLICATE_FIELDS}
    budget = config.get("budget")
    settings["budget"] = budget.get("name") if isinstance(budget, Mapping) else budget
    return flatten(settings)


def arm_settings(config: Mapping[str, Any],
                 arm_fields: Sequence[str] = ARM_FIELDS) -> dict[str, Any]:
    """The method-specific settings of a run (flattened, without the budget's name)."""
    flat = flatten({k: config[k] for k in arm_fields if k in config})
    flat.pop("budget.name", None)
    return flat


def distinguishing(settings: Sequence[Mapping[str, Any]],
                   strip: Sequence[str] = ()) -> list[str]:
    """For each flattened settings dict, "key=value, ..." over the keys whose values are not
    the same in all of them (a key missing in some counts as differing). ``strip`` removes
    leading prefixes from the displayed keys ("budget." -> "backbone=...")."""
    keys = sorted({k for s in settings for k in s})
    varying = [k for k in keys
               if len({_canonical({"v": s.get(k, "<unset>")}) for s in settings}) > 1]

    def shown(key: str) -> str:
        for prefix in strip:
            if key.startswith(prefix):
                return key[len(prefix):]
        return key

    return [", ".join(f"{shown(k)}={_format_value(s[k]) if k in s else '<unset>'}"
                      for k in varying) for s in settings]


@dataclass
class Arm:
    """One method configuration in a cell: its runs by seed (finished and failed)."""

    method: str
    settings: dict[str, Any]
    variant: str = ""
    runs: dict[int, Mapping[str, Any]] = field(default_factory=dict)  # seed -> finished run
    failed_seeds: set[int] = field(default_factory=set)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.runs)

    def native_is_unified(self) -> bool:
        return any(bool(r.get("native_is_unified")) for r in self.runs.values())


@dataclass
class Cell:
    """The runs of one question: the same dataset, ways, shots, budget and sweep settings."""

    dataset: str
    ways: int
    shots: int
    budget: str
    settings: dict[str, Any]
    label: str = ""  # the settings that tell this cell from others with the same columns
    arms: list[Arm] = field(default_factory=list)

    def columns(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "ways": self.ways, "shots": self.shots,
                "budget": self.budget, "settings": self.label}


def _run_name(run: Mapping[str, Any]) -> str:
    return str(run.get("key") or _canonical(run.get("config", {})))


def group_cells(results: Iterable[Mapping[str, Any]],
                arm_fields: Sequence[str] = ARM_FIELDS) -> list[Cell]:
    """Group result dicts into cells and arms, sorted for stable output.

    Finished runs (``status == "ok"``) fill ``Arm.runs``; failed runs are remembered by seed
    so a table can say "failed" rather than "missing". Two finished results for one arm and
    seed are an error (the same run twice: a copied folder?), named by their keys.
    """
    cells: dict[str, Cell] = {}
    arms: dict[tuple[str, str], Arm] = {}
    for run in results:
        config = run["config"]
        cell_flat = cell_settings(config, arm_fields)
        data = run.get("data")
        if isinstance(data, Mapping) and data.get("fingerprint"):  # another dataset's contents
            cell_flat["data"] = str(data["fingerprint"])[:8]  # is another question
        cell_id = _canonical(cell_flat)
        if cell_id not in cells:
            cells[cell_id] = Cell(dataset=str(config["dataset"]), ways=int(config["ways"]),
                                  shots=int(config["shots"]),
                                  budget=str(cell_flat.get("budget")),
                                  settings=cell_flat)
        arm_flat = arm_settings(config, arm_fields)
        arm_id = (cell_id, _canonical(arm_flat))
        if arm_id not in arms:
            arms[arm_id] = Arm(method=str(config["method"]), settings=arm_flat)
            cells[cell_id].arms.append(arms[arm_id])
        arm = arms[arm_id]
        seed = int(config["seed"])
        if run.get("status") != "ok":
            arm.failed_seeds.add(seed)
        elif seed in arm.runs:
            raise ValueError(f"two finished results for the same run and seed {seed}: "
                             f"{_run_name(arm.runs[seed])} and {_run_name(run)}; "
                             "remove one of them")
        else:
            arm.runs[seed] = run
    for arm in arms.values():
        arm.failed_seeds -= set(arm.runs)  # a later success replaces a failure record
    _label_cells(list(cells.values()))
    ordered = sorted(cells.values(), key=lambda c: (c.dataset.lower(), c.ways, c.shots,
                                                    c.budget, c.label))
    for cell in ordered:
        _label_arms(cell)
        cell.arms.sort(key=lambda a: (a.method.lower(), a.variant))
    return ordered


def _label_cells(cells: list[Cell]) -> None:
    by_columns: dict[tuple, list[Cell]] = {}
    for cell in cells:
        by_columns.setdefault((cell.dataset, cell.ways, cell.shots, cell.budget), []).append(cell)
    for group in by_columns.values():
        labels = distinguishing([c.settings for c in group])
        for cell, label in zip(group, labels):
            cell.label = label


def _label_arms(cell: Cell) -> None:
    by_method: dict[str, list[Arm]] = {}
    for arm in cell.arms:
        by_method.setdefault(arm.method, []).append(arm)
    for group in by_method.values():
        labels = distinguishing([a.settings for a in group], strip=("budget.",))
        for arm, label in zip(group, labels):
            arm.variant = label


def seeds_text(seeds: Iterable[int]) -> str:
    """"0, 1, 2" (sorted)."""
    return ", ".join(str(s) for s in sorted(seeds))


def unpaired_seed_notes(arm: Arm, other: Arm, arm_name: str, other_name: str) -> list[str]:
    """Why seeds of one arm have no partner in the other, for a paired table's notes:
    "``other_name`` failed for seed 1" (the other arm recorded a failure there) or "no
    ``other_name`` result for seed 2", then the same for ``arm_name``."""
    notes: list[str] = []
    for side, mine, theirs in ((other_name, arm, other), (arm_name, other, arm)):
        only = set(mine.runs) - set(theirs.runs)
        failed = only & theirs.failed_seeds
        if failed:
            notes.append(f"{side} failed for seed {seeds_text(failed)}")
        if only - failed:
            notes.append(f"no {side} result for seed {seeds_text(only - failed)}")
    return notes
