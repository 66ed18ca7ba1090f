"""Run-level intervals (dng_jax/evaluation/run_level.py), their critical values, power and planner:
NumPy references on tiny hand-computed tables, a small coverage check, Holm families and verdicts."""

import numpy as np
import pytest
from scipy import stats

from dng_jax.evaluation import critical_values as cv
from dng_jax.evaluation import run_level as rl
from dng_jax.evaluation.design_power import (VarianceComponents, detectable_difference, expected_se_df,
                                             plan_designs, plan_markdown)
from dng_jax.evaluation.design_simulation import SimulationModel, coverage, simulate_nested
from dng_jax.evaluation.statistics import holm

T975 = stats.t.ppf(0.975, [1, 2, 3, 4, 5, 6, 7])


def test_runs_without_image_variation_give_the_textbook_t_interval():
    """Each run shifts every image alike (no image effect, no residual): the interval is the t-interval
    over the run means, R - 1 df."""
    shifts = np.array([0.03, -0.01, 0.05, 0.02])
    res = rl.conditional(shifts[:, None] + np.zeros((4, 12)), np.zeros(12), ["a"] * 6 + ["b"] * 6)
    se = shifts.std(ddof=1) / 2
    assert res.estimate == pytest.approx(shifts.mean())
    assert res.se == pytest.approx(se)
    assert res.df == pytest.approx(3)
    assert (res.low, res.high) == pytest.approx((shifts.mean() - T975[2] * se, shifts.mean() + T975[2] * se))
    assert res.p == pytest.approx(2 * stats.t.sf(shifts.mean() / se, 3))
    assert res.claim == rl.CONDITIONAL


def test_one_run_is_the_t_interval_over_the_images():
    rng = np.random.default_rng(0)
    y, x = rng.uniform(0, 1, 15), rng.uniform(0, 1, 15)
    res = rl.conditional(y, x)
    d = y - x
    ref = stats.ttest_1samp(d, 0.0)
    assert res.se == pytest.approx(d.std(ddof=1) / np.sqrt(15))
    assert res.df == pytest.approx(14) and res.p == pytest.approx(ref.pvalue)
    assert res.low == pytest.approx(d.mean() - stats.t.ppf(0.975, 14) * res.se)
    assert res.claim == rl.THESE_NETWORKS


def _anova(d):
    """Two-way ANOVA mean squares of ``d`` (T, N), one stratum."""
    t, n = d.shape
    g = d.mean()
    ms_top = n * np.sum((d.mean(1) - g) ** 2) / (t - 1)
    ms_img = t * np.sum((d.mean(0) - g) ** 2) / (n - 1)
    e = d - d.mean(1, keepdims=True) - d.mean(0, keepdims=True) + g
    return ms_top, ms_img, np.sum(e ** 2) / ((t - 1) * (n - 1))


def test_one_stratum_variance_is_the_two_way_anova_margins():
    """V = (MS_top + MS_img) / (T N): the margins' mean squares (the residual counted in both)."""
    rng = np.random.default_rng(1)
    d = 0.02 + rng.normal(0, 0.02, (3, 1)) + rng.normal(0, 0.1, 9) + rng.normal(0, 0.01, (3, 9))
    res = rl.conditional(d, np.zeros(9))
    ms_top, ms_img, _ = _anova(d)
    assert res.se ** 2 == pytest.approx((ms_top + ms_img) / (3 * 9))
    assert [(p.name, p.top) for p in res.parts] == [("runs", True), ("images", False)]
    assert [p.df for p in res.parts] == pytest.approx([2, 8])


def test_strata_weigh_by_their_size_and_keep_their_own_variance():
    """R = 1, two strata: V = sum_s w_s² s²_s / n_s with Satterthwaite's df over the strata."""
    a, b = np.array([0.1, 0.3, 0.2, 0.6]), np.array([0.5, 0.52, 0.49])
    res = rl.conditional(np.concatenate([a, b]), np.zeros(7), ["a"] * 4 + ["b"] * 3)
    terms = np.array([(4 / 7) ** 2 * a.var(ddof=1) / 4, (3 / 7) ** 2 * b.var(ddof=1) / 3])
    assert res.estimate == pytest.approx(np.concatenate([a, b]).mean())
    assert res.se ** 2 == pytest.approx(terms.sum())
    assert res.df == pytest.approx(terms.sum() ** 2 / (terms[0] ** 2 / 3 + terms[1] ** 2 / 2))


