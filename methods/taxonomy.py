"""The paper's Table 1: where each method stands among gradient-based meta-learning algorithms.

Wang, Zhao & Li (ICML 2021, Sec. 4.1, Table 1) sort gradient-based meta-learning (GBML) by the
design of its inner loop (their Eq. 4): which layers it optimises (the last layer only, or all
layers) and how it is regularised (early stopping, i.e. a few gradient steps, or an explicit
L2 term). A method class declares its cell as ``table1 = Table1Cell(layers, regulariser)``,
or, when it has no inner loop at all (MTL, supervised pre-training, prototypes), that it stands
outside the table and why: ``table1 = OutsideTable1("...")``. :func:`format_table1` renders the
grid from the registered classes (``bench list``; the README shows its output).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

LAYERS = ("last layer", "all layers")
"""Inner-loop optimised layers: rows of Table 1."""
REGULARISERS = ("early stopping", "L2 regulariser")
"""Inner-loop regularisation: columns of Table 1."""
CORNER = "layers \\ regulariser"


@dataclass(frozen=True)
class Table1Cell:
    """A method's cell of Table 1: ``layers`` (one of :data:`LAYERS`) and ``regulariser``
    (one of :data:`REGULARISERS`)."""

    layers: str
    regulariser: str

    def __post_init__(self) -> None:
        if self.layers not in LAYERS:
            raise ValueError(f"Table 1 layers must be one of {', '.join(LAYERS)}, "
                             f"not {self.layers!r}")
        if self.regulariser not in REGULARISERS:
            raise ValueError(f"Table 1 regulariser must be one of {', '.join(REGULARISERS)}, "
                             f"not {self.regulariser!r}")


@dataclass(frozen=True)
class OutsideTable1:
    """A method outside Table 1 (no inner loop); ``reason`` says what it does instead."""

    reason: str

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError("OutsideTable1 needs a reason (what the method does instead of "
                             "an inner loop)")


Table1 = Table1Cell | OutsideTable1 | None
"""What a method class declares (None: not declared, e.g. a method from outside the
repository that says nothing about it)."""


def check_table1(owner: str, value: object) -> None:
    """Raise ``TypeError`` unless ``value`` is a :data:`Table1` declaration."""
    if value is not None and not isinstance(value, (Table1Cell, OutsideTable1)):
        raise TypeError(f"{owner}: table1 must be a Table1Cell, an OutsideTable1 or None, "
                        f"not {value!r}")


def format_table1(classes: Iterable[type]) -> list[str]:
    """Lines of the Table 1 grid of ``classes`` (method classes with ``display_name`` and
    ``table1``): one row per inner-loop layer set, one column per regulariser, then the
    methods outside the table with their reasons and any that declare nothing."""
    classes = list(classes)
    cells = {(layers, reg): [] for layers in LAYERS for reg in REGULARISERS}
    outside, undeclared = [], []
    for cls in classes:
        declared = getattr(cls, "table1", None)
        if isinstance(declared, Table1Cell):
            cells[declared.layers, declared.regulariser].append(cls.display_name)
        elif isinstance(declared, OutsideTable1):
            outside.append(f"{cls.display_name}: {declared.reason}")
        else:
            undeclared.append(cls.display_name)
    texts = {key: ", ".join(names) or "-" for key, names in cells.items()}
    first = max(len(CORNER), *(len(layers) for layers in LAYERS))
    widths = [max(len(reg), *(len(texts[layers, reg]) for layers in LAYERS))
              for reg in REGULARISERS]
    lines = ["  ".join([f"{CORNER:<{first}}",
                        *(f"{reg:<{w}}" for reg, w in zip(REGULARISERS, widths))]).rstrip()]
    for layers in LAYERS:
        lines.append("  ".join([f"{layers:<{first}}",
                                *(f"{texts[layers, reg]:<{w}}"
                                  for reg, w in zip(REGULARISERS, widths))]).rstrip())
    if outside:
        lines.append("outside the table (no inner loop):")
        lines += [f"  {entry}" for entry in outside]
    if undeclared:
        lines.append("not declared: " + ", ".join(undeclared))
    return lines
