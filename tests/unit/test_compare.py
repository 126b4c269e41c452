"""Paired comparisons against a baseline (bench.report.compare): hand-computed numbers, agreement with
scipy.stats, the TOST verdicts on constructed cases, the rows that say why a pair is missing,
and Holm's correction per family (by hand and against statsmodels)."""
from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from bench.report.compare import (BETTER, COMPARISON_COLUMNS, EQUIVALENT, HOLM_COLUMNS, INCONCLUSIVE,
                           NOT_PAIRED, WORSE, _accuracies, _p_text, comparison_csv,
                           comparison_footer, comparison_markdown, holm_footer,
                           paired_comparisons, paired_difference, verdict, verdict_from_p)
from bench.common.stats import holm
from bench.store.result_set import load_results

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PAIRED = FIXTURES / "paired"
GOLDEN = PAIRED / "golden"


@pytest.fixture(scope="module")
def paired_results() -> list[dict]:
    return load_results(PAIRED)


def _row(frame, method, protocol="unified"):
    rows = frame[(frame["method"] == method) & (frame["protocol"] == protocol)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def _by_seed(results, method, seeds, protocol="unified"):
    runs = {r["config"]["seed"]: r for r in results
            if r["config"]["method"] == method and r["status"] == "ok"
            and r["config"]["shots"] == 1}
    key = protocol if not runs[seeds[0]].get("native_is_unified") else "unified"
    return [runs[s]["test"][key]["accuracies"] for s in seeds]


# --- the statistics, by hand -----------------------------------------------------------------

def test_one_seed_by_hand():
    # d = method - baseline = [1, 2, 3, 4, 5]: mean 3, sum of squared deviations 10,
    # sd = sqrt(10 / 4) = 1.5811, se = sd / sqrt(5) = sqrt(0.5) = 0.70711, t = 3 / se = 4.2426,
    # df = 4. t-table: t(0.975, 4) = 2.776445 -> 95% CI 3 -+ 1.963243 = [1.036757, 4.963243];
    # t(0.95, 4) = 2.131847 -> 90% CI 3 -+ 1.507443 = [1.492557, 4.507443];
    # p = 2 P(T_4 > 4.2426) = 0.01324.
    diff = paired_difference([[61, 72, 83, 94, 55]], [[60, 70, 80, 90, 50]], margin=1.0)
    assert diff.mean == pytest.approx(3.0)
    assert diff.se == pytest.approx(math.sqrt(0.5))
    assert (diff.df, diff.ci_over, diff.seeds, diff.episodes) == (4, "episodes", 1, 5)
    assert diff.t == pytest.approx(4.242641, abs=1e-6)
    assert diff.ci95 == pytest.approx((1.036757, 4.963243), abs=1e-6)
    assert diff.ci90 == pytest.approx((1.492557, 4.507443), abs=1e-6)
    assert diff.p_value == pytest.approx(0.01324, abs=1e-5)
    assert (diff.method_mean, diff.baseline_mean) == pytest.approx((73.0, 70.0))
    # margin 1: the 90% CI reaches past +1 (not equivalent); the 95% CI excludes 0: better.
    assert diff.verdict == BETTER and diff.significant
    # margin 5: the 90% CI [1.49, 4.51] lies inside (-5, 5): equivalent, although significant.
    wide = paired_difference([[61, 72, 83, 94, 55]], [[60, 70, 80, 90, 50]], margin=5.0)
    assert wide.verdict == EQUIVALENT and wide.significant


def test_several_seeds_by_hand():
    # Per-seed mean differences: seed 0 [1, 1] -> 1, seed 1 [1, 3] -> 2, seed 2 [3, 3] -> 3.
    # Over seeds: mean 2, sd 1, se = 1 / sqrt(3) = 0.577350, df = 2, t = 2 sqrt(3) = 3.464102.
    # With two degrees of freedom the t distribution has closed forms:
    # quantile t_p = (2p - 1) / sqrt(2p(1 - p)): t(0.975) = 0.95 / sqrt(0.04875) = 4.302653,
    # t(0.95) = 0.9 / sqrt(0.095) = 2.919986; tail P(T > t) = (1 - t / sqrt(t^2 + 2)) / 2:
    # p = 1 - sqrt(12 / 14) = 0.074180.
    # 95% CI 2 -+ 4.302653 / sqrt(3) = 2 -+ 2.484138; 90% CI 2 -+ 1.685854.
    method = [[11, 21], [12, 24], [53, 43]]
    baseline = [[10, 20], [11, 21], [50, 40]]
    diff = paired_difference(method, baseline, margin=1.0)
    assert (diff.mean, diff.df, diff.ci_over, diff.seeds, diff.episodes) == (2.0, 2, "seeds",
                                                                            3, 2)
    assert diff.se == pytest.approx(1 / math.sqrt(3))
    assert diff.t == pytest.approx(2 * math.sqrt(3))
    assert diff.ci95 == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-6)
    assert diff.ci90 == pytest.approx((2 - 1.685854, 2 + 1.685854), abs=1e-6)
    assert diff.p_value == pytest.approx(1 - math.sqrt(12 / 14), abs=1e-9)
    # the 95% CI contains 0 and the 90% CI is not inside (-1, 1): inconclusive.
    assert diff.verdict == INCONCLUSIVE and not diff.significant


