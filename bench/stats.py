"""Confidence intervals, one formula each, applied to every method
(docs/references.md#statistics).

Per seed: 95% CI over episodes, 1.96 * std(ddof=1) / sqrt(n). Across seeds: mean of the seed
means with a t-based 95% CI, t_{0.975, n-1} * std(ddof=1) / sqrt(n) (n is small).
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
