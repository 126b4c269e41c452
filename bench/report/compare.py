"""Paired comparisons against a baseline on identical test episodes (``comparison.{csv,md}``).

Every method in the harness is tested on the same episodes (equal ``episode_hash`` = the same
support and query images), so the difference between two methods can be measured episode by
episode (a paired design) instead of by comparing two confidence intervals by eye.

The rule, for one method arm against one baseline arm under one protocol (unified vs unified,
native vs native; a method without an adaptation of its own, ``native_is_unified``, enters the
native comparison with its unified accuracies):

* Pairs: only seeds present (finished) for both arms whose episode hashes match; seeds present
  on one side only, and seeds whose hashes differ, are left out and named in ``note``.
* Differences d = method - baseline, in percentage points.
* One paired seed: the mean of the per-episode differences; CI and tests from the paired t
  distribution over its n episodes (df = n - 1; this is ``scipy.stats.ttest_rel``). This CI
  covers the sampling of test episodes only, not the randomness of training.
* Two or more paired seeds: the mean of the per-seed mean differences; CI and tests from a t
  distribution over the k seeds (df = k - 1), which covers training randomness too.
* Verdict against an equivalence margin M (default 1.0 point), by two one-sided tests (TOST,
  Schuirmann 1987) at alpha = 5%:

  - "equivalent": the 90% CI lies strictly inside (-M, +M), i.e. both one-sided tests
    (H0: diff <= -M and H0: diff >= +M) reject at 5%;
  - otherwise "better" / "worse": the 95% CI lies above / below 0;
  - otherwise "inconclusive".

  "equivalent" takes precedence: a difference that is significant yet shown to be smaller
  than the margin (say +0.2 with 95% CI [0.1, 0.3] at M = 1) is, by the choice of M, too
  small to matter for the question the table answers ("is the method as accurate as the
  baseline?"), and the two procedures have the same 5% error rate. Such a row keeps its
  ``significant`` flag and the Markdown says "equivalent (better by a significant +0.20,
  within the margin)", so nothing is hidden.

* Several comparisons with one baseline: Holm's step-down correction (Holm 1979,
  :func:`bench.common.stats.holm`), per *family*: every paired row of one cell (dataset, ways,
  shots, budget and sweep settings) against one baseline arm (the baseline's runs in that
  cell; a second baseline variant is a second family), both protocols included, so m = the
  number of such rows with a p-value (a "not paired" row, or one of a single episode, has
  none and is not counted). The p-values corrected are those the verdict rests on, each
  kind over the family's m rows: TOST's p (the larger one-sided p) for equivalence, the
  two-sided p for a difference. ``verdict_holm`` is the rule above on the adjusted
  p-values: "equivalent" when the adjusted TOST p < 5%, else "better"/"worse" (the sign of
  the difference) when the adjusted two-sided p < 5%, else "inconclusive"; so each kind of
  claim keeps a family-wise error rate of at most 5%. ``p_holm`` is the adjusted p of the
  test the uncorrected verdict rests on (TOST's for "equivalent", the two-sided one
  otherwise). A family of one row is unchanged. The uncorrected columns keep their meaning.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _st

from bench.common.cells import (ARM_FIELDS, Arm, Cell, group_cells, seeds_text,
                         unpaired_seed_notes)
from bench.common.stats import holm

EQUIVALENT, BETTER, WORSE, INCONCLUSIVE = "equivalent", "better", "worse", "inconclusive"
NOT_PAIRED = "not paired"
VERDICTS = (EQUIVALENT, BETTER, WORSE, INCONCLUSIVE)
DEFAULT_MARGIN = 1.0
ALPHA = 0.05

#: Holm's correction over the row's family (module docstring): the family's size, the adjusted
#: two-sided and TOST p-values, the adjusted p of the test the uncorrected verdict rests on,
#: and the verdict on the adjusted p-values.
HOLM_COLUMNS = ["holm_m", "p_value_holm", "p_tost_holm", "p_holm", "verdict_holm"]
#: The columns that name a family: one cell against one baseline arm.
FAMILY_COLUMNS = ["dataset", "ways", "shots", "budget", "settings", "baseline",
                  "baseline_variant"]

COMPARISON_COLUMNS = [
    "dataset", "ways", "shots", "budget", "settings", "method", "variant", "baseline",
    "baseline_variant", "protocol", "seeds", "paired_seeds", "episodes", "ci_over",
    "method_mean", "baseline_mean", "mean_diff", "ci95_low", "ci95_high", "ci90_low",
    "ci90_high", "df", "t", "p_value", "p_tost", "margin", "significant", "verdict",
    *HOLM_COLUMNS, "note",
]


@dataclass(frozen=True)
class PairedDifference:
    """A paired difference (method - baseline, percentage points) and its verdict."""

    mean: float
    se: float  # standard error of ``mean``
    df: int  # degrees of freedom of the t distribution (episodes - 1 or seeds - 1)
    ci95: tuple[float, float]
    ci90: tuple[float, float]
    t: float  # mean / se
    p_value: float  # two-sided, H0: difference = 0
    p_tost: float  # max of the two one-sided p-values, H0: |difference| >= margin
    margin: float
    ci_over: str  # "episodes" (one seed) or "seeds" (two or more)
    seeds: int
    episodes: int  # per seed (the smallest, if they differ)
    method_mean: float
    baseline_mean: float

    @property
    def significant(self) -> bool:
        """The 95% CI excludes 0."""
        return bool(self.ci95[0] > 0 or self.ci95[1] < 0)

    @property
    def verdict(self) -> str:
        return verdict(self.ci90, self.ci95, self.margin)


def verdict(ci90: tuple[float, float], ci95: tuple[float, float], margin: float) -> str:
    """The module docstring's rule: "equivalent" when the 90% CI lies strictly inside
    (-margin, +margin) (TOST at 5%), else "better"/"worse" when the 95% CI lies above/below 0,
    else "inconclusive" (also when a CI is undefined)."""
    if any(math.isnan(v) for v in (*ci90, *ci95)):
        return INCONCLUSIVE
    if -margin < ci90[0] and ci90[1] < margin:
        return EQUIVALENT
    if ci95[0] > 0:
        return BETTER
    if ci95[1] < 0:
        return WORSE
    return INCONCLUSIVE


def verdict_from_p(p_value: float, p_tost: float, mean: float) -> str:
    """The same rule as :func:`verdict`, from p-values (used on Holm-adjusted ones):
    "equivalent" when ``p_tost`` < 5%, else "better"/"worse" (the sign of ``mean``) when the
    two-sided ``p_value`` < 5%, else "inconclusive" (also when a p-value is undefined)."""
    if math.isnan(p_value) or math.isnan(p_tost):
        return INCONCLUSIVE
    if p_tost < ALPHA:
        return EQUIVALENT
    if p_value < ALPHA:
        return BETTER if mean > 0 else WORSE
    return INCONCLUSIVE


def _t_tests(mean: float, se: float, df: int, margin: float) -> tuple[float, float, float]:
    """(t, two-sided p for H0: 0, TOST p for H0: |diff| >= margin)."""
    if se == 0.0:  # every difference identical: the tests degenerate to certainty
        return (math.copysign(math.inf, mean) if mean else math.nan,
                0.0 if mean != 0.0 else 1.0, 0.0 if abs(mean) < margin else 1.0)
    t = mean / se
    p_value = float(2.0 * _st.t.sf(abs(t), df))
    p_lower = float(_st.t.sf((mean + margin) / se, df))  # H0: diff <= -margin
    p_upper = float(_st.t.cdf((mean - margin) / se, df))  # H0: diff >= +margin
    return float(t), p_value, max(p_lower, p_upper)


def paired_difference(method: Sequence[Sequence[float]], baseline: Sequence[Sequence[float]],
                      margin: float = DEFAULT_MARGIN) -> PairedDifference:
    """The paired difference of per-episode accuracies (percent), one list per seed.

    ``method[s][i]`` and ``baseline[s][i]`` are the accuracies of the two arms on episode i of
    seed s (the same episode: the caller checked the hashes). One seed: t over episodes;
    two or more: t over the per-seed mean differences (module docstring).
    """
    if margin <= 0 or not math.isfinite(margin):
        raise ValueError(f"equivalence margin must be a positive number of points, got {margin}")
    if len(method) != len(baseline) or not method:
        raise ValueError(f"need the same number (>= 1) of seeds on both sides, got "
                         f"{len(method)} and {len(baseline)}")
    diffs, m_means, b_means = [], [], []
    for s, (a, b) in enumerate(zip(method, baseline)):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape or a.ndim != 1 or a.size == 0:
            raise ValueError(f"seed {s}: {a.size} method and {b.size} baseline accuracies; "
                             "paired episodes need equal, non-empty lists")
        diffs.append(a - b)
        m_means.append(a.mean())
        b_means.append(b.mean())
    if len(diffs) == 1:
        d, ci_over = diffs[0], "episodes"
    else:
        d, ci_over = np.array([x.mean() for x in diffs]), "seeds"
    mean = float(d.mean())
    if d.size < 2:
        se, df = math.nan, 0
        t, p_value, p_tost = math.nan, math.nan, math.nan
        ci95 = ci90 = (math.nan, math.nan)
    else:
        df = int(d.size - 1)
        se = float(d.std(ddof=1) / math.sqrt(d.size))
        t, p_value, p_tost = _t_tests(mean, se, df, margin)
        h95 = float(_st.t.ppf(1 - ALPHA / 2, df)) * se
        h90 = float(_st.t.ppf(1 - ALPHA, df)) * se
        ci95, ci90 = (mean - h95, mean + h95), (mean - h90, mean + h90)
    return PairedDifference(
        mean=mean, se=se, df=df, ci95=ci95, ci90=ci90, t=t, p_value=p_value, p_tost=p_tost,
        margin=float(margin), ci_over=ci_over, seeds=len(diffs),
        episodes=int(min(x.size for x in diffs)), method_mean=float(np.mean(m_means)),
        baseline_mean=float(np.mean(b_means)))


# ---------------------------------------------------------------------------------------------
# From result dicts to the comparison frame.

def _accuracies(run: Mapping[str, Any], protocol: str) -> list[float] | None:
    test = run["test"]
    if protocol == "native" and run.get("native_is_unified"):
        protocol = "unified"
    entry = test.get(protocol)
    return None if entry is None else list(entry["accuracies"])


def _pair_seeds(arm: Arm, base: Arm, protocol: str, method_name: str,
                baseline_name: str) -> tuple[list[int], list[str]]:
    """Seeds usable for a paired comparison, and notes on every seed left out."""
    notes = unpaired_seed_notes(arm, base, method_name, baseline_name)
    paired = []
    for seed in sorted(set(arm.runs) & set(base.runs)):
        a, b = arm.runs[seed], base.runs[seed]
        if a.get("episode_hash") != b.get("episode_hash"):
            notes.append(f"seed {seed}: different episode hashes")
            continue
        accs_a, accs_b = _accuracies(a, protocol), _accuracies(b, protocol)
        if accs_a is None or accs_b is None:
            side = method_name if accs_a is None else baseline_name
            notes.append(f"seed {seed}: no {protocol} result for {side}")
            continue
        if len(accs_a) != len(accs_b):
            notes.append(f"seed {seed}: same episode hash but {len(accs_a)} vs {len(accs_b)} "
                         "accuracies")
            continue
        paired.append(seed)
    return paired, notes


def _protocols(arm: Arm, base: Arm | None) -> list[tuple[str, str]]:
    """(protocol label, protocol used for accuracies) rows for an arm pair."""
    if arm.native_is_unified() and (base is None or base.native_is_unified()):
        return [("unified (= native)", "unified")]
    return [("unified", "unified"), ("native", "native")]


def _empty_stats() -> dict[str, Any]:
    nan = math.nan
    return {"seeds": 0, "paired_seeds": "", "episodes": 0, "ci_over": "", "method_mean": nan,
            "baseline_mean": nan, "mean_diff": nan, "ci95_low": nan, "ci95_high": nan,
            "ci90_low": nan, "ci90_high": nan, "df": 0, "t": nan, "p_value": nan,
            "p_tost": nan, "significant": False, "verdict": NOT_PAIRED, "holm_m": 0,
            "p_value_holm": nan, "p_tost_holm": nan, "p_holm": nan, "verdict_holm": NOT_PAIRED}


def _stats(diff: PairedDifference, seeds: list[int]) -> dict[str, Any]:
    return {"seeds": diff.seeds, "paired_seeds": seeds_text(seeds), "episodes": diff.episodes,
            "ci_over": diff.ci_over, "method_mean": diff.method_mean,
            "baseline_mean": diff.baseline_mean, "mean_diff": diff.mean,
            "ci95_low": diff.ci95[0], "ci95_high": diff.ci95[1], "ci90_low": diff.ci90[0],
            "ci90_high": diff.ci90[1], "df": diff.df, "t": diff.t, "p_value": diff.p_value,
            "p_tost": diff.p_tost, "significant": diff.significant, "verdict": diff.verdict}


def _compare_arms(cell: Cell, arm: Arm, base: Arm, margin: float,
                  display: Callable[[str], str]) -> list[dict[str, Any]]:
    rows = []
    method_name, baseline_name = display(arm.method), display(base.method)
    for label, protocol in _protocols(arm, base):
        seeds, notes = _pair_seeds(arm, base, protocol, method_name, baseline_name)
        row = {**cell.columns(), "method": method_name, "variant": arm.variant,
               "baseline": baseline_name, "baseline_variant": base.variant,
               "protocol": label, "margin": float(margin)}
        if not seeds:
            row.update(_empty_stats())
            if not notes:
                notes.append("no finished seed on both sides")
            row["note"] = "; ".join(notes)
        else:
            diff = paired_difference([_accuracies(arm.runs[s], protocol) for s in seeds],
                                     [_accuracies(base.runs[s], protocol) for s in seeds],
                                     margin)
            row.update(_stats(diff, seeds))
            if notes:  # some seed was left out: say which were used
                notes.insert(0, f"paired seed{'s' if len(seeds) > 1 else ''} "
                                f"{seeds_text(seeds)} only")
            if diff.df == 0:
                notes.append("one episode: no CI")
            row["note"] = "; ".join(notes)
        rows.append(row)
    return rows


def paired_comparisons(results: Iterable[Mapping[str, Any]], baseline: str,
                       margin: float = DEFAULT_MARGIN,
                       display: Callable[[str], str] = str,
                       arm_fields: Sequence[str] = ARM_FIELDS) -> pd.DataFrame:
    """Every method against ``baseline`` (a method's registry name), per cell and protocol.

    ``results``: loaded result dicts (:func:`bench.store.result_set.load_results`; failed runs are
    used only to say "failed"). ``display`` maps a registry name to the name shown. A cell
    (:mod:`bench.common.cells`) gets one row per (method arm, baseline arm, protocol); arms of the
    baseline method are baselines and are not compared with one another. A cell without a
    finished baseline run gets a "not paired" row per method arm saying so. Columns:
    :data:`COMPARISON_COLUMNS`; differences are method - baseline in points; the
    :data:`HOLM_COLUMNS` correct each cell's rows against one baseline arm as a family
    (module docstring).
    """
    if margin <= 0 or not math.isfinite(margin):
        raise ValueError(f"equivalence margin must be a positive number of points, got {margin}")
    rows: list[dict[str, Any]] = []
    for cell in group_cells(results, arm_fields):
        bases = [a for a in cell.arms if a.method == baseline and a.runs]
        families: list[list[dict[str, Any]]] = [[] for _ in bases]  # one per baseline arm
        for arm in cell.arms:
            if arm.method == baseline or not arm.runs:
                continue
            if not bases:
                failed = any(a.method == baseline for a in cell.arms)
                why = (f"every {display(baseline)} run in this cell failed" if failed
                       else f"no {display(baseline)} run in this cell")
                for label, _ in _protocols(arm, None):
                    rows.append({**cell.columns(), "method": display(arm.method),
                                 "variant": arm.variant, "baseline": display(baseline),
                                 "baseline_variant": "", "protocol": label,
                                 "margin": float(margin), **_empty_stats(),
                                 "note": why})
                continue
            for base, family in zip(bases, families):
                compared = _compare_arms(cell, arm, base, margin, display)
                family.extend(compared)
                rows.extend(compared)
        for family in families:
            _apply_holm(family)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _apply_holm(family: list[dict[str, Any]]) -> None:
    """Fill :data:`HOLM_COLUMNS` of one family's rows in place (module docstring); rows
    without a p-value are outside the family and keep their verdict."""
    tested = [r for r in family if not (math.isnan(r["p_value"]) or math.isnan(r["p_tost"]))]
    p_value = holm([r["p_value"] for r in tested])
    p_tost = holm([r["p_tost"] for r in tested])
    for row in family:
        row.update(holm_m=0, p_value_holm=math.nan, p_tost_holm=math.nan, p_holm=math.nan,
                   verdict_holm=row["verdict"])
    for row, pv, pt in zip(tested, p_value, p_tost):
        row.update(holm_m=len(tested), p_value_holm=float(pv), p_tost_holm=float(pt),
                   p_holm=float(pt if row["verdict"] == EQUIVALENT else pv),
                   verdict_holm=verdict_from_p(float(pv), float(pt), row["mean_diff"]))


# ---------------------------------------------------------------------------------------------
# Markdown.

def comparison_footer(margin: float = DEFAULT_MARGIN) -> str:
    """The method, stated for the reader of ``comparison.md``."""
    m = f"{margin:g}"
    return (
        "Difference = method - baseline in percentage points of test accuracy, on the same "
        "test episodes (pairs are formed only where the episode hashes match, seed by seed, "
        "under the same protocol; a method without its own adaptation enters the native "
        "comparison with its unified accuracies). One seed: mean of the per-episode "
        "differences with a paired-t 95% CI over episodes (it covers episode sampling, not "
        "training randomness). Two or more seeds: mean of the per-seed mean differences with "
        "a t-based 95% CI over seeds (df = seeds - 1). p: two-sided t-test of no difference, "
        f"over the same units as the CI. Verdict, with equivalence margin {m} point(s), by two "
        f"one-sided tests (TOST) at 5%: equivalent when the 90% CI lies inside (-{m}, +{m}); "
        "otherwise better or worse when the 95% CI excludes 0; otherwise inconclusive. "
        "Equivalence is decided first: a significant difference inside the margin is "
        "reported as equivalent, with its direction noted, because the margin declares "
        "differences that small immaterial. Several methods against one baseline: Holm's "
        "step-down correction, per family = every paired row of one dataset, ways, shots, "
        "budget and sweep settings against one baseline configuration, both protocols "
        "included (m = its rows with a p-value). Each kind of p-value a verdict rests on is "
        "corrected over the family's m rows: TOST's p (the larger one-sided p) for "
        "equivalence, the two-sided p for a difference. p (Holm): the adjusted p of the test "
        "behind the uncorrected verdict (marked TOST for equivalence). Verdict (Holm): the same "
        "rule on the adjusted p-values (equivalent when the adjusted TOST p < 5%, else better "
        "or worse when the adjusted two-sided p < 5%, else inconclusive), so each kind of "
        "claim has a family-wise error rate of at most 5%.")


def holm_footer(frame: pd.DataFrame) -> str:
    """The sentence that says over how many comparisons Holm's correction was applied, per
    family (:data:`FAMILY_COLUMNS`); "" when no row was tested."""
    tested = frame[frame["holm_m"] > 0]
    if tested.empty:
        return ""
    parts = []
    for key, group in tested.groupby(FAMILY_COLUMNS, sort=False):
        family = dict(zip(FAMILY_COLUMNS, key))
        m = int(group["holm_m"].iloc[0])
        where = (f"{family['dataset']} {family['ways']}-way {family['shots']}-shot "
                 f"{family['budget']}" + (f" ({family['settings']})" if family["settings"]
                                          else ""))
        base = family["baseline"] + (f" ({family['baseline_variant']})"
                                     if family["baseline_variant"] else "")
        parts.append(f"{m} comparison{'s' if m != 1 else ''} in {where} against {base}"
                     + (" (a family of one: nothing to correct)" if m == 1 else ""))
    return "Holm's correction was applied over " + "; ".join(parts) + "."


def _fmt(value: float, spec: str = "+.2f") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, spec)


def _verdict_cell(row: Any) -> str:
    if row.verdict == EQUIVALENT and row.significant:
        side = "better" if row.mean_diff > 0 else "worse"
        return f"equivalent ({side} by a significant {row.mean_diff:+.2f}, within the margin)"
    return str(row.verdict)


def _p_text(p: float) -> str:
    if isinstance(p, float) and math.isnan(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _p_holm_text(row: Any) -> str:
    text = _p_text(row.p_holm)
    return f"{text} (TOST)" if row.verdict == EQUIVALENT and text != "–" else text


def comparison_markdown(frame: pd.DataFrame, margin: float = DEFAULT_MARGIN) -> str:
    """``comparison.md``: one table row per frame row, then the footer stating the method."""
    if frame.empty:
        return "_No method to compare with the baseline._\n\n" + comparison_footer(margin) + "\n"
    show_settings = bool(frame["settings"].astype(str).str.len().gt(0).any())
    header = ["dataset", "budget", *(["settings"] if show_settings else []), "method",
              "baseline", "protocol", "seeds", "episodes", "difference [95% CI]", "p",
              "verdict", "p (Holm)", "verdict (Holm)", "note"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in frame.itertuples(index=False):
        method = row.method + (f" ({row.variant})" if row.variant else "")
        base = row.baseline + (f" ({row.baseline_variant})" if row.baseline_variant else "")
        if row.verdict == NOT_PAIRED:
            diff = "–"
        else:
            diff = (f"{_fmt(row.mean_diff)} [{_fmt(row.ci95_low)}, {_fmt(row.ci95_high)}]")
        cells = [f"{row.dataset} {row.ways}-way {row.shots}-shot", str(row.budget),
                 *([str(row.settings)] if show_settings else []), method, base,
                 str(row.protocol), str(row.seeds) if row.seeds else "–",
                 str(row.episodes) if row.episodes else "–", diff, _p_text(row.p_value),
                 _verdict_cell(row), _p_holm_text(row), str(row.verdict_holm), str(row.note)]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    counts = holm_footer(frame)
    return ("\n".join(lines) + "\n\n" + comparison_footer(margin) + "\n"
            + (f"\n{counts}\n" if counts else ""))


def comparison_csv(frame: pd.DataFrame) -> str:
    """``comparison.csv``: the frame as CSV, six significant digits, NaN as an empty cell."""
    return frame.to_csv(index=False, float_format="%.6g")
