"""Graders: each kind on plain and tricky answers, and properties (grading reads the answer only)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from playground.errors import InvalidInput
from playground.evaluation.graders import (
    MAX_EXPECTED_CHARS,
    MAX_REGEX_CHARS,
    boxed_values,
    check_grader,
    extract_number,
    grade,
    normalize,
)


@pytest.mark.parametrize("answer, expected, status, extracted", [
    ("The total is 1,234 apples.", "1234", "pass", "1234"),
    ("It costs $1,250.50 in all", "1250.5", "pass", "1250.5"),
    ("12 km", "12", "pass", "12"),
    ("about 3, no wait, exactly 4", "4", "pass", "4"),
    ("So x = -7.", "-7", "pass", "-7"),
    ("Half: 1/2", "0.5", "pass", "0.5"),
    (r"We get \boxed{\frac{3}{4}} in the end, then 99 more words", "0.75", "pass", "0.75"),
    (r"\boxed{42} and later \boxed{41}", "41", "pass", "41"),
    (r"\boxed{x = {1, 2}} so \boxed{\text{{nested} 17}}", "17", "pass", "17"),
    ("The lists 1,2,3 end at 3", "3", "pass", "3"),
    ("1,2345", "2345", "pass", "2345"),
    ("I think 5", "6", "fail", "5"),
    ("no numbers here", "6", "fail", None),
    ("3.14159", "3.1416", "fail", "3.14159"),
])
def test_numeric(answer, expected, status, extracted):
    g = grade("numeric", expected, answer)
    assert (g.status, g.extracted) == (status, extracted), g


def test_numeric_tolerance():
    assert grade({"kind": "numeric", "tolerance": 0.001}, "3.1416", "pi is 3.14159").status == "pass"
    assert grade({"kind": "numeric", "tolerance": 0}, "10", "10.0").status == "pass"


def test_exact_normalizes_case_whitespace_punctuation():
    assert grade("exact", "Paris", "  paris. ").status == "pass"
    assert grade("exact", "New York", "new   york!").status == "pass"
    assert grade("exact", "Paris", "It is Paris").status == "fail"
    assert grade("exact", "blue", r"The answer: \boxed{Blue}").extracted == "blue"
    assert normalize("  “Hello,”   World…  ") == "hello world"


def test_regex_and_catastrophic_patterns():
    assert grade("regex", r"\b(yes|true)\b", "Yes, TRUE").status == "fail"  # case-sensitive by default
    assert grade("regex", r"(?i)\byes\b", "Yes, it is").extracted == "Yes"
    g = grade("regex", r"(a+)+$", "a" * 40 + "b")
    assert g.status in ("fail", "error")  # never hangs: a timeout gives "error" with the reason
    if g.status == "error":
        assert "REGEX_TIMEOUT_S" in g.detail


@pytest.mark.parametrize("answer, letter", [
    ("B", "B"), ("(C)", "C"), ("The answer is (D) forty", "D"), ("Answer: a", None),
    ("B) forty-two", "B"), (r"\boxed{E}", "E"), ("A cat sat. I pick (B).", "B"), ("I think it's the answer A", "A"),
])
def test_choice_letter(answer, letter):
    g = grade("choice", letter or "A", answer)
    assert g.extracted == letter


def test_empty_answer_fails_and_missing_expected_is_ungraded():
    assert grade("numeric", "4", "").status == "fail"
    assert grade(None, None, "4").status == "ungraded"
    assert grade({"kind": "python"}, "assert f() == 1", "def f(): return 1").status == "ungraded"


def test_bad_specs_are_refused_with_a_fix():
    with pytest.raises(InvalidInput, match="expected answer"):
        check_grader("numeric", "")
    with pytest.raises(InvalidInput, match="exact, numeric"):
        check_grader("fuzzy", "x")
    with pytest.raises(InvalidInput, match="no number"):
        check_grader("numeric", "forty")
    with pytest.raises(InvalidInput, match="MAX_REGEX_CHARS"):
        check_grader("regex", "a" * (MAX_REGEX_CHARS + 1))
    with pytest.raises(InvalidInput, match="regular expression"):
        check_grader("regex", "(unclosed")
    with pytest.raises(InvalidInput, match="MAX_EXPECTED_CHARS"):
        check_grader("exact", "x" * (MAX_EXPECTED_CHARS + 1))
    with pytest.raises(InvalidInput, match="tolerance"):
        check_grader({"kind": "numeric", "tolerance": -1}, "3")
    with pytest.raises(InvalidInput, match="no option"):
        check_grader({"kind": "exact", "tolerance": 1}, "3")
    assert check_grader(None, "Paris") == {"kind": "exact"}
    assert check_grader("numeric", "1,000 km") == {"kind": "numeric", "tolerance": 1e-6}
    assert grade("regex", "(unclosed", "x").status == "error"  # a bad stored spec never raises


def test_boxed_nesting():
    assert boxed_values(r"\boxed{\frac{1}{2}} \boxed{ {a}{b} }") == [r"\frac{1}{2}", " {a}{b} "]
    assert boxed_values(r"\boxed{unclosed {") == []


# --- properties: the reasoning never counts ------------------------------------------------------
words = st.text(alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Zs")), max_size=60)


@settings(max_examples=200, deadline=None)
@given(before=words, after=words, n=st.integers(-10**6, 10**6), wrong=st.integers(-10**6, 10**6))
def test_grading_never_reads_the_reasoning(before, after, n, wrong):
    """The reasoning (never passed in) may hold the right answer; only the answer text decides."""
    reasoning = f"{before} so the answer is {n}, \\boxed{{{n}}} {after}"
    answer = f"The answer is {wrong}."
    g = grade("numeric", str(n), answer)
    assert g.status == ("pass" if wrong == n else "fail")
    assert g.extracted == str(wrong)
    # What a lane stores: reasoning and answer apart. Grading the answer ignores the reasoning wholly.
    assert grade("numeric", str(n), answer) == grade("numeric", str(n), answer + "")
    assert reasoning  # built only to show what must not leak in


@settings(max_examples=200, deadline=None)
@given(n=st.integers(-10**9, 10**9), prefix=words)
def test_numbers_with_commas_read_back(n, prefix):
    text = f"{prefix} {n:,} units"
    assert grade("numeric", str(n), text).status == "pass"
    assert extract_number(text).replace(",", "") == str(n)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200), kind=st.sampled_from(["exact", "numeric", "choice", "regex"]))
def test_grading_never_raises_on_any_answer(text, kind):
    expected = {"exact": "x", "numeric": "1", "choice": "A", "regex": "a+"}[kind]
    assert grade(kind, expected, text).status in ("pass", "fail", "error")


def test_the_tolerance_is_absolute_so_near_large_numbers_still_differ():
    assert grade("numeric", "1000000", "999999").status == "fail"  # 1e-6 relative would have passed it
    assert grade("numeric", "0.3", "0.30000000000000004").status == "pass"  # float rounding is not an error
    assert grade({"kind": "numeric", "tolerance": 0.5}, "10", "10.4").status == "pass"
    assert grade({"kind": "numeric", "tolerance": 0.5}, "10", "10.6").status == "fail"
