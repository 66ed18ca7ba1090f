"""Critical values and p-values for a difference whose variance has a top level with few df.

The variance of a difference of MAPs is ``V = v_top + v_image``: a top level estimated from the few
replicated trainings (k = 1-3 df from 2-4 of them) and an image level estimated from tens of images.
Two textbook answers miss with few df (simulations in docs/statistics.md):

- Satterthwaite's t with one estimated df undercovers (87-91% for a 95% interval at k = 1): when the top
  term comes out small by chance, the estimated df comes out large as well, so the interval is short
  twice; its p-values at Holm's small thresholds err far more (p < 0.001 4 to 52 times as often as
  0.001 under no difference);
- the generalized pivot (Behrens and Fisher's fiducial answer) is valid but wide (96-98% at k = 1).

So, as Aspin and Welch did for two samples, the critical value is a function of k and of the *observed*
top share ``r = v_top / V``, fitted once by minimax over the true share (scripts/studies/calibrate_critical_values.py,
which printed :data:`TABLE`):

    c(r) = z + (C - z) (1 - exp(-(r / s)^q)) + t_{m / (1 - r)²} - z,

z the normal quantile, (C, s, q) from the table for (k, alpha), the last term for the image level's own
m df at its weight in Satterthwaite's ``1 / df = r² / k + (1 - r)² / m`` (an image level of few df but a
small share then costs little). For alpha >= 0.05 the fit centres the error rate on alpha (at k = 1
within ±17% of it at every true share, ±5% at k = 2, ±2% at k = 3); below, where only p-values and
Holm's thresholds look, it keeps the error rate at or below alpha (conservative by up to several fold at
k = 1: no function of r does better with 1 df). Between tabulated k and alpha: linear in 1/k and in log
alpha; beyond k = 48: Satterthwaite's t. p is the alpha whose critical value equals ``|estimate| / se``,
reported as :data:`SMALLEST_P` below the table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import special, stats

__all__ = ["calibrated_interval", "critical_values", "p_value", "effective_df", "TABLE", "SMALLEST_P"]

TABLE = """\
k,alpha,C,s,q,error_low,error_high
1,0.8,0.47004,1.3327,3.1804,-0.000,+0.000
1,0.5,1.0762,0.87409,3.8929,-0.001,+0.001
1,0.3,1.9606,0.71467,4.4876,-0.006,+0.006
1,0.2,3.0165,0.60729,4.7481,-0.022,+0.022
1,0.1,5.8394,0.35111,7.6084,-0.074,+0.074
1,0.05,10.669,0.14977,29.946,-0.171,+0.171
1,0.02,29.012,0.042776,6.1852,-0.585,-0.000
1,0.01,50.274,0.016566,5.192,-0.745,-0.000
1,0.005,120.39,0.0026177,19985,-0.814,-0.004
1,0.002,1.5244e+12,0.00049601,363.4,-0.912,-0.000
1,0.001,6.0152e+14,0.00012915,1247.8,-0.952,-0.070
1,0.0005,1.5555e+15,4.3159e-05,1743.3,-0.970,-0.007
1,0.0002,1.0455e+06,1.0536e-05,33.469,-0.988,-0.000
1,0.0001,3.0654e+10,1.8863e-06,256.21,-0.993,-0.092
2,0.8,0.42672,1.7677,2.5903,-0.000,+0.000
2,0.5,0.86296,0.90682,3.2349,-0.001,+0.001
2,0.3,1.488,0.8775,3.1051,-0.001,+0.001
2,0.2,1.9476,0.776,3.2912,-0.003,+0.003
2,0.1,2.9213,0.67354,3.325,-0.017,+0.017
2,0.05,4.2135,0.57864,3.3182,-0.052,+0.052
2,0.02,7.0937,0.43476,2.9295,-0.228,-0.000
2,0.01,10.921,0.35321,2.691,-0.388,-0.000
2,0.005,13.984,0.19624,3.494,-0.487,-0.000
2,0.002,21.847,0.08675,4.8728,-0.644,-0.000
2,0.001,30.35,0.057653,4.7423,-0.749,-0.000
2,0.0005,44.476,0.027204,7.2482,-0.817,-0.000
2,0.0002,61.003,0.0079551,49.811,-0.882,-0.000
2,0.0001,78.974,0.0045526,54.737,-0.925,-0.000
3,0.8,0.38971,1.9958,2.4171,-0.000,+0.000
3,0.5,0.90389,1.3104,2.5431,-0.000,+0.000
3,0.3,1.3929,1.0326,2.6922,-0.001,+0.001
3,0.2,1.7453,0.87875,2.854,-0.002,+0.002
3,0.1,2.4516,0.78246,2.9168,-0.006,+0.005
3,0.05,3.2347,0.70256,2.9458,-0.018,+0.018
3,0.02,4.6152,0.61606,2.7174,-0.097,-0.000
3,0.01,5.8496,0.53418,2.7133,-0.175,-0.000
3,0.005,7.4439,0.4593,2.669,-0.270,-0.000
3,0.002,10.186,0.35082,2.7129,-0.422,-0.000
3,0.001,12.866,0.28125,2.749,-0.536,-0.000
3,0.0005,16.214,0.2127,2.8937,-0.636,-0.000
3,0.0002,22.475,0.12954,3.4916,-0.733,-0.000
3,0.0001,27.477,0.094387,3.5801,-0.811,-0.000
4,0.8,0.36744,2.1777,2.3115,-0.000,+0.000
4,0.5,0.87468,1.4619,2.4044,-0.000,+0.000
4,0.3,1.3573,1.1874,2.4849,-0.001,+0.000
4,0.2,1.6955,1.0257,2.5827,-0.001,+0.001
4,0.1,2.2815,0.8748,2.6989,-0.002,+0.002
4,0.05,2.9119,0.79174,2.7349,-0.008,+0.008
4,0.02,4.0871,0.80144,2.2444,-0.092,-0.000
4,0.01,4.6968,0.64271,2.6076,-0.095,+0.000
4,0.005,5.6544,0.59134,2.575,-0.149,-0.000
4,0.002,7.1873,0.51645,2.5202,-0.258,-0.000
4,0.001,8.6686,0.46428,2.4787,-0.354,-0.000
4,0.0005,10.285,0.39884,2.5245,-0.445,-0.000
4,0.0002,12.993,0.32389,2.541,-0.587,-0.000
4,0.0001,15.477,0.27285,2.5492,-0.674,-0.000
5,0.8,0.26596,0.72518,6.1074,-0.001,+0.001
5,0.5,0.87454,1.6746,2.3157,-0.000,+0.000
5,0.3,1.3068,1.2525,2.416,-0.000,+0.000
5,0.2,1.6617,1.145,2.4529,-0.001,+0.001
5,0.1,2.2011,0.96562,2.5541,-0.001,+0.001
5,0.05,2.7522,0.86603,2.6076,-0.004,+0.004
5,0.02,3.6744,0.84645,2.3678,-0.043,-0.000
5,0.01,4.3119,0.76432,2.4352,-0.063,-0.000
5,0.005,4.9448,0.68283,2.5141,-0.087,-0.000
5,0.002,5.9812,0.60738,2.4944,-0.162,-0.000
5,0.001,6.9254,0.56426,2.4618,-0.229,-0.000
5,0.0005,8.0204,0.52069,2.4206,-0.313,-0.000
5,0.0002,9.6736,0.45909,2.3943,-0.429,-0.000
5,0.0001,11.159,0.41014,2.4165,-0.512,-0.000
6,0.8,0.26488,0.75945,3.7198,-0.001,+0.001
6,0.5,0.86643,1.8312,2.2616,-0.000,+0.000
6,0.3,1.3156,1.4355,2.3229,-0.000,+0.000
6,0.2,1.6097,1.188,2.4123,-0.001,+0.001
6,0.1,2.1595,1.0594,2.4497,-0.001,+0.001
6,0.05,2.6855,0.96229,2.4584,-0.004,+0.004
6,0.02,3.4792,0.91445,2.3245,-0.031,+0.000
6,0.01,4.1131,0.86659,2.3416,-0.045,+0.000
6,0.005,4.6618,0.78306,2.3978,-0.064,-0.000
6,0.002,5.3733,0.6789,2.4838,-0.097,-0.000
6,0.001,6.0927,0.63714,2.4573,-0.148,-0.000
6,0.0005,6.8888,0.59716,2.4263,-0.211,-0.000
6,0.0002,8.0837,0.546,2.3856,-0.309,-0.000
6,0.0001,9.1104,0.50762,2.3604,-0.389,-0.000
8,0.8,0.35544,3.0942,2.1532,-0.000,+0.000
8,0.5,0.85979,2.1371,2.1925,-0.000,+0.000
8,0.3,1.2925,1.6411,2.243,-0.000,+0.000
8,0.2,1.6116,1.4491,2.2734,-0.000,+0.000
8,0.1,2.1094,1.2266,2.3282,-0.001,+0.001
8,0.05,2.565,1.0713,2.3879,-0.001,+0.001
8,0.02,3.3309,1.0827,2.2155,-0.021,+0.000
8,0.01,4.1054,1.1465,2.1495,-0.035,-0.000
8,0.005,4.3321,0.93224,2.2805,-0.041,-0.000
8,0.002,5.0507,0.87299,2.2726,-0.067,-0.000
8,0.001,5.3913,0.76858,2.3722,-0.078,+0.000
8,0.0005,5.8554,0.70824,2.4099,-0.103,-0.000
8,0.0002,6.6385,0.66193,2.3979,-0.157,-0.000
8,0.0001,7.2861,0.62993,2.3788,-0.210,-0.000
12,0.8,0.26739,1.3257,2.3679,-0.000,+0.000
12,0.5,0.84434,2.6038,2.1182,-0.000,+0.000
12,0.3,1.2828,2.0589,2.1556,-0.000,+0.000
12,0.2,1.5867,1.791,2.1785,-0.000,+0.000
12,0.1,2.05,1.4875,2.219,-0.000,+0.000
12,0.05,2.4882,1.3196,2.2519,-0.001,+0.001
12,0.02,3.1613,1.3123,2.1679,-0.008,+0.000
12,0.01,3.4913,1.1423,2.2417,-0.008,+0.000
12,0.005,3.688,0.91797,2.3368,-0.036,+0.000
12,0.002,4.1363,0.81853,2.409,-0.077,+0.000
12,0.001,4.3909,0.67276,2.5094,-0.238,+0.000
12,0.0005,5.0241,0.81336,2.3098,-0.083,+0.000
12,0.0002,5.6142,0.79856,2.3197,-0.083,+0.000
12,0.0001,6.111,0.80014,2.3115,-0.084,+0.000
24,0.8,0.25518,0.3153,1.9591,-0.001,+0.001
24,0.5,0.70853,1.5799,2.2315,-0.000,+0.000
24,0.3,1.2691,2.9812,2.0754,-0.000,+0.000
24,0.2,1.4895,2.1861,2.1135,-0.000,+0.000
24,0.1,1.9119,1.7973,2.1502,-0.000,+0.000
24,0.05,2.4162,1.8894,2.1247,-0.000,+0.000
24,0.02,2.929,1.7276,2.074,-0.005,-0.000
24,0.01,3.3666,1.7101,2.0779,-0.005,-0.000
24,0.005,3.7426,1.6176,2.0887,-0.008,-0.000
24,0.002,4.0151,1.3509,2.1566,-0.006,+0.000
24,0.001,4.2091,1.1899,2.1891,-0.015,+0.000
24,0.0005,4.7602,1.3271,2.1178,-0.017,+0.000
24,0.0002,5.0754,1.2032,2.1587,-0.018,+0.000
24,0.0001,5.4143,1.1844,2.1416,-0.027,+0.000
48,0.8,0.25473,0.73731,3.4482,-0.000,+0.000
48,0.5,0.69992,2.0226,2.1194,-0.000,+0.000
48,0.3,1.2371,4.038,2.0393,-0.000,+0.000
48,0.2,1.5177,3.4565,2.0483,-0.000,+0.000
48,0.1,1.8501,2.3241,2.0915,-0.000,+0.000
48,0.05,2.3816,2.7092,2.062,-0.000,+0.000
48,0.02,2.98,2.7213,2.0305,-0.001,-0.000
48,0.01,3.2078,2.2726,2.06,-0.001,+0.000
48,0.005,3.4631,2.0272,2.0706,-0.002,+0.000
48,0.002,3.7097,1.6736,2.0936,-0.005,+0.000
48,0.001,3.8496,1.4076,2.1223,-0.014,+0.000
48,0.0005,4.27,1.5705,2.105,-0.007,+0.000
48,0.0002,4.7188,1.6192,2.0712,-0.011,-0.000
48,0.0001,4.8904,1.4813,2.1171,-0.009,+0.000
"""  # printed by scripts/studies/calibrate_critical_values.py; error_*: error rate / alpha - 1, least and largest


def _parse(text: str):
    rows = np.array([[float(x) for x in line.split(",")[:5]] for line in text.strip().splitlines()[1:]])
    ks, alphas = np.unique(rows[:, 0]), np.sort(np.unique(rows[:, 1]))[::-1]
    shape = (ks.size, alphas.size)
    index = {(k, a): i for i, (k, a) in enumerate(rows[:, :2].tolist())}
    order = [index[(k, a)] for k in ks.tolist() for a in alphas.tolist()]
    return ks, alphas, *(rows[order, j].reshape(shape) for j in (2, 3, 4))


KS, ALPHAS, _C, _S, _Q = _parse(TABLE)
SMALLEST_P = float(ALPHAS[-1])


def _family(share, j, z):
    """``(..., A)``: the fitted critical values of tabulated k index ``j`` at every tabulated alpha."""
    with np.errstate(over="ignore"):  # (r / s)^q beyond float: the step is taken, exp(-inf) = 0
        return z + (_C[j] - z) * -np.expm1(-(share[..., None] / _S[j]) ** _Q[j])


def critical_values(share, k, image_df=np.inf) -> np.ndarray:
    """``(..., A)``: the critical value at every tabulated alpha (:data:`ALPHAS`, falling), for top
    share ``share``, top df ``k`` (>= 1; between tabulated k linear in 1/k) and image df."""
    share = np.asarray(share, np.float64)
    k = np.broadcast_to(np.maximum(np.asarray(k, np.float64), 1.0), share.shape)
    z = special.ndtri(1 - ALPHAS / 2)
    j = np.clip(np.searchsorted(KS, k, side="right") - 1, 0, KS.size - 2)
    w = np.clip((1 / k - 1 / KS[j]) / (1 / KS[j + 1] - 1 / KS[j]), 0.0, 1.0)[..., None]
    c = (1 - w) * _family(share, j, z) + w * _family(share, j + 1, z)
    with np.errstate(divide="ignore"):
        satterthwaite = stats.t.ppf(1 - ALPHAS / 2, (k / np.maximum(share, 1e-12) ** 2)[..., None])
    c = np.where((k > KS[-1])[..., None], satterthwaite, c)
    m = np.broadcast_to(np.asarray(image_df, np.float64), share.shape)
    with np.errstate(divide="ignore"):  # the image level's share of Satterthwaite's 1 / df
        c = c + stats.t.ppf(1 - ALPHAS / 2, (m / (1 - np.minimum(share, 1.0)) ** 2)[..., None]) - z
    return np.maximum.accumulate(c, axis=-1)  # a smaller alpha never gets a smaller critical value


def _interp_rows(x, xp, fp):
    """np.interp along the last axis, row by row (``xp`` rising in every row), clamped at both ends."""
    i = np.clip((xp < x[..., None]).sum(-1), 1, xp.shape[-1] - 1)[..., None]
    x0, x1 = np.take_along_axis(xp, i - 1, -1)[..., 0], np.take_along_axis(xp, i, -1)[..., 0]
    f0, f1 = np.take_along_axis(fp, i - 1, -1)[..., 0], np.take_along_axis(fp, i, -1)[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.clip(np.where(x1 > x0, (x - x0) / (x1 - x0), 0.0), 0.0, 1.0)
    return f0 + t * (f1 - f0)


def p_value(ratio, share, k, image_df=np.inf) -> np.ndarray:
    """The alpha whose critical value is ``ratio = |estimate| / se`` (log-linear between tabulated
    alphas, 1 at ratio 0; :data:`SMALLEST_P` beyond the table)."""
    ratio = np.asarray(ratio, np.float64)
    c = critical_values(np.broadcast_to(share, ratio.shape), k, image_df)
    xp = np.concatenate([np.zeros(c.shape[:-1] + (1,)), c], axis=-1)
    fp = np.broadcast_to(np.log(np.concatenate([[1.0], ALPHAS])), xp.shape)
    return np.exp(_interp_rows(ratio, xp, fp))


def effective_df(ratio, level: float):
    """The df of the t-distribution whose ``(1 + level) / 2`` quantile is ``ratio`` (half-width / se):
    inf at or below the normal quantile."""
    ratio = np.asarray(ratio, np.float64)
    q = 0.5 + level / 2
    lo, hi = np.full(ratio.shape, np.log(0.05)), np.full(ratio.shape, np.log(1e7))
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        wide = stats.t.ppf(q, np.exp(mid)) > ratio
        lo, hi = np.where(wide, mid, lo), np.where(wide, hi, mid)
    return np.where(ratio <= special.ndtri(q), np.inf, np.exp(0.5 * (lo + hi)))


def _satterthwaite(terms: Sequence[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """``(sum of the variances, Satterthwaite df)``; a zero term adds no df."""
    v = sum(np.asarray(t[0], np.float64) for t in terms)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = sum(np.where(np.asarray(t[0]) == 0, 0.0, np.asarray(t[0], np.float64) ** 2 / np.asarray(t[1]))
                for t in terms)
        return v, np.where(q > 0, v * v / q, np.inf)


def calibrated_interval(estimate, tops: Sequence[tuple], image: tuple, level: float):
    """``(half-width, p, effective df)`` of ``estimate`` with top terms ``tops`` (``(v, k)`` each; several
    are pooled by Welch's df) and the image term ``image`` (``(v, m)``). Where one of the two is exactly 0
    there is no ratio to hedge: the t-interval with the other's df (exact)."""
    estimate = np.asarray(estimate, np.float64)
    v_image, m = (np.broadcast_to(np.asarray(x, np.float64), estimate.shape) for x in image)
    v_top, k = _satterthwaite(tops) if tops else (np.zeros(estimate.shape), np.full(estimate.shape, np.inf))
    v = v_top + v_image
    se = np.sqrt(v)
    alpha = 1 - level
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(se > 0, np.abs(estimate) / se, np.where(estimate == 0, 0.0, np.inf))
        share = np.where(v > 0, v_top / v, 0.0)
        grid = critical_values(share, np.where(v_top > 0, k, 1.0), m)
        c = np.exp(_interp_rows(np.full(share.shape, np.log(alpha)), np.log(ALPHAS[::-1]) + 0 * grid,
                                np.log(grid[..., ::-1])))
        p = p_value(ratio, share, np.where(v_top > 0, k, 1.0), m)
        one = np.where(v_top > 0, k, m)  # one term left (the other exactly 0): the t-interval is exact
        exact = (v_top <= 0) | (v_image <= 0)
        c = np.where(exact, stats.t.ppf(1 - alpha / 2, one), c)
        p = np.where(exact, 2 * stats.t.sf(ratio, one), p)
        df = np.where(exact, one, effective_df(c, level))
    nan = np.isnan(v)
    return c * se, np.where(nan, np.nan, p), np.where(nan, np.nan, df)