def test_a_type_of_one_image_borrows_the_pooled_variance_and_none_at_all_gives_no_verdict():
    d = np.array([0.1, 0.3, 0.2, 0.5, 0.9])  # one run; types a (3 images), b (1), c (1)
    res = rl.conditional(d, np.zeros(5), ["a", "a", "a", "b", "c"])
    pooled = np.var([0.1, 0.3, 0.2], ddof=1)  # a's; b and c borrow it
    assert res.se ** 2 == pytest.approx((3 + 1 + 1) * pooled / 25)  # sum_s n_s s²_s / N²
    lone = rl.conditional(d, np.zeros(5), list("vwxyz"))
    assert np.isnan(lone.se) and rl.verdict(lone, lone.p).word == "no verdict"


def test_nested_runs_on_baselines_are_the_table_of_baseline_means_and_may_be_ragged():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (3, 10))
    runs = [x[b] + 0.05 + rng.normal(0, 0.03, (r, 10)) for b, r in enumerate((2, 4, 3))]
    res = rl.nested(runs, x)
    means = np.stack([r.mean(0) for r in runs]) - x
    ref = rl.conditional(means, np.zeros(10))  # the same crossed table, top units the baselines
    assert res.claim == rl.GENERAL and "2/3/4 runs on each of 3 baselines" in res.design
    assert (res.estimate, res.se, res.low, res.high) == pytest.approx((ref.estimate, ref.se, ref.low, ref.high))
    one = rl.nested(np.stack([runs[1]]), x[1:2])
    assert one.claim == rl.CONDITIONAL and one.se == pytest.approx(rl.conditional(runs[1], x[1]).se)


def test_unpaired_is_welch_plus_the_image_level():
    """A top term per side (Welch) and the image term of the per-image difference of means."""
    rng = np.random.default_rng(3)
    img = rng.normal(0, 0.1, 20)
    y = 0.5 + img + rng.normal(0, 0.03, (3, 1)) + rng.normal(0, 0.01, (3, 20))
    x = 0.4 + rng.normal(0, 0.02, (2, 1)) + rng.normal(0, 0.01, (2, 20))
    res = rl.unpaired(y, x)
    image = (y.mean(0) - x.mean(0)).var(ddof=1) / 20
    assert res.se ** 2 == pytest.approx(y.mean(1).var(ddof=1) / 3 + x.mean(1).var(ddof=1) / 2 + image)
    assert [p.df for p in res.parts] == pytest.approx([2, 1, 19])
    assert res.claim == rl.RECIPES
    assert rl.unpaired(y, x[:1]).claim == rl.REFERENCE and rl.unpaired(y[:1], x[:1]).claim == rl.THESE_NETWORKS


def test_ensemble_takes_its_run_level_from_the_members_on_one_baseline():
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, (2, 12))
    members = x[:, None] + 0.02 + rng.normal(0, 0.02, (2, 4, 1)) + rng.normal(0, 0.05, (2, 4, 12))
    e = members.mean(1) + 0.01 + rng.normal(0, 0.01, (2, 12))
    one = rl.ensemble(e[:1], members[:1], x[:1])
    d_members = members[0] - x[0]
    assert one.claim == rl.CONDITIONAL and one.estimate == pytest.approx((e[0] - x[0]).mean())
    assert one.parts[0].variance == pytest.approx(d_members.mean(1).var(ddof=1) / 4)
    two = rl.ensemble(e, members, x)
    ref = rl.conditional(e - x, np.zeros(12))
    assert two.claim == rl.GENERAL and two.se == pytest.approx(ref.se)


