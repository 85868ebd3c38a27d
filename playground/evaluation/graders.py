"""Grading a lane's answer against a cell's expected answer: pure functions, no I/O.

`grade(spec, expected, answer_text)` reads the ANSWER part of a lane only, never its reasoning:
a model that found the right number while thinking and then wrote a wrong answer has failed.
A grader spec is a kind name (GRADER_KINDS) or a dict {"kind": ..., options}; `check_grader`
validates one at the edge (cell save, batch import) and returns its canonical dict form, which is
what the store keeps. The math grader (Math-Verify) and the gym grader (a Reasoning Gym task's own
verifier, with the generated entry in its spec) run in a checker worker with a deadline (pool.py).

The python grader runs code, so it lives in sandbox.py; here it only extracts the code and hands
it to a runner the caller passes in (grading without a runner leaves code answers "ungraded").
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import string
import unicodedata

import regex

from playground.errors import InvalidInput
from playground.evaluation.answers import boxed_values, extract_number, parse_number
from playground.evaluation.grade_types import GRADE_ICONS, STATUSES, UNGRADED, CodeRunner, Grade  # noqa: F401
from playground.evaluation.gym import check_gym_spec, grade_gym
from playground.evaluation.math_grader import check_math_expected, grade_math

# Grade and its vocabulary live in grade_types (the math and gym graders need them too); they are
# re-exported here, where every caller has always found them.

GRADER_KINDS = ("exact", "numeric", "regex", "choice", "math", "gym", "python")
# Named limits, each checked once in check_grader / check_expected.
MAX_EXPECTED_CHARS = 20_000  # a python test can be a page of asserts; an answer is far shorter
MAX_REGEX_CHARS = 500
REGEX_TIMEOUT_S = 0.5  # a catastrophic pattern (e.g. (a+)+$) stops here instead of hanging the server
MAX_TOLERANCE = 1e12
DEFAULT_TOLERANCE = 1e-6  # absolute
FLOAT_SLACK = 1e-12  # relative, for float rounding only
MAX_GRADED_CHARS = 100_000  # only the answer's last this-many characters are read (final answers come last)
CHOICE_LETTERS = "ABCDEFGHIJ"

_PUNCT = str.maketrans("", "", string.punctuation + "“”‘’«»—–…")
_CODE_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.S | re.I)


# --- validation at the edge -------------------------------------------------------------------
def check_grader(spec, expected, *, ask_checker: bool = True) -> dict | None:
    """The canonical {"kind": ..., options} of a grader spec, or None when the cell is ungraded
    (no grader and no expected answer). Raises InvalidInput naming what is wrong and the fix.
    ask_checker=False skips asking the checker worker whether the math grader can read the expected
    answer and the gym task exists (grade() reports either as an error instead: a check per grade
    would double its cost)."""
    if spec in (None, "", {}) and expected in (None, ""):
        return None
    if expected is None or (isinstance(expected, str) and not expected.strip()):
        raise InvalidInput("A grader needs an expected answer: fill it in, or clear the grader.")
    check_expected(expected)
    if spec in (None, "", {}):
        spec = "exact"
    if isinstance(spec, str):
        spec = {"kind": spec.strip().lower()}
    if not isinstance(spec, dict):
        raise InvalidInput(f"grader={spec!r}: use one of {', '.join(GRADER_KINDS)}, or a dict with a 'kind'.")
    kind = spec.get("kind")
    if kind not in GRADER_KINDS:
        raise InvalidInput(f"grader kind={kind!r}: use one of {', '.join(GRADER_KINDS)}.")
    if kind == "gym":
        return check_gym_spec(spec, ask_checker=ask_checker)
    allowed = {"kind", "tolerance"} if kind == "numeric" else {"kind"}
    unknown = set(spec) - allowed
    if unknown:
        raise InvalidInput(f"The {kind} grader has no option {', '.join(sorted(unknown))}: "
                           f"it takes {', '.join(sorted(allowed))}.")
    out = {"kind": kind}
    if kind == "numeric":
        out["tolerance"] = _check_tolerance(spec.get("tolerance", DEFAULT_TOLERANCE))
    _check_expected_for(kind, expected, ask_checker)
    return out


def _check_tolerance(tol) -> float:
    if isinstance(tol, bool) or not isinstance(tol, int | float) or not 0 <= tol <= MAX_TOLERANCE or math.isnan(tol):
        raise InvalidInput(f"tolerance={tol!r}: use a number 0–{MAX_TOLERANCE:g} (MAX_TOLERANCE).")
    return float(tol)


def _check_expected_for(kind: str, expected: str, ask_checker: bool) -> None:
    """That the grader of this kind can read the expected answer at all."""
    if kind == "numeric":
        if parse_number(expected.strip()) is None and extract_number(expected) is None:
            raise InvalidInput(f"expected={expected[:40]!r} has no number in it: the numeric grader compares "
                               "numbers (e.g. 42, 1,250 or 3/4).")
    elif kind == "regex":
        if len(expected) > MAX_REGEX_CHARS:
            raise InvalidInput(f"The pattern has {len(expected)} characters, over the limit of {MAX_REGEX_CHARS} "
                               "(MAX_REGEX_CHARS): shorten it.")
        try:
            regex.compile(expected)
        except regex.error as exc:
            raise InvalidInput(f"The expected answer is not a valid regular expression ({exc}): fix the "
                               "pattern, or use the exact grader.") from None
    elif kind == "choice":
        if _choice_letter(expected) is None:
            raise InvalidInput(f"expected={expected[:40]!r}: the choice grader expects one letter "
                               f"{CHOICE_LETTERS[0]}–{CHOICE_LETTERS[-1]}.")
    elif kind == "math" and ask_checker:
        check_math_expected(expected)


def check_expected(expected) -> str:
    if not isinstance(expected, str):
        raise InvalidInput("The expected answer must be text.")
    if len(expected) > MAX_EXPECTED_CHARS:
        raise InvalidInput(f"The expected answer has {len(expected):,} characters, over the limit of "
                           f"{MAX_EXPECTED_CHARS:,} (MAX_EXPECTED_CHARS): shorten it.")
    return expected


def grade_key(grader: dict | None, expected: str | None) -> str:
    """What a cached grade was graded against: a changed expected answer or grader makes it stale."""
    blob = json.dumps([grader, expected], sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- extraction -------------------------------------------------------------------------------
def normalize(text: str) -> str:
    """Case, punctuation and whitespace folded away: "  The Answer: Paris. " -> "the answer paris"."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_PUNCT)
    return " ".join(text.split())


