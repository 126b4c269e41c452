"""Confidence intervals, one formula each, applied to every method
(docs/references.md#statistics), and Holm's multiple-comparison correction.

Per seed: 95% CI over episodes, 1.96 * std(ddof=1) / sqrt(n). Across seeds: mean of the seed
means with a t-based 95% CI, t_{0.975, n-1} * std(ddof=1) / sqrt(n) (n is small).
Several tests of one family: Holm's step-down adjusted p-values (:func:`holm`).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as _st

EPISODE_CI_RULE = "95% CI over test episodes: 1.96 * std(ddof=1) / sqrt(episodes)"
SEED_CI_RULE = "t-based 95% CI over seed means: t(0.975, n-1) * std(ddof=1) / sqrt(n seeds)"


def episode_ci95(accuracies: Sequence[float]) -> float:
    a = np.asarray(accuracies, dtype=np.float64)
    if a.size < 2:
        return float("nan")
    return float(1.96 * a.std(ddof=1) / math.sqrt(a.size))


def seed_ci95(seed_means: Sequence[float]) -> float:
    m = np.asarray(seed_means, dtype=np.float64)
    if m.size < 2:
        return float("nan")
    return float(_st.t.ppf(0.975, m.size - 1) * m.std(ddof=1) / math.sqrt(m.size))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values, in the order given.

    With the m finite p-values sorted ascending, p_(1) <= ... <= p_(m), the adjusted value of
    p_(k) is max over j <= k of min(1, (m - j + 1) p_(j)); rejecting where the adjusted p is
    below alpha keeps the family-wise error rate at most alpha, whatever the dependence
    between the tests. NaN entries (a test that could not be made) are not part of the family
    (they do not count in m) and stay NaN. The same numbers as
    ``statsmodels.stats.multitest.multipletests(p, method="holm")[1]`` on the finite entries.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"need a flat list of p-values, got shape {p.shape}")
    finite = ~np.isnan(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {p[finite].tolist()}")
    adjusted = np.full(p.shape, np.nan)
    index = np.flatnonzero(finite)
    m = index.size
    if m == 0:
        return adjusted
    order = index[np.argsort(p[index], kind="stable")]
    steps = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(steps)
    return adjusted
