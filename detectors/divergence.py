"""Distances between a reference histogram and current histograms, one row per scope.

All functions take ``(n_scopes, n_bins)`` count matrices (reference and current share
the bins) and return one figure per scope, so a window close is a handful of numpy
calls whatever the number of cohorts.

Smoothing (PSI and Jensen-Shannon): bins empty in both histograms are dropped; every
other bin gets a pseudo-count of 0.5 (Jeffreys' prior) on both sides before
normalising, so a bin that is empty on one side gives a finite term instead of an
infinite one.

Sample size: PSI is an effect size, and its expected value on two samples of the same
distribution is about ``(bins - 1) * (1/n + 1/m)``, so a fixed PSI threshold fires on
small stationary windows. The G-test of homogeneity (the likelihood-ratio chi-square;
``G = 2 * (n + m) * JSD_w`` with the Jensen-Shannon divergence weighted by the two
sample sizes) gives a p-value that accounts for both window sizes. driftgate calls a
window drifted only when the effect is large (PSI) *and* unlikely to be noise (G-test).
"""

from __future__ import annotations

import numpy as np

# scipy.special's ufunc, not scipy.stats.chi2: the same values (chi2.sf calls it), without
# the distribution's argument handling (~50 µs a call here, paid at every window close).
from scipy.special import chdtrc

# CountArray: observed counts, or expected counts (fractional) such as a reference
# matched to a window's hours of the day.
from detectors.arrays import CountArray, FloatArray

PSEUDO_COUNT = 0.5


def _smoothed(reference: CountArray, current: CountArray) -> tuple[FloatArray, FloatArray]:
    ref = reference.astype(np.float64)
    cur = current.astype(np.float64)
    used = (ref + cur) > 0
    ref_s = np.where(used, ref + PSEUDO_COUNT, 0.0)
    cur_s = np.where(used, cur + PSEUDO_COUNT, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = ref_s / ref_s.sum(axis=1, keepdims=True)
        q = cur_s / cur_s.sum(axis=1, keepdims=True)
    return p, q


def psi(reference: CountArray, current: CountArray) -> FloatArray:
    """Population stability index per scope (natural log), >= 0.

    >>> import numpy as np
    >>> ref = np.array([[250, 250, 250, 250, 0]])
    >>> round(float(psi(ref, np.array([[240, 260, 255, 245, 0]]))[0]), 4)
    0.001
    >>> round(float(psi(ref, np.array([[100, 150, 300, 450, 0]]))[0]), 3)
    0.314
    """
    p, q = _smoothed(reference, current)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(p > 0, (q - p) * np.log(q / p), 0.0)
    return np.asarray(terms.sum(axis=1), dtype=np.float64)


def js_distance(reference: CountArray, current: CountArray) -> FloatArray:
    """Jensen-Shannon distance per scope (base 2, so in [0, 1]).

    >>> import numpy as np
    >>> ref = np.array([[500, 500, 0]])
    >>> float(js_distance(ref, ref)[0])
    0.0
    >>> round(float(js_distance(ref, np.array([[900, 100, 0]]))[0]), 3)
    0.383
    """
    p, q = _smoothed(reference, current)
    m = 0.5 * (p + q)
    with np.errstate(invalid="ignore", divide="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=1)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=1)
    return np.asarray(np.sqrt(np.maximum(0.5 * (kl_p + kl_q), 0.0)), dtype=np.float64)


def g_test(reference: CountArray, current: CountArray) -> tuple[FloatArray, FloatArray]:
    """G-test of homogeneity per scope: (statistic, p-value); unsmoothed counts.

    The degrees of freedom are the bins used by either histogram minus one; a scope
    with one used bin or an empty side has p-value 1 (nothing to compare).

    >>> import numpy as np
    >>> ref = np.array([[300, 300, 400]])
    >>> g, p = g_test(ref, np.array([[30, 31, 39]]))
    >>> bool(p[0] > 0.5)
    True
    >>> g, p = g_test(ref, np.array([[10, 30, 60]]))
    >>> bool(p[0] < 0.001)
    True
    """
    ref = reference.astype(np.float64)
    cur = current.astype(np.float64)
    n = ref.sum(axis=1, keepdims=True)
    m = cur.sum(axis=1, keepdims=True)
    total = ref + cur
    with np.errstate(invalid="ignore", divide="ignore"):
        expected_ref = total * n / (n + m)
        expected_cur = total * m / (n + m)
        terms = np.where(ref > 0, ref * np.log(ref / expected_ref), 0.0) + np.where(
            cur > 0, cur * np.log(cur / expected_cur), 0.0
        )
    statistic = 2.0 * terms.sum(axis=1)
    dof = (total > 0).sum(axis=1) - 1
    comparable = (dof > 0) & (n[:, 0] > 0) & (m[:, 0] > 0)
    statistic = np.where(comparable, np.maximum(statistic, 0.0), 0.0)
    pvalue = np.where(comparable, chdtrc(np.maximum(dof, 1), statistic), 1.0)
    return statistic.astype(np.float64), pvalue.astype(np.float64)


def pooled_g_test(reference: CountArray, current: CountArray) -> float:
    """P-value that none of the rows differ, from the sum of their G statistics (rows are
    independent samples: a chi-square with their degrees of freedom added up). A shift
    too small for any one row's test shows in many rows together.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> p = np.array([0.5, 0.3, 0.2])
    >>> ref = rng.multinomial(300, p, size=10)
    >>> shifted = rng.multinomial(300, [0.45, 0.32, 0.23], size=10)
    >>> bool(g_test(ref, shifted)[1].min() > 0.01), pooled_g_test(ref, shifted) < 0.01
    (True, True)
    >>> pooled_g_test(ref, rng.multinomial(300, p, size=10)) > 0.05
    True
    """
    statistic, _ = g_test(reference, current)
    total = reference + current
    used = (total > 0).sum(axis=1) - 1
    comparable = (used > 0) & (reference.sum(axis=1) > 0) & (current.sum(axis=1) > 0)
    dof = int(used[comparable].sum())
    return float(chdtrc(dof, statistic[comparable].sum())) if dof else 1.0
