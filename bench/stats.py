"""Paired significance tests over seeds and Holm's step-down correction, for ablation tables.

A variant and its full model trained with the same seed (same split, same initialisation seed)
form a pair; the test asks whether their mean difference over seeds is zero. The tests are
scipy's; Holm's correction (not in scipy) and the t-interval of the mean difference are written
out here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Fewest pairs with which a test can say anything: the paired t-test needs one degree of
# freedom; the exact two-sided Wilcoxon signed-rank p-value cannot go below 0.05 with fewer
# than 6 pairs (its smallest value is 2 / 2**n).
MIN_PAIRS = {"t": 2, "wilcoxon": 6}
TEST_NAMES = {"t": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}
# Differences that vary less than this over seeds are one difference seen through float rounding
# (metrics live in [0, 1]); a test on them would only measure the rounding.
SAME_DIFFERENCE = 1e-12


@dataclass(frozen=True)
class PairedResult:
    """Outcome of one paired comparison: mean difference, pairs, p-value (None when not tested)."""

    delta: float
    pairs: int
    p: float | None
    why_not: str = ""
    ci: tuple[float, float] | None = None  # 95 % t-interval of the mean difference (>= 2 pairs)


def paired_test(variant: Sequence[float], full: Sequence[float], test: str = "t") -> PairedResult:
    """Two-sided paired test of mean(variant - full) = 0 over seeds (equal-length, seed-aligned)."""
    from scipy import stats

    if test not in MIN_PAIRS:
        raise ValueError(f"unknown test '{test}'; use one of {sorted(MIN_PAIRS)}")
    a, b = np.asarray(variant, dtype=float), np.asarray(full, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    diff = a - b
    n = len(diff)
    delta = float(diff.mean()) if n else float("nan")
    ci = mean_ci(diff)
    if n < MIN_PAIRS[test]:
        return PairedResult(delta, n, None, f"fewer than {MIN_PAIRS[test]} seeds", ci)
    if np.ptp(diff) <= SAME_DIFFERENCE:
        # every seed moved by the same amount (up to float rounding): no variance to test against
        return PairedResult(delta, n, None, "identical difference on every seed", ci)
    if test == "t":
        p = float(stats.ttest_rel(a, b).pvalue)
    else:
        p = float(stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided").pvalue)
    return PairedResult(delta, n, p, "", ci)


def mean_ci(diff: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """Student-t interval of the mean of paired differences: mean -/+ t_{(1+level)/2, n-1} s / sqrt(n),
    with s the sample standard deviation; None for fewer than two values. Zero spread gives
    (mean, mean). The same interval is given whichever test is chosen."""
    from scipy import stats

    d = np.asarray(diff, dtype=float)
    if len(d) < 2:
        return None
    mean = float(d.mean())
    if np.ptp(d) == 0:
        return (float(d[0]), float(d[0]))
    half = float(stats.t.ppf((1 + level) / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return (mean - half, mean + half)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (family-wise error control); None entries stay None.

    Sorted ascending, p_(i) becomes max_{j<=i} min(1, (m - j + 1) p_(j)) with m the number of
    tests; reject where the adjusted value is below alpha.
    """
    tested = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    m = len(tested)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out
