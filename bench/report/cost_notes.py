"""What the tables' cost figures count, and the method speed-ups are relative to."""
from __future__ import annotations

from dataclasses import dataclass

from methods import efficiency_reference as reference_method

CLOCKS = ("train", "run")
#: What each cost figure counts, for the tables' footers.
CLOCK_NOTES = {
    "train": "training device-hours: the timing rule's training steps only",
    "run": "run device-hours: training plus validation, the whole training loop as it ran "
           "(every epoch early stopping needed included)",
}
PAPER_CLOCK_NOTE = (
    "The paper's GPU-hours (Table 4 and Figure 2) are whole training runs, whose loops validate "
    "every epoch: they correspond to run device-hours.")


@dataclass(frozen=True)
class Reference:
    """The method that speed-ups are relative to (the class that declares
    ``efficiency_reference``; MetaOptNet in the paper's Table 4 and Figure 2)."""

    name: str
    display: str

    def speedup(self, clock: str) -> str:
        """The efficiency frame's speed-up column for ``clock`` ("train" or "run")."""
        return f"speedup_{clock}_vs_{self.name}"

    @property
    def speedup_column(self) -> str:
        """The speed-up the paper's Figure 2 shows: run device-hours
        (:data:`PAPER_CLOCK_NOTE`)."""
        return self.speedup("run")


def efficiency_reference() -> Reference:
    cls = reference_method()
    return Reference(cls.name, cls.display_name)
