"""When a learning curve has stopped improving: the stopping rule of the ``converged`` budget.

Rule (:func:`has_plateaued`): after epoch ``e`` (at least ``min_epochs``), take the last
``w = max(ceil(window x e), min_window)`` epochs of the validation curve. The curve has plateaued
when the best accuracy among those ``w`` epochs is less than ``min_gain`` points above the best
accuracy of the ``e - w`` epochs before them. With ``window = 0.25`` and ``min_gain = 0.5``:
"less than half a point gained over the last quarter of the epochs". ``min_window`` (5) keeps
the window from being a few epochs long early in training: with 12 epochs a quarter is 3, over
which a curve near its ceiling can gain under half a point while still rising (MTL on Omniglot
5-shot did, by 0.42 points over epochs 10-12). A curve that never got better in its last quarter
(the best lies earlier) has gained nothing and has plateaued; a curve still climbing has not.

Validation accuracy over a few hundred episodes carries a standard error of about one point.
Both bests are maxima of noisy values, the earlier one over more epochs, so noise can stop a
curve that rises by less than the noise per window; the minimum window and the ``converged``
budget's 200 validation episodes keep that small. The rule reads the curve at whatever learning
rate it has: a curve that stalls before the plateau schedule cuts the rate can stop there and
miss the gain a lower rate would bring (measured in docs/findings.md, "The stopping rule,
checked").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class PlateauRule:
    """Stop once the best of the last ``window`` fraction of epochs (at least ``min_window``)
    is less than ``min_gain`` accuracy points above the best before them, from epoch
    ``min_epochs`` on."""

    min_gain: float = 0.5
    window: float = 0.25
    min_epochs: int = 8
    min_window: int = 5

    def __post_init__(self) -> None:
        if not (isinstance(self.min_gain, (int, float)) and self.min_gain >= 0):
            raise ValueError(f"min_gain must be >= 0 accuracy points, not {self.min_gain!r}")
        if not (isinstance(self.window, (int, float)) and 0 < self.window < 1):
            raise ValueError(f"window must be a fraction of the epochs in (0, 1), "
                             f"not {self.window!r}")
        if isinstance(self.min_epochs, bool) or not isinstance(self.min_epochs, int) \
                or self.min_epochs < 2:
            raise ValueError(f"min_epochs must be an integer >= 2 (the rule compares the last "
                             f"epochs with those before), not {self.min_epochs!r}")
        if isinstance(self.min_window, bool) or not isinstance(self.min_window, int) \
                or not 1 <= self.min_window < self.min_epochs:
            raise ValueError(f"min_window must be an integer from 1 to min_epochs - 1 "
                             f"({self.min_epochs - 1}), not {self.min_window!r}")

    def window_epochs(self, epochs: int) -> int:
        """How many of the last epochs the rule reads after ``epochs`` epochs."""
        return min(epochs - 1, max(self.min_window, math.ceil(self.window * epochs)))

    def gain(self, curve: Sequence[float]) -> float:
        """Best accuracy of the last window minus the best before it (points; negative when
        the best lies before the window)."""
        if len(curve) < 2:
            raise ValueError("the rule needs a curve of at least two epochs")
        w = self.window_epochs(len(curve))
        return max(curve[-w:]) - max(curve[:-w])

    def has_plateaued(self, curve: Sequence[float]) -> bool:
        """Whether training with validation curve ``curve`` (accuracy in %, one value per
        epoch) should stop now."""
        return len(curve) >= self.min_epochs and self.gain(curve) < self.min_gain

    def describe(self) -> str:
        return (f"stop when the last {self.window:g} of the epochs (at least {self.min_window}) "
                f"gain < {self.min_gain:g} points of validation accuracy (from epoch "
                f"{self.min_epochs})")


def has_plateaued(curve: Sequence[float], min_gain: float = 0.5, window: float = 0.25,
                  min_epochs: int = 8, min_window: int = 5) -> bool:
    """:meth:`PlateauRule.has_plateaued` with the given parameters."""
    return PlateauRule(min_gain, window, min_epochs, min_window).has_plateaued(curve)