def test_leading_axes_give_the_results_of_a_loop():
    rng = np.random.default_rng(5)
    y, x = rng.uniform(0, 1, (6, 3, 9)), rng.uniform(0, 1, (6, 9))
    strata = ["a"] * 4 + ["b"] * 5
    many = rl.conditional(y, x, strata)
    for i in range(6):
        one = rl.conditional(y[i], x[i], strata)
        assert (many.estimate[i], many.low[i], many.high[i], many.p[i]) == pytest.approx(
            (one.estimate, one.low, one.high, one.p))


def test_two_way_components_recover_an_exact_table():
    top, img = np.array([0.0, 0.04, -0.02]), np.array([0.1, -0.1, 0.05, 0.0, 0.2, -0.2])
    c = rl.two_way_components(top[:, None] + img[None] + 0.01, ["a"] * 3 + ["b"] * 3)
    assert c.residual == pytest.approx([0, 0], abs=1e-12)
    assert c.top == pytest.approx(top.var(ddof=1))
    assert c.image == pytest.approx([img[:3].var(ddof=1), img[3:].var(ddof=1)])
    assert c.sizes.tolist() == [3, 3] and c.labels == ("a", "b")


def test_critical_values_agree_with_their_p_values_and_limits():
    share, k = np.array([0.0, 0.2, 0.5, 0.9, 1.0]), 2
    c = cv.critical_values(share, k)
    assert np.all(np.diff(c, axis=-1) >= 0)  # a smaller alpha, a larger critical value
    j = list(cv.ALPHAS).index(0.05)
    assert cv.p_value(c[:, j], share, k) == pytest.approx(0.05, rel=1e-6)
    assert c[0, j] == pytest.approx(stats.norm.ppf(0.975))  # nothing at the top: the normal quantile
    assert c[-1, j] == pytest.approx(T975[1], rel=0.03)  # all at the top: about t_2
    assert cv.critical_values(0.0, 3, 20)[j] == pytest.approx(stats.t.ppf(0.975, 20))


def _model(run_sd, baseline_sd):
    return SimulationModel(sizes=(12, 8, 20), gains=(0.02, -0.03, 0.01), image=(0.03, 0.02, 0.05),
                           residual=(0.04, 0.03, 0.05), run=run_sd, run_stratum=(0.01, 0.0, 0.01),
                           baseline=baseline_sd, baseline_image=(0.02, 0.02, 0.03))


@pytest.mark.parametrize("baselines, runs", [(1, 3), (2, 4), (3, 2)])
def test_intervals_cover_their_claim(baselines, runs):
    """300 simulated experiments per design; the full study (4000 each) is scripts/studies/coverage_study.py."""
    sim = simulate_nested(np.random.default_rng(baselines * 10 + runs), _model(0.02, 0.03), 300, baselines, runs)
    res = rl.nested(sim.d, np.zeros(sim.d.shape[:2] + sim.d.shape[-1:]), sim.strata)
    truth = sim.conditional if baselines == 1 else sim.general
    share, _ = coverage(res.low, res.high, truth)
    assert 0.90 <= share <= 0.99


def test_unpaired_covers():
    rng = np.random.default_rng(7)
    y = simulate_nested(rng, _model(0.03, 0.0), 300, 1, 3)
    x = simulate_nested(rng, _model(0.02, 0.0)._replace(gains=(0, 0, 0), image=(0, 0, 0)), 300, 1, 2)
    res = rl.unpaired(y.d[:, 0], x.d[:, 0], y.strata)
    assert 0.90 <= coverage(res.low, res.high, y.general)[0] <= 0.99


def _result(estimate, low, high, p, claim=rl.GENERAL):
    return rl.RunLevel(estimate, low, high, 0.01, 3.0, p, "design", claim, ())


def test_holm_within_named_families():
    p = [0.01, 0.04, 0.03, 0.2, 0.001]
    fam = ["CT1", "CT1", "unknown", "unknown", "CT1"]
    out = rl.holm_by_family(p, fam)
    assert out[[0, 1, 4]] == pytest.approx(holm([0.01, 0.04, 0.001]))
    assert out[[2, 3]] == pytest.approx(holm([0.03, 0.2]))