def test_tost_p_value_is_the_larger_one_sided_p():
    rng = np.random.default_rng(0)
    for shift, spread in [(0.2, 1.0), (0.9, 2.0), (-0.5, 4.0), (3.0, 1.0)]:
        base = rng.uniform(40, 90, size=50)
        method = base + shift + rng.normal(0, spread, size=50)
        diff = paired_difference([method], [base], margin=1.0)
        d = method - base
        lower = stats.ttest_1samp(d, -1.0, alternative="greater").pvalue
        upper = stats.ttest_1samp(d, 1.0, alternative="less").pvalue
        assert diff.p_tost == pytest.approx(max(lower, upper), rel=1e-9)
        # TOST at 5% rejects exactly when the 90% CI lies inside the margin
        assert (diff.p_tost < 0.05) == (diff.verdict == EQUIVALENT)


def test_identical_differences_give_a_zero_width_interval():
    diff = paired_difference([[51.0, 61.0, 71.0]], [[50.5, 60.5, 70.5]], margin=1.0)
    assert diff.ci95 == (0.5, 0.5) and diff.p_value == 0.0 and diff.p_tost == 0.0
    assert diff.verdict == EQUIVALENT and diff.t == math.inf
    # the degenerate tests, case by case: no difference at all (t undefined, p = 1), a
    # constant negative one (t = -inf), one of exactly +1 (significant; not inside a margin
    # of 1), one of 2 (outside it)
    cases = {0.0: (math.nan, 1.0, 0.0), -0.5: (-math.inf, 0.0, 0.0), 1.0: (math.inf, 0.0, 1.0),
             2.0: (math.inf, 0.0, 1.0)}
    for shift, (t, p, p_tost) in cases.items():
        d = paired_difference([[50.0 + shift, 60.0 + shift]], [[50.0, 60.0]], margin=1.0)
        assert d.se == 0.0 and d.mean == shift
        assert (d.t == t or math.isnan(t) and math.isnan(d.t)), shift
        assert (d.p_value, d.p_tost) == (p, p_tost), shift


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="margin"):
        paired_difference([[1.0, 2.0]], [[1.0, 2.0]], margin=0.0)
    with pytest.raises(ValueError, match="^seed 0: 2 method and 3 baseline accuracies; paired "
                                         "episodes need equal, non-empty lists$"):
        paired_difference([[1.0, 2.0]], [[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="seed 1: 0 method and 0 baseline"):
        paired_difference([[1.0], []], [[1.0], []])
    with pytest.raises(ValueError, match="seed 0: 2 method and 2 baseline"):  # not one list
        paired_difference([[[1.0, 2.0]]], [[[1.0, 2.0]]])


def test_float32_accuracies_are_compared_in_float64():
    # (their float32 means differ from the float64 ones in the sixth digit)
    method = np.asarray([60.1, 73.3, 86.7, 93.3, 46.7], dtype=np.float32)
    baseline = np.asarray([53.3, 66.7, 80.0, 93.3, 40.0], dtype=np.float32)
    as32 = paired_difference([method], [baseline])
    as64 = paired_difference([method.astype(np.float64).tolist()],
                             [baseline.astype(np.float64).tolist()])
    assert as32 == as64


def test_one_episode_has_a_difference_but_no_interval():
    diff = paired_difference([[60.0]], [[50.0]])
    assert (diff.mean, diff.df, diff.episodes, diff.seeds) == (10.0, 0, 1, 1)
    assert math.isnan(diff.se) and math.isnan(diff.ci95[0]) and math.isnan(diff.p_value)
    assert diff.verdict == INCONCLUSIVE
    with pytest.raises(ValueError, match="same number"):
        paired_difference([[1.0, 2.0]], [])


# --- agreement with scipy.stats on fixture data ------------------------------------------------

def test_one_seed_agrees_with_scipy_ttest_rel_on_the_table_fixture():
    # tests/fixtures/results: MTL seeds 0-2 and MetaOptNet seed 0 on glyphs 5-way 5-shot, same
    # episode hash; MetaOptNet has a native protocol of its own, MTL's native is its unified.
    results = load_results(FIXTURES / "results")
    frame = paired_comparisons(results, baseline="mtl")
    runs = {(r["config"]["method"], r["config"]["seed"]): r for r in results
            if r["status"] == "ok" and r["config"]["dataset"] == "glyphs"
            and r["config"]["shots"] == 5}
    mtl = runs[("mtl", 0)]["test"]["unified"]["accuracies"]
    for protocol in ("unified", "native"):
        row = _row(frame, "metaoptnet", protocol)
        mon = runs[("metaoptnet", 0)]["test"][protocol]["accuracies"]
        ref = stats.ttest_rel(mon, mtl)
        ci = ref.confidence_interval(0.95)
        assert (row["seeds"], row["paired_seeds"], row["ci_over"]) == (1, "0", "episodes")
        assert row["mean_diff"] == pytest.approx(np.mean(mon) - np.mean(mtl))
        assert row["t"] == pytest.approx(ref.statistic)
        assert row["p_value"] == pytest.approx(ref.pvalue)
        assert (row["ci95_low"], row["ci95_high"]) == pytest.approx((ci.low, ci.high))
        assert row["df"] == ref.df == 39
        assert row["note"] == "paired seed 0 only; no metaoptnet result for seed 1, 2"


def test_several_seeds_agree_with_scipy_on_seed_means(paired_results):
    frame = paired_comparisons(paired_results, baseline="mtl")
    for method, seeds in (("r2d2", [0, 1, 2]), ("protonet", [0, 1])):
        for protocol in ("unified", "native"):
            row = _row(frame, method, protocol)
            means_m = [np.mean(a) for a in _by_seed(paired_results, method, seeds, protocol)]
            means_b = [np.mean(a) for a in _by_seed(paired_results, "mtl", seeds, protocol)]
            ref = stats.ttest_rel(means_m, means_b)
            ci = ref.confidence_interval(0.95)
            assert (row["seeds"], row["ci_over"], row["df"]) == (len(seeds), "seeds",
                                                                  len(seeds) - 1)
            assert row["t"] == pytest.approx(ref.statistic)
            assert row["p_value"] == pytest.approx(ref.pvalue)
            assert (row["ci95_low"], row["ci95_high"]) == pytest.approx((ci.low, ci.high))
            ci90 = stats.ttest_rel(means_m, means_b).confidence_interval(0.90)
            assert (row["ci90_low"], row["ci90_high"]) == pytest.approx((ci90.low, ci90.high))


def test_pairing_is_narrower_than_unpaired_intervals(paired_results):
    # The fixture's methods share each episode's difficulty, as methods tested on the same
    # episodes do: one seed's paired CI is much narrower than either method's own CI.
    r2d2, mtl = (_by_seed(paired_results, m, [0])[0] for m in ("r2d2", "mtl"))
    diff = paired_difference([r2d2], [mtl])
    own = 1.96 * np.std(mtl, ddof=1) / np.sqrt(len(mtl))
    assert (diff.ci95[1] - diff.ci95[0]) / 2 < own / 2


# --- verdicts on constructed cases (issue 14) ---------------------------------------------------

def _constructed(shift, noise_sd, n=2000, seed=0):
    rng = np.random.default_rng(seed)
    baseline = rng.uniform(30, 95, size=n)
    return paired_difference([baseline + shift + rng.normal(0, noise_sd, size=n)], [baseline],
                             margin=1.0)


def test_a_tight_small_difference_is_equivalent():
    diff = _constructed(0.2, 1.0)  # se about 1 / sqrt(2000) = 0.022
    assert diff.mean == pytest.approx(0.2, abs=0.07)
    assert diff.ci90[1] - diff.ci90[0] < 0.2
    assert diff.verdict == EQUIVALENT
    assert diff.significant  # significant, yet inside the margin: equivalent (module docstring)


def test_three_points_is_better_or_worse():
    assert _constructed(3.0, 1.0).verdict == BETTER
    assert _constructed(-3.0, 1.0).verdict == WORSE


def test_a_significant_difference_reaching_past_the_margin_is_better_not_equivalent():
    diff = _constructed(0.9, 3.0, n=400)  # 90% CI about 0.9 -+ 0.25: crosses +1, excludes 0
    assert diff.ci90[1] > 1.0 and diff.ci95[0] > 0
    assert diff.verdict == BETTER


def test_a_noisy_difference_is_inconclusive():
    assert _constructed(0.5, 30.0, n=20).verdict == INCONCLUSIVE


def test_verdict_boundaries_are_strict():
    # the 90% CI touching either margin is not inside it; just inside is equivalent
    assert verdict((-0.5, 1.0), (-0.6, 1.1), 1.0) == INCONCLUSIVE  # touches +margin
    assert verdict((-0.5, 0.999), (-0.6, 1.1), 1.0) == EQUIVALENT
    assert verdict((-1.0, 0.5), (-1.1, 0.6), 1.0) == INCONCLUSIVE  # touches -margin
    assert verdict((-0.999, 0.5), (-1.1, 0.6), 1.0) == EQUIVALENT
    # the 95% CI touching 0 from above or from below is not significant; just past 0 is
    assert verdict((0.2, 1.5), (0.0, 1.7), 1.0) == INCONCLUSIVE  # 95% CI touches 0 from above
    assert verdict((0.2, 1.5), (1e-9, 1.7), 1.0) == BETTER
    assert verdict((-1.5, -0.2), (-1.7, 0.0), 1.0) == INCONCLUSIVE  # touches 0 from below
    assert verdict((-1.5, -0.2), (-1.7, -1e-9), 1.0) == WORSE
    assert verdict((math.nan, math.nan), (math.nan, math.nan), 1.0) == INCONCLUSIVE
    assert verdict((-0.5, 0.5), (math.nan, 0.6), 1.0) == INCONCLUSIVE  # any undefined end


# --- rows from result files --------------------------------------------------------------------

def test_rows_say_which_seeds_were_paired_and_why_others_were_not(paired_results):
    frame = paired_comparisons(paired_results, baseline="mtl")
    assert list(frame.columns) == COMPARISON_COLUMNS
    r2d2 = _row(frame, "r2d2")
    assert (r2d2["paired_seeds"], r2d2["note"]) == ("0, 1, 2", "")
    protonet = _row(frame, "protonet", "native")
    assert protonet["paired_seeds"] == "0, 1"
    assert protonet["note"] == "paired seeds 0, 1 only; no protonet result for seed 2"
    # maml: seed 0 was tested on other episodes, seed 2 failed; only seed 1 pairs
    maml = _row(frame, "maml")
    assert (maml["seeds"], maml["paired_seeds"], maml["ci_over"]) == (1, "1", "episodes")
    assert maml["note"] == ("paired seed 1 only; maml failed for seed 2; "
                            "seed 0: different episode hashes")


def test_a_hash_mismatch_on_every_seed_leaves_a_row_that_says_so(paired_results):
    results = copy.deepcopy(paired_results)
    for r in results:
        if r["config"]["method"] == "r2d2" and r["status"] == "ok":
            r["episode_hash"] = "f" * 64
    frame = paired_comparisons(results, baseline="mtl")
    for protocol in ("unified", "native"):
        row = _row(frame, "r2d2", protocol)
        assert row["verdict"] == NOT_PAIRED and row["seeds"] == 0
        # every statistic of a row without pairs is empty: NaN numbers, empty texts, no flag
        assert (row["paired_seeds"], row["ci_over"], row["episodes"], row["df"]) == ("", "", 0, 0)
        assert not row["significant"]
        assert all(math.isnan(row[c]) for c in ("method_mean", "baseline_mean", "mean_diff",
                                                 "ci95_low", "ci95_high", "ci90_low",
                                                 "ci90_high", "t", "p_value", "p_tost"))
        assert row["note"] == ("seed 0: different episode hashes; seed 1: different episode "
                               "hashes; seed 2: different episode hashes")
    text = comparison_markdown(frame)
    assert "| not paired | seed 0: different episode hashes;" in text


def test_a_method_without_native_adaptation_enters_native_with_its_unified_accuracies():
    unified = {"accuracies": [60.0, 70.0]}
    own = {"accuracies": [61.0, 71.0]}
    mtl_like = {"native_is_unified": True, "test": {"unified": unified}}
    assert _accuracies(mtl_like, "native") == [60.0, 70.0]  # no native entry of its own
    assert _accuracies(mtl_like, "unified") == [60.0, 70.0]
    adapting = {"native_is_unified": False, "test": {"unified": unified, "native": own}}
    assert _accuracies(adapting, "native") == [61.0, 71.0]
    assert _accuracies(adapting, "unified") == [60.0, 70.0]
    assert _accuracies({"test": {"unified": unified}}, "native") is None


def test_a_cell_without_the_baseline_says_so(paired_results):
    frame = paired_comparisons(paired_results, baseline="mtl")
    anil = frame[frame["method"] == "anil"]
    assert list(anil["protocol"]) == ["unified", "native"]
    assert set(anil["verdict"]) == {NOT_PAIRED}
    assert set(anil["note"]) == {"no mtl run in this cell"}
    assert set(anil["shots"]) == {5}


def test_a_cell_whose_baseline_runs_all_failed_says_so(paired_results):
    results = copy.deepcopy(paired_results)
    for r in results:
        if r["config"]["method"] == "mtl":
            r["status"], r["error"] = "failed", "fixture failure"
    frame = paired_comparisons(results, baseline="mtl")
    assert set(frame[frame["shots"] == 1]["note"]) == {"every mtl run in this cell failed"}


def test_the_baseline_is_an_argument_and_names_are_displayed(paired_results):
    names = {"mtl": "MTL", "r2d2": "R2D2"}
    frame = paired_comparisons(paired_results, baseline="r2d2",
                               display=lambda m: names.get(m, m.upper()))
    mtl = _row(frame, "MTL")  # MTL has no native protocol of its own but R2D2 has: two rows
    assert set(frame[frame["method"] == "MTL"]["protocol"]) == {"unified", "native"}
    assert mtl["baseline"] == "R2D2"
    forward = _row(paired_comparisons(paired_results, baseline="mtl"), "r2d2")
    assert mtl["mean_diff"] == pytest.approx(-forward["mean_diff"])
    assert mtl["p_value"] == pytest.approx(forward["p_value"])
    assert "MAML failed for seed 2" in _row(frame, "MAML")["note"]


def test_methods_without_native_adaptation_on_both_sides_get_one_row(paired_results):
    results = copy.deepcopy(paired_results)
    for r in results:
        if r["config"]["method"] == "r2d2" and r["status"] == "ok":
            r["native_is_unified"] = True
    frame = paired_comparisons(results, baseline="mtl")
    assert list(frame[frame["method"] == "r2d2"]["protocol"]) == ["unified (= native)"]
    assert _row(frame, "r2d2", "unified (= native)")["paired_seeds"] == "0, 1, 2"


def test_two_baseline_variants_are_told_apart_never_averaged(paired_results):
    results = copy.deepcopy(paired_results)
    extra = []
    for r in results:
        if r["config"]["method"] == "mtl":
            other = copy.deepcopy(r)
            other["config"]["budget"]["backbone"] = "conv4-32"
            other["test"]["unified"]["accuracies"] = [a - 1.0 for a in
                                                      r["test"]["unified"]["accuracies"]]
            extra.append(other)
    frame = paired_comparisons(results + extra, baseline="mtl")
    rows = frame[(frame["method"] == "r2d2") & (frame["protocol"] == "unified")]
    assert sorted(rows["baseline_variant"]) == ["backbone=conv4-32", "backbone=conv4-64"]
    by_variant = dict(zip(rows["baseline_variant"], rows["mean_diff"]))
    assert by_variant["backbone=conv4-32"] == pytest.approx(by_variant["backbone=conv4-64"] + 1)
    assert set(rows["variant"]) == {""}  # r2d2 has one arm: no variant label


def test_different_sweep_settings_are_different_cells(paired_results):
    results = copy.deepcopy(paired_results)
    for r in results:
        if r["config"]["method"] == "r2d2":
            r["config"]["precision"] = "bf16"
    frame = paired_comparisons(results, baseline="mtl")
    r2d2 = frame[frame["method"] == "r2d2"]
    assert set(r2d2["settings"]) == {"precision=bf16"}
    assert set(r2d2["note"]) == {"no mtl run in this cell"}


def test_the_same_run_twice_is_an_error(paired_results):
    twice = paired_results + [copy.deepcopy(paired_results[-1])]
    with pytest.raises(ValueError, match="two finished results for the same run"):
        paired_comparisons(twice, baseline="mtl")


def test_a_bad_margin_is_refused(paired_results):
    with pytest.raises(ValueError, match="margin"):
        paired_comparisons(paired_results, baseline="mtl", margin=-1.0)


# --- Holm's correction ------------------------------------------------------------------------

def test_holm_by_hand():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> 0.06 (the
    # step-down never lowers an adjusted p below an earlier one); NaN: outside the family (m = 4)
    adjusted = holm([0.01, 0.04, 0.03, 0.005, math.nan])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4])
    assert holm([0.3, 0.6]) == pytest.approx([0.6, 0.6])  # ties at the top, capped nowhere
    assert holm([0.7, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == pytest.approx([0.02])  # a family of one: unchanged
    assert holm([]).size == 0 and math.isnan(holm([math.nan])[0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.5, 1.5])


def test_holm_accepts_the_edges_of_0_1_and_refuses_a_table_of_p_values():
    # p = 0 and p = 1 are p-values (an exact test can give either); 0 x m stays 0
    assert holm([0.0, 0.5]) == pytest.approx([0.0, 0.5])
    assert holm([1.0, 0.2]) == pytest.approx([1.0, 0.4])
    with pytest.raises(ValueError, match=r"flat list of p-values, got shape \(2, 1\)"):
        holm([[0.1], [0.2]])


@pytest.fixture
def multipletests(monkeypatch):
    """statsmodels' ``multipletests`` (the `test` extra's oracle for Holm's correction). It calls
    ``gc.collect()`` on every call, a fifth of a second with torch loaded: disabled here."""
    import gc

    from statsmodels.stats.multitest import multipletests as oracle

    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    return oracle


def test_holm_agrees_with_statsmodels(multipletests):
    rng = np.random.default_rng(0)
    for m in (1, 2, 3, 6, 17):
        for _ in range(20):
            p = rng.uniform(0, 0.2, m) ** rng.uniform(0.5, 3)
            p[rng.integers(0, m)] = p[0]  # a tie
            expected = multipletests(p, alpha=0.05, method="holm")[1]
            assert holm(p) == pytest.approx(expected, abs=1e-15), p


def test_verdict_from_p_is_the_ci_rule(paired_results):
    # the TOST p < 5% iff the 90% CI lies inside the margin; two-sided p < 5% iff the 95% CI
    # excludes 0: the rule on the raw p-values gives the uncorrected verdict on every row
    for margin in (0.3, 1.0, 5.0):
        frame = paired_comparisons(paired_results, baseline="mtl", margin=margin)
        paired = frame[frame["verdict"] != NOT_PAIRED]
        assert len(paired) == 6
        for row in paired.itertuples():
            assert verdict_from_p(row.p_value, row.p_tost, row.mean_diff) == row.verdict
    assert verdict_from_p(0.01, 0.2, -1.0) == WORSE and verdict_from_p(0.01, 0.2, 1) == BETTER
    assert verdict_from_p(math.nan, math.nan, 0.0) == INCONCLUSIVE
    # either p-value undefined: inconclusive; 5% itself is not below 5%
    assert verdict_from_p(math.nan, 0.01, 1.0) == verdict_from_p(0.01, math.nan, 1.0) \
        == INCONCLUSIVE
    assert verdict_from_p(0.5, 0.05, 0.1) == verdict_from_p(0.05, 0.5, 2.0) == INCONCLUSIVE


def test_holm_per_family_on_the_fixture(paired_results, multipletests):
    frame = paired_comparisons(paired_results, baseline="mtl")
    family = frame[frame["shots"] == 1]  # 3 methods x 2 protocols against mtl's one arm
    assert set(family["holm_m"]) == {6}
    for raw, adjusted in (("p_value", "p_value_holm"), ("p_tost", "p_tost_holm")):
        assert list(family[adjusted]) == pytest.approx(
            list(multipletests(family[raw], method="holm")[1]), rel=1e-12)
    for row in family.itertuples():  # p_holm: the test the uncorrected verdict rests on
        assert row.p_holm == (row.p_tost_holm if row.verdict == EQUIVALENT
                              else row.p_value_holm)
    verdicts = {(m, p): (v, h) for m, p, v, h in zip(frame["method"], frame["protocol"],
                                                     frame["verdict"], frame["verdict_holm"])}
    assert verdicts == {
        # p ~ 1e-21 and 1e-16: still worse after multiplying by 6 and 5
        ("maml", "unified"): (WORSE, WORSE), ("maml", "native"): (WORSE, WORSE),
        # p = 0.020 and 0.021 (third and fourth smallest): 4 x 0.020 = 0.080 > 5%
        ("protonet", "unified"): (WORSE, INCONCLUSIVE),
        ("protonet", "native"): (WORSE, INCONCLUSIVE),
        # TOST p = 0.025 and 0.046 (the two smallest TOST p): 6 x 0.025 = 0.15 > 5%
        ("r2d2", "unified"): (EQUIVALENT, INCONCLUSIVE),
        ("r2d2", "native"): (EQUIVALENT, INCONCLUSIVE),
        ("anil", "unified"): (NOT_PAIRED, NOT_PAIRED), ("anil", "native"): (NOT_PAIRED, NOT_PAIRED)}
    anil = frame[frame["method"] == "anil"]  # not paired: outside every family
    assert set(anil["holm_m"]) == {0} and anil["p_holm"].isna().all()


def test_each_baseline_variant_is_a_family_and_unpaired_rows_do_not_count(paired_results):
    results = copy.deepcopy(paired_results)
    extra = []
    for r in results:
        if r["config"]["method"] == "mtl":
            other = copy.deepcopy(r)
            other["config"]["budget"]["backbone"] = "conv4-32"
            extra.append(other)
        if r["config"]["method"] == "protonet" and r["status"] == "ok":
            r["episode_hash"] = "f" * 64  # protonet no longer pairs: 2 rows leave each family
    frame = paired_comparisons(results + extra, baseline="mtl")
    tested = frame[frame["verdict"] != NOT_PAIRED]
    assert set(tested["baseline_variant"]) == {"backbone=conv4-32", "backbone=conv4-64"}
    assert set(tested["holm_m"]) == {4}  # maml and r2d2, 2 protocols, per baseline variant
    assert set(frame[frame["verdict"] == NOT_PAIRED]["holm_m"]) == {0}
    footer = holm_footer(frame)
    assert footer.count("4 comparisons in glyphs 5-way 1-shot quick against mtl (backbone=") == 2


def test_markdown_shows_holm_next_to_the_uncorrected_verdict(paired_results):
    frame = paired_comparisons(paired_results, baseline="mtl")
    text = comparison_markdown(frame)
    assert "| p | verdict | p (Holm) | verdict (Holm) | note |" in text
    assert ("| 0.152 (TOST) | inconclusive |") in text  # r2d2 unified: 6 x 0.02525
    assert text.endswith("Holm's correction was applied over 6 comparisons in glyphs 5-way "
                         "1-shot quick against mtl.\n")
    assert "per family = every paired row of one dataset, ways, shots, budget" in text
    assert list(frame.columns[-len(HOLM_COLUMNS) - 1:-1]) == HOLM_COLUMNS  # before "note"


# --- Markdown and CSV ------------------------------------------------------------------------

def test_markdown_states_the_method_and_the_margin(paired_results):
    frame = paired_comparisons(paired_results, baseline="mtl", margin=0.5)
    text = comparison_markdown(frame, margin=0.5)
    assert comparison_footer(0.5) + "\n" in text
    assert "90% CI lies inside (-0.5, +0.5)" in text and "TOST" in text
    assert "paired-t 95% CI over episodes" in text and "over seeds (df = seeds - 1)" in text
    empty = comparison_markdown(frame.iloc[0:0], margin=0.5)
    assert empty == ("_No method to compare with the baseline._\n\n" + comparison_footer(0.5)
                     + "\n")


def test_markdown_shows_dashes_where_there_is_no_interval_and_settings_where_there_are(
        paired_results):
    one_episode = [copy.deepcopy(r) for r in paired_results
                   if r["status"] == "ok" and r["config"]["seed"] == 0
                   and r["config"]["method"] in ("mtl", "r2d2") and r["config"]["shots"] == 1]
    for r in one_episode:
        for entry in r["test"].values():
            entry["accuracies"] = entry["accuracies"][:1]
    text = comparison_markdown(paired_comparisons(one_episode, baseline="mtl"))
    assert "| 1 | 1 | +3.36 [–, –] | – | inconclusive | – | inconclusive | one episode: no CI |" \
        in text
    assert "| settings |" not in text  # no row has sweep settings: no column
    other = copy.deepcopy(paired_results)
    for r in other:
        if r["config"]["method"] == "r2d2":
            r["config"]["precision"] = "bf16"
    text = comparison_markdown(paired_comparisons(other, baseline="mtl"))
    assert "| dataset | budget | settings | method | baseline |" in text
    assert "| glyphs 5-way 1-shot | quick | precision=bf16 | r2d2 | mtl |" in text


def _ok_runs(results, methods):
    return [copy.deepcopy(r) for r in results if r["status"] == "ok"
            and r["config"]["method"] in methods and r["config"]["shots"] == 1]


def test_markdown_names_both_arms_variants_and_keeps_cells_apart(paired_results):
    runs = _ok_runs(paired_results, ("mtl", "r2d2"))
    for r in list(runs):
        other = copy.deepcopy(r)
        other["config"]["budget"]["backbone"] = "conv4-32"
        runs.append(other)
    frame = paired_comparisons(runs, baseline="mtl")
    frame.loc[0, "note"] = "a | b"  # a cell's own "|" would split the row
    text = comparison_markdown(frame)
    assert "| r2d2 (backbone=conv4-32) | mtl (backbone=conv4-64) | native |" in text
    assert "| r2d2 (backbone=conv4-64) | mtl (backbone=conv4-32) | unified |" in text
    assert text.split("\n")[2].endswith("| inconclusive | a / b |")


def test_holm_footer_names_each_family_by_its_settings_and_a_family_of_one(paired_results):
    runs = _ok_runs(paired_results, ("mtl", "r2d2", "protonet"))
    for r in list(runs):
        if r["config"]["method"] == "protonet":
            r["config"]["precision"] = "bf16"
        if r["config"]["method"] == "r2d2":  # one protocol row: a family of one
            r["native_is_unified"] = True
        if r["config"]["method"] == "mtl":
            other = copy.deepcopy(r)
            other["config"]["precision"] = "bf16"
            runs.append(other)
    frame = paired_comparisons(runs, baseline="mtl")
    assert holm_footer(frame) == (
        "Holm's correction was applied over 2 comparisons in glyphs 5-way 1-shot quick "
        "(precision=bf16) against mtl; 1 comparison in glyphs 5-way 1-shot quick "
        "(precision=fp32) against mtl (a family of one: nothing to correct).")
    untested = frame.assign(holm_m=0)  # no row with a p-value: nothing to say
    assert holm_footer(untested) == ""
    assert comparison_markdown(untested).endswith("\n\n" + comparison_footer() + "\n")


def test_seeds_without_a_protocol_result_or_with_other_episode_counts_are_left_out(
        paired_results):
    runs = _ok_runs(paired_results, ("mtl", "r2d2"))
    by = {(r["config"]["method"], r["config"]["seed"]): r for r in runs}
    del by["r2d2", 1]["test"]["native"]  # the method lacks seed 1's native result
    del by["mtl", 2]["test"]["unified"]  # the baseline lacks seed 2's (its native is unified)
    by["r2d2", 0]["test"]["unified"]["accuracies"].pop()  # 39 accuracies, the same hash
    frame = paired_comparisons(runs, baseline="mtl")
    native, unified = _row(frame, "r2d2", "native"), _row(frame, "r2d2", "unified")
    assert (native["paired_seeds"], native["note"]) == (
        "0", "paired seed 0 only; seed 1: no native result for r2d2; seed 2: no native result "
        "for mtl")
    assert (unified["paired_seeds"], unified["note"]) == (
        "1", "paired seed 1 only; seed 0: same episode hash but 39 vs 40 accuracies; seed 2: "
        "no unified result for mtl")


def test_seeds_on_one_side_only_name_the_side_that_lacks_them(paired_results):
    runs = [r for r in _ok_runs(paired_results, ("mtl", "r2d2"))
            if (r["config"]["method"], r["config"]["seed"]) != ("mtl", 2)]
    row = _row(paired_comparisons(runs, baseline="mtl"), "r2d2")
    assert row["note"] == "paired seeds 0, 1 only; no mtl result for seed 2"


def test_the_margin_reaches_the_verdict(paired_results):
    # r2d2 unified: -0.54, 90% CI inside (-1, +1) but not inside (-0.5, +0.5); 95% CI below 0
    wide = _row(paired_comparisons(paired_results, baseline="mtl"), "r2d2")
    narrow = _row(paired_comparisons(paired_results, baseline="mtl", margin=0.5), "r2d2")
    assert (wide["verdict"], narrow["verdict"], narrow["margin"]) == (EQUIVALENT, WORSE, 0.5)
    assert narrow["p_tost"] > wide["p_tost"]
    without_pairs = _ok_runs(paired_results, ("r2d2",))  # refused before any work, even
    for bad in (0.0, -1.0, math.inf, math.nan):  # where no pair would test the margin
        for runs in (paired_results, without_pairs):
            with pytest.raises(ValueError, match="equivalence margin must be a positive number"):
                paired_comparisons(runs, baseline="mtl", margin=bad)


def test_every_method_of_a_cell_without_the_baseline_gets_its_rows(paired_results):
    runs = _ok_runs(paired_results, ("mtl", "r2d2", "protonet"))
    for r in runs:
        if r["config"]["method"] != "mtl":
            r["config"]["precision"] = "bf16"
    frame = paired_comparisons(runs, baseline="mtl")
    assert sorted(frame["method"]) == ["protonet", "protonet", "r2d2", "r2d2"]
    assert set(frame["note"]) == {"no mtl run in this cell"}


def test_untested_rows_have_holm_columns_of_their_own_kind(paired_results):
    one_episode = _ok_runs([r for r in paired_results if r["config"]["seed"] == 0],
                           ("mtl", "r2d2"))
    for r in one_episode:
        for entry in r["test"].values():
            entry["accuracies"] = entry["accuracies"][:1]
    frame = paired_comparisons(one_episode, baseline="mtl")
    assert list(frame["holm_m"]) == [0, 0] and frame["holm_m"].dtype.kind == "i"
    for column in ("p_value_holm", "p_tost_holm", "p_holm"):
        assert frame[column].dtype.kind == "f" and frame[column].isna().all(), column
    assert list(frame["verdict_holm"]) == [INCONCLUSIVE, INCONCLUSIVE]


def test_p_values_below_a_thousandth_are_shown_as_such():
    assert (_p_text(0.0004), _p_text(0.001), _p_text(0.0123), _p_text(math.nan)) == (
        "<0.001", "0.001", "0.012", "–")


def test_markdown_marks_a_significant_difference_inside_the_margin():
    results = load_results(PAIRED)
    frame = paired_comparisons(results, baseline="mtl")
    row = _row(frame, "r2d2", "native")
    assert row["verdict"] == EQUIVALENT and row["significant"]
    assert "equivalent (better by a significant +0.62, within the margin)" in \
        comparison_markdown(frame)


def test_comparison_matches_golden_files(paired_results, tmp_path):
    frame = paired_comparisons(paired_results, baseline="mtl")
    outputs = {"comparison.csv": comparison_csv(frame),
               "comparison.md": comparison_markdown(frame)}
    if os.environ.get("UPDATE_GOLDEN") == "1":  # regenerate after an intended change
        GOLDEN.mkdir(exist_ok=True)
        for name, text in outputs.items():
            (GOLDEN / name).write_text(text)
    for name, text in outputs.items():
        assert text == (GOLDEN / name).read_text(), name
