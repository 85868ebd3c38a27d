"""The `math` grader: the expected answer and the lane's answer compared for mathematical
equivalence by Math-Verify (fractions and decimals, `\\dfrac`, roots, `\\boxed{}`, sets, intervals,
percentages, `x = 5`, units in text), the way the MATH benchmarks are scored.

Math-Verify runs in a checker worker (pool.py, mathcheck.py), never in the caller's thread: its
own timeout needs the main thread, and a runaway expression (9^{9^{9^9}}) is stopped at
CHECK_DEADLINE_S by killing the worker. Like every grader it reads the lane's answer only, and
shows what it read from both sides.
"""

from __future__ import annotations

from playground.errors import CheckerFailed, CheckTimeout, InvalidInput
from playground.evaluation.grade_types import Grade
from playground.evaluation.pool import CHECK_DEADLINE_S, CheckerPool, default_pool


def _pool(pool: CheckerPool | None) -> CheckerPool:
    return pool or default_pool()


def check_math_expected(expected: str, pool: CheckerPool | None = None) -> str:
    """What Math-Verify reads from the expected answer; InvalidInput when it reads nothing."""
    try:
        read = _pool(pool).call("math_read", {"expected": expected})
    except CheckTimeout:
        raise InvalidInput(f"Reading expected={expected[:40]!r} took over {CHECK_DEADLINE_S:g} s "
                           "(CHECK_DEADLINE_S): write the value itself, e.g. 2^{100} as its digits.") from None
    except CheckerFailed as exc:
        raise InvalidInput(f"The math grader could not read expected={expected[:40]!r} ({exc}).") from None
    if read is None:
        raise InvalidInput(f"expected={expected[:40]!r} has no value the math grader can read: write it as "
                           "LaTeX or an expression, e.g. \\frac{1}{2}, 0.5, (0, 1], x = 5 or \\{1, 2\\}.")
    return read


def grade_math(expected: str, answer: str, pool: CheckerPool | None = None) -> Grade:
    """Pass when Math-Verify finds the answer's value equivalent to the expected one (gold first:
    the comparison is not symmetric). A check past the deadline is an error, not a fail."""
    try:
        r = _pool(pool).call("math", {"expected": expected, "answer": answer})
    except CheckTimeout:
        return Grade("error", None, f"the comparison took over {CHECK_DEADLINE_S:g} s (CHECK_DEADLINE_S) and "
                                    "was stopped: an expression too large to evaluate")
    except CheckerFailed as exc:
        return Grade("error", None, f"the math checker failed: {exc}")
    want, got = r.get("expected_read"), r.get("answer_read")
    if want is None:
        return Grade("error", None, f"no value in expected={expected[:40]!r} that Math-Verify can read")
    if got is None:
        return Grade("fail", None, f"no value Math-Verify can read in the answer (expected {want})")
    verdict = "equivalent" if r.get("equal") else "not equivalent"
    return Grade("pass" if r.get("equal") else "fail", got, f"read {got} from the answer, {want} from the "
                                                            f"expected: {verdict}")