def test_verdict_needs_the_interval_and_holm_and_a_design_that_carries_the_claim():
    assert rl.verdict(_result(0.05, 0.01, 0.09, 0.001), 0.004).word == "better"
    assert rl.verdict(_result(-0.05, -0.09, -0.01, 0.001), 0.004).mark == "✗"
    held = rl.verdict(_result(0.05, 0.01, 0.09, 0.02), 0.08)
    assert held.word == "not established" and "Holm-adjusted p 0.08" in held.reason
    assert rl.verdict(_result(0.02, -0.01, 0.05, 0.2), 0.2).reason == "the interval includes 0"
    conditional = _result(0.05, 0.01, 0.09, 0.001, rl.CONDITIONAL)
    assert rl.verdict(conditional, 0.004).word == "better"  # its own claim
    general = rl.verdict(conditional, 0.004, rl.GENERAL)
    assert general.word == "no claim" and general.mark == "" and "B = 1" in general.reason
    assert "R = 1" in rl.verdict(_result(0.05, 0.01, 0.09, 0.001, rl.THESE_NETWORKS), 0.004,
                                 rl.CONDITIONAL).reason
    assert rl.verdict(_result(0.05, 0.01, 0.09, float("nan"))._replace(se=float("nan")), float("nan")).word == \
        "no verdict"
    judged = rl.judge([_result(0.05, 0.01, 0.09, p) for p in (0.001, 0.04, 0.03)], ["a", "a", "a"])
    assert [v.word for _, v in judged] == ["better", "not established", "not established"]
    assert [h for h, _ in judged] == pytest.approx([0.003, 0.06, 0.06])


def test_detectable_difference_is_the_textbook_formula():
    se, df, m = 0.01, 4.0, 12
    want = (stats.t.ppf(1 - 0.05 / (2 * m), df) + stats.t.ppf(0.8, df)) * se
    assert detectable_difference(se, df, m) == pytest.approx(want)


def test_expected_se_of_a_design_and_the_planner():
    c = VarianceComponents(between_baseline=4e-4, between_run=2e-4, image=0.01, residual=0.02, n_images=60,
                           n_strata=4, baseline_image=0.005)
    se, df = expected_se_df(c, 3, 4)  # the analysis' two terms: the residual sits in both
    top, img = (4e-4 + 2e-4 / 4 + (0.005 + 0.02 / 4) / 60) / 3, (0.01 + (0.005 + 0.02 / 4) / 3) / 60
    assert se ** 2 == pytest.approx(top + img)
    assert df == pytest.approx((top + img) ** 2 / (top ** 2 / 2 + img ** 2 / 56))
    se1, df1 = expected_se_df(c, 1, 4)
    top, img = (2e-4 + 0.02 / 60) / 4, (0.015 + 0.02 / 4) / 60
    assert se1 ** 2 == pytest.approx(top + img)
    assert df1 == pytest.approx((top + img) ** 2 / (top ** 2 / 3 + img ** 2 / 56))
    assert expected_se_df(c, 1, 1) == pytest.approx((np.sqrt((0.015 + 0.02) / 60), 56))
    rows = plan_designs(c, 0.075, 3, baselines=(2, 4), runs=(1, 2, 4))
    assert [(r.baselines, r.runs) for r in rows] == [(2, 1), (2, 2), (2, 4), (4, 1), (4, 2), (4, 4)]
    for r in rows:
        assert r.detectable == pytest.approx(float(detectable_difference(*expected_se_df(c, r.baselines, r.runs), 3)))
        assert r.reaches == (r.detectable <= 0.075)
    assert all(r.baselines == 1 for r in plan_designs(c, 0.05, claim=rl.CONDITIONAL))
    table = plan_markdown(rows, 0.075)
    assert "| 4 | 2 | 12 |" in table  # the fewest runs on 4 baselines that reach 0.075
    assert "| 2 | 4 | 10 |" in table and "(> 0.075)" in table  # 2 baselines never do: the most tried
