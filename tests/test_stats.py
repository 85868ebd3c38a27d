"""The verdict's statistics against values computed by hand (pure: counts in, numbers out)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from playground.evaluation.stats import (
    ALPHA,
    MIN_CELLS_TO_TELL,
    conclusion,
    mcnemar_exact,
    per_correct,
    wilson_interval,
)

# Wilson 95% (z = 1.959964), by hand to four decimals: at n = 10, z²/n = 0.3841 and the denominator 1.3841.
# 0/10: centre = half = 0.1921 / 1.3841 = 0.1388 -> (0, 0.2775); 10/10 mirrors it.
# 5/10: centre 0.5, half = z·sqrt(0.025 + 0.0096) / 1.3841 = 0.2634 -> (0.2366, 0.7634).
# 8/10: centre = 0.9921 / 1.3841 = 0.7167, half = z·sqrt(0.016 + 0.0096) / 1.3841 = 0.2266 -> (0.4902, 0.9433).
# 1/1: z²/n = 3.8415, centre = half = (1 + 1.9207) / 4.8415 = 0.6033 -> (0.2065, 1).
WILSON = [
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (5, 10, 0.2366, 0.7634),
    (8, 10, 0.4902, 0.9433),
    (1, 1, 0.2065, 1.0),
]


@pytest.mark.parametrize("passed, n, low, high", WILSON)
def test_wilson_interval_matches_hand_computed_bounds(passed, n, low, high):
    lo, hi = wilson_interval(passed, n)
    assert lo == pytest.approx(low, abs=5e-5) and hi == pytest.approx(high, abs=5e-5)


def test_wilson_interval_of_nothing_and_of_impossible_counts():
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


# Exact McNemar: p = 2 · Σ_{i ≤ min(b, c)} C(b + c, i) / 2^(b + c), capped at 1.
MCNEMAR = [
    (0, 0, 1.0),  # nothing discordant: no evidence either way
    (6, 0, 2 / 64),  # 0.03125: six fixed, none broken
    (0, 6, 2 / 64),
    (5, 0, 2 / 32),  # 0.0625: five one way is never enough at 0.05
    (5, 1, 2 * 7 / 64),  # (1 + 6) / 64, doubled: 0.21875
    (8, 2, 2 * 56 / 1024),  # (1 + 10 + 45) / 1024, doubled: 0.109375
    (3, 3, 1.0),  # 2 · 42/64 > 1, capped
]


@pytest.mark.parametrize("fixed, broken, p", MCNEMAR)
def test_exact_mcnemar_matches_hand_computed_p(fixed, broken, p):
    assert mcnemar_exact(fixed, broken) == pytest.approx(p, abs=1e-12)


def test_mcnemar_refuses_negative_counts_and_survives_big_ones():
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)
    assert 0 < mcnemar_exact(600, 400) < 1e-9  # 1,000 discordant pairs: exact integers, no overflow


@given(passed=st.integers(0, 500), extra=st.integers(0, 500))
def test_wilson_bounds_hold_the_estimate_inside_zero_one(passed, extra):
    n = passed + extra
    if n == 0:
        return
    lo, hi = wilson_interval(passed, n)
    assert 0.0 <= lo <= passed / n <= hi <= 1.0
    # more data at the same rate never widens the interval
    lo4, hi4 = wilson_interval(4 * passed, 4 * n)
    assert hi4 - lo4 <= hi - lo + 1e-12


@given(fixed=st.integers(0, 300), broken=st.integers(0, 300))
def test_mcnemar_is_symmetric_and_a_probability(fixed, broken):
    p = mcnemar_exact(fixed, broken)
    assert p == mcnemar_exact(broken, fixed) and 0 < p <= 1
    assert math.isclose(p, 1.0) or fixed != broken


def test_per_correct_and_conclusions():
    assert per_correct(300, 3) == 100 and per_correct(300, 0) is None
    assert conclusion(MIN_CELLS_TO_TELL - 1, 10, 0).startswith("too few graded cells to tell")
    assert conclusion(MIN_CELLS_TO_TELL, 6, 0).startswith("reasoning helped")
    assert conclusion(MIN_CELLS_TO_TELL, 0, 6).startswith("reasoning hurt")
    assert conclusion(MIN_CELLS_TO_TELL, 5, 0).startswith("no clear difference")  # p = 0.0625 >= ALPHA
    assert mcnemar_exact(5, 0) >= ALPHA > mcnemar_exact(6, 0)
