"""The uncertainty of a verdict: pure functions on counts, no records.

- A lane's accuracy gets a 95% Wilson score interval: unlike the normal approximation it stays
  inside 0–1 and is honest at 0/n and n/n, which small problem sets hit all the time.
- The reasoning gain is tested on the SAME cells in both lanes, so only the discordant pairs carry
  information (fixed by reasoning vs broken by it): the exact McNemar test is the two-sided
  binomial test of those pairs against a fair coin. It needs no large-sample approximation, which
  is what a few dozen cells are.
"""

from __future__ import annotations

import math

CONFIDENCE = 0.95
Z_95 = 1.959963984540054  # the two-sided standard normal quantile for 95%
ALPHA = 0.05  # a gain with a McNemar p below this is called more than noise
# Below this many cells graded in both lanes the verdict says "too few graded cells to tell" instead
# of a conclusion: an interval over fewer is wider than ±20 points, whatever the accuracy.
MIN_CELLS_TO_TELL = 20


def wilson_interval(passed: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of passed/n (95% by default); None when nothing was graded."""
    if n <= 0:
        return None
    if not 0 <= passed <= n:
        raise ValueError(f"passed={passed} must be within 0..n={n}")
    p = passed / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # At 0/n and n/n a bound is exactly 0 or 1; rounding would leave 1 - 1e-16 and the estimate outside.
    low = 0.0 if passed == 0 else max(0.0, centre - half)
    high = 1.0 if passed == n else min(1.0, centre + half)
    return low, high


def mcnemar_exact(fixed: int, broken: int) -> float:
    """Two-sided exact McNemar p-value for `fixed` (reasoning right, standard wrong) against `broken`
    (the reverse) discordant cells: 2 × P(X ≤ min) for X ~ Binomial(fixed + broken, 1/2), at most 1."""
    if fixed < 0 or broken < 0:
        raise ValueError("discordant counts are never negative")
    n = fixed + broken
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(fixed, broken) + 1))
    return min(1.0, 2 * tail / 2**n)


def per_correct(total: float, passed: int) -> float | None:
    """What one correct answer cost (tokens or seconds); None when none was correct."""
    return total / passed if passed else None


def conclusion(cells: int, fixed: int, broken: int) -> str:
    """The verdict in words: too few cells, reasoning helped / hurt (p < ALPHA), or within noise."""
    if cells < MIN_CELLS_TO_TELL:
        return (f"too few graded cells to tell: {cells} graded in both lanes, a verdict needs at least "
                f"{MIN_CELLS_TO_TELL} (MIN_CELLS_TO_TELL)")
    p = mcnemar_exact(fixed, broken)
    if p < ALPHA:
        side = "helped" if fixed > broken else "hurt"
        return f"reasoning {side}: {fixed} cell(s) fixed, {broken} broken, exact McNemar p = {p:.3g}"
    return (f"no clear difference: {fixed} cell(s) fixed, {broken} broken, exact McNemar p = {p:.3g} "
            f"(not below {ALPHA:g}): the gain is within noise")
