"""The math grader on Math-Verify, through the real checker workers: a table of tricky pairs written
for this project, from many threads at once, a runaway expression stopped at the deadline, and
properties (a value equals itself in any of its forms; only the answer is read)."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from playground.errors import InvalidInput
from playground.evaluation import pool as pool_module
from playground.evaluation.graders import check_grader, grade
from playground.evaluation.math_grader import grade_math
from playground.evaluation.pool import CHECK_DEADLINE_S, CheckerPool
from playground.evaluation.verdict import lane_grade
from tests.test_verdict import cell, run

# (expected, answer): equivalent although written differently.
EQUIVALENT = [
    (r"\frac{1}{2}", "0.5"),
    (r"\dfrac{3}{4}", r"The answer is $\boxed{0.75}$."),
    ("0.75", r"\boxed{\frac{3}{4}}"),
    (r"\frac{\sqrt{2}}{2}", r"$\frac{1}{\sqrt{2}}$"),  # rationalised or not
    (r"2\sqrt{3}", r"\sqrt{12}"),
    (r"\{1, 2, 3\}", r"$\{3, 1, 2\}$"),  # a set has no order
    ("(0, 1]", "the interval is $(0, 1]$"),
    ("x = 5", "5"),
    ("5", "So $x = 5$."),
    (r"50\%", r"$\boxed{50\%}$"),
    ("12", "She walks 12 km."),  # units in text
    ("1,000", "1000"),
    (r"-\frac{1}{3}", r"$\frac{-1}{3}$"),
    ("x^2 + 2x + 1", "$(x+1)^2$"),  # symbolic equality, not string equality
    (r"2\pi", r"$\boxed{2\pi}$"),
    (r"\frac{14}{3}", r"4\frac{2}{3}"),  # a mixed number
    (r"(-\infty, 3)", r"$(-\infty, 3)$"),
    ("10", r"\boxed{10\text{ cm}}"),
    ("3", "so it is 2... no wait, the final answer is 3"),  # the final answer, not the first number
]
# (expected, answer): close, but not the same value.
NOT_EQUIVALENT = [
    (r"\frac{1}{2}", "0.6"),
    ("(0, 1]", "$[0, 1)$"),  # the other half-open interval
    (r"2\sqrt{3}", r"3\sqrt{2}"),
    ("x^2+1", "$(x+1)^2$"),
    (r"\{1,2\}", r"$\{1,2,3\}$"),
    ("12", r"\boxed{13}"),
    ("5", "The answer is $x = 6$"),
    (r"\frac{3}{4}", "0.7"),
    (r"2\pi", "6.28"),  # within 0.01 is not equal
    ("3", "I don't know"),
    ("-2", "2"),
]


@pytest.mark.parametrize("expected, answer", EQUIVALENT)
def test_equivalent_forms_pass_and_show_what_was_read(expected, answer):
    g = grade("math", expected, answer)
    assert g.status == "pass", g
    assert g.extracted and "from the expected" in g.detail


@pytest.mark.parametrize("expected, answer", NOT_EQUIVALENT)
def test_different_values_fail(expected, answer):
    assert grade("math", expected, answer).status == "fail"


def test_from_worker_threads_at_once():
    # Math-Verify's own timeout uses signal.alarm, which raises off the main thread: every check
    # here runs on a pool thread, sixteen at a time, and gets the same answers as one at a time.
    table = [(e, a, "pass") for e, a in EQUIVALENT] + [(e, a, "fail") for e, a in NOT_EQUIVALENT]
    threads = set()

    def check(row):
        threads.add(threading.current_thread().name)
        return grade("math", row[0], row[1]).status

    with ThreadPoolExecutor(max_workers=16) as ex:
        got = list(ex.map(check, table * 2))
    assert got == [status for _, _, status in table] * 2
    assert threading.main_thread().name not in threads and len(threads) > 1


def test_a_runaway_expression_is_stopped_at_the_deadline_and_the_next_check_works():
    pool = CheckerPool(workers=1)
    try:
        assert grade_math("5", "5", pool=pool).status == "pass"  # warm: the library is loaded
        worker_pid = pool._idle[0].proc.pid
        result = {}

        def runaway():
            t0 = time.perf_counter()
            result["grade"] = grade_math("5", r"$\boxed{9^{9^{9^{9}}}}$", pool=pool)  # hours of big-int work
            result["seconds"] = time.perf_counter() - t0

        t = threading.Thread(target=runaway)
        t.start()
        t.join(CHECK_DEADLINE_S + 10)
        assert not t.is_alive()
        g = result["grade"]
        assert g.status == "error" and "CHECK_DEADLINE_S" in g.detail
        assert CHECK_DEADLINE_S <= result["seconds"] < CHECK_DEADLINE_S + 5
        with pytest.raises(ProcessLookupError):
            os.kill(worker_pid, 0)  # the worker that ran it is gone
        assert grade_math(r"\frac{1}{2}", "0.5", pool=pool).status == "pass" and pool.started == 2
    finally:
        pool.close()


def test_an_expected_answer_it_cannot_read_is_refused_with_a_fix():
    with pytest.raises(InvalidInput, match="math grader can read"):
        check_grader("math", "???")
    assert check_grader("math", r"\frac{1}{2}") == {"kind": "math"}
    # a stored cell whose expected answer became unreadable grades as an error, never a crash
    assert grade("math", "???", "0.5").status == "error"


def test_no_readable_value_in_the_answer_fails_and_says_so():
    g = grade("math", "7", "I am not sure.")
    assert g.status == "fail" and g.extracted is None and "expected 7" in g.detail


def forms(value: Fraction) -> list[str]:
    """Ways people write one rational number."""
    p, q = value.numerator, value.denominator
    sign, a = ("-" if p < 0 else ""), abs(p)
    out = [f"{sign}\\frac{{{a}}}{{{q}}}", f"{p}/{q}", f"$\\boxed{{{sign}\\dfrac{{{a}}}{{{q}}}}}$",
           f"The answer is ${sign}\\frac{{{a}}}{{{q}}}$."]
    if q == 1:
        out += [str(p), f"\\boxed{{{p}}}", f"x = {p}"]
    if 10**6 % q == 0:  # a terminating decimal
        out.append(str(float(value)))
    return out


@settings(max_examples=25, deadline=None)
@given(p=st.integers(-500, 500), q=st.sampled_from([1, 2, 3, 4, 5, 7, 8, 12]), i=st.integers(0, 7),
       j=st.integers(0, 7))
def test_a_value_equals_itself_in_any_of_its_forms(p, q, i, j):
    ways = forms(Fraction(p, q))
    expected, answer = ways[i % len(ways)], ways[j % len(ways)]
    if expected.startswith("The answer") or "$" in expected:
        expected = ways[0]  # an expected answer is a bare value, as datasets write it
    assert grade("math", expected, answer).status == "pass", (expected, answer)


@settings(max_examples=15, deadline=None)
@given(right=st.integers(-99, 99), wrong=st.integers(-99, 99))
def test_the_grader_reads_the_answer_never_the_reasoning(right, wrong):
    reasoning = f"Working: the result is $\\boxed{{{right}}}$, so the answer is {right}."
    c = cell(0, str(right), {"kind": "math"}, [])
    g = lane_grade(c, run("reasoning", f"Final answer: ${wrong}$", 10, 1.0, reasoning=reasoning))
    assert g.status == ("pass" if right == wrong else "fail") and g.extracted == str(wrong)
    assert lane_grade(c, run("reasoning", "", 10, 1.0, reasoning=reasoning)).status == "fail"


def test_the_default_pool_is_shared_and_bounded():
    assert pool_module.default_pool() is pool_module.default_pool()
    assert pool_module.default_pool().size == pool_module.CHECK_WORKERS