def _choice_letter(text: str) -> str | None:
    t = text.strip()
    boxes = boxed_values(t)
    if boxes:
        t = boxes[-1].strip()
    patterns = (
        r"^\(?([A-J])\)?[.:)]?$",  # the whole answer is the letter
        r"(?i:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*\(?\**([A-J])\b",  # "the answer is (B)"
        r"\(([A-J])\)",  # "(B)" anywhere: the last one
        r"^\**\(?([A-J])[).:]",  # "B) forty" / "B. forty" at the start
    )
    for p in patterns:
        found = re.findall(p, t, re.M)
        if found:
            return found[-1].upper()
    return None


def extract_code(answer: str) -> str:
    """The last fenced python block of the answer, else the whole answer (a bare code reply)."""
    blocks = _CODE_FENCE.findall(answer)
    return blocks[-1] if blocks else answer


# --- grading ----------------------------------------------------------------------------------
def grade(spec: dict | str | None, expected: str | None, answer_text: str,
          run_code: CodeRunner | None = None) -> Grade:
    """Grade one lane's answer text. Never raises for what a model wrote: a bad stored spec gives
    status "error" with the reason, a missing expected answer gives "ungraded"."""
    try:
        spec = check_grader(spec, expected, ask_checker=False)
    except InvalidInput as exc:
        return Grade("error", None, str(exc))
    if spec is None:
        return UNGRADED
    answer = (answer_text or "")[-MAX_GRADED_CHARS:]
    if not answer.strip():
        return Grade("fail", None, "the lane wrote no answer (only reasoning, or nothing)")
    kind = spec["kind"]
    if kind == "exact":
        boxes = boxed_values(answer)
        got = normalize(boxes[-1] if boxes else answer)
        want = normalize(expected)
        return Grade("pass" if got == want else "fail", got, f"normalized answer vs {want!r}")
    if kind == "numeric":
        token = extract_number(answer)
        want = parse_number(expected.strip())
        if want is None:
            want = parse_number(extract_number(expected) or "")
        if token is None:
            return Grade("fail", None, "no number in the answer")
        got = parse_number(token)
        if got is None:
            return Grade("fail", token, "could not read the number")
        tol = spec["tolerance"]
        # The tolerance is absolute: read as relative, 1e-6 would pass 999,999 for 1,000,000. The tiny
        # relative slack only absorbs float rounding (0.1 + 0.2 read back as 0.30000000000000004).
        ok = math.isclose(got, want, rel_tol=FLOAT_SLACK, abs_tol=tol)
        return Grade("pass" if ok else "fail", _show(got), f"{_show(got)} vs {_show(want)} (tolerance {tol:g})")
    if kind == "regex":
        try:
            m = regex.search(expected, answer, timeout=REGEX_TIMEOUT_S)
        except TimeoutError:
            return Grade("error", None, f"the pattern took over {REGEX_TIMEOUT_S} s (REGEX_TIMEOUT_S): "
                                        "simplify it (nested repeats like (a+)+ backtrack forever)")
        return Grade("pass", m.group(0), "pattern found") if m else Grade("fail", None, "pattern not found")
    if kind == "choice":
        got = _choice_letter(answer)
        want = _choice_letter(expected)
        if got is None:
            return Grade("fail", None, "no choice letter in the answer")
        return Grade("pass" if got == want else "fail", got, f"chose {got}, expected {want}")
    if kind == "math":
        return grade_math(expected, answer)
    if kind == "gym":
        return grade_gym(spec, answer)
    # python
    if run_code is None:
        return Grade("ungraded", None, "code grading is off on this server (PLAYGROUND_CODE_GRADING)")
    return run_code(extract_code(answer), expected)


def _show(x: float) -> str:
    return str(int(x)) if x == int(x) and abs(x) < 1e15 else repr(x)
