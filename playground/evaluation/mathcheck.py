"""The math grader's work, run inside the checker worker (worker.py), never in the server: Math-Verify
reads a value from each side and compares them for mathematical equivalence.

Its own timeouts are off (`parsing_timeout=None`, `timeout_seconds=None`): they use signal.alarm,
which raises off the main thread; the pool's deadline kills this process instead.

How each side is read:
- the expected answer is a bare value as datasets write it (`\\frac{1}{2}`, `(0, 1]`, `x = 5`), so it
  is read as LaTeX math first (wrapped in `$…$`), then as plain text;
- the lane's answer is prose: Math-Verify finds its `\\boxed{}`, `$…$` or "the final answer is";
  an answer that is only math (no words outside LaTeX commands) is read as LaTeX math first, so a
  bare `3\\sqrt{2}` is 3√2 and not the 3 that a prose reading would stop at.
"""

from __future__ import annotations

import re

from math_verify import parse, verify

BARE_MATH_MAX_CHARS = 500  # longer answers are prose however few words they have
_DELIMITED = re.compile(r"\$|\\\(|\\\[|\\boxed|\\fbox")
_TEXT_BLOCK = re.compile(r"\\(?:text|mathrm|textbf|mbox)\s*\{[^{}]*\}")
_COMMAND = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(r"[A-Za-z]{2,}")


def _parse(text: str) -> list:
    return parse(text, parsing_timeout=None)


def _is_bare_math(text: str) -> bool:
    t = text.strip()
    if not t or len(t) > BARE_MATH_MAX_CHARS or _DELIMITED.search(t):
        return False
    return not _WORD.search(_COMMAND.sub(" ", _TEXT_BLOCK.sub(" ", t)))


def _read(text: str, math_first: bool, value_only: bool = False) -> list:
    t = text.strip()
    tries = [f"${t}$", t] if math_first else [t]
    for candidate in tries:
        got = _parse(candidate)
        if got and (not value_only or _has_value(got)):
            return got
    return []


def _has_value(parsed: list) -> bool:
    # Math-Verify falls back to the matched text when no expression parses ("???" reads as "???"):
    # an expected answer must give a value, or every answer would be compared as a string.
    return any(not isinstance(x, str) for x in parsed)


def read_gold(expected: str) -> list:
    return _read(expected, math_first=not _DELIMITED.search(expected), value_only=True)


def read_answer(answer: str) -> list:
    return _read(answer, math_first=_is_bare_math(answer))


def shown(parsed: list) -> str | None:
    """What was read, as the text Math-Verify matched (its second element), else the expression."""
    if not parsed:
        return None
    return parsed[-1] if isinstance(parsed[-1], str) else str(parsed[0])


def read_expected(expected: str) -> str | None:
    """What the expected answer reads as, or None when Math-Verify finds no value in it."""
    return shown(read_gold(expected))


def compare(expected: str, answer: str) -> dict:
    """{"expected_read", "answer_read", "equal"}: equal is None when a side has no readable value."""
    gold = read_gold(expected)
    pred = read_answer(answer) if gold else []
    equal = bool(verify(gold, pred, timeout_seconds=None)) if gold and pred else None
    return {"expected_read": shown(gold), "answer_read": shown(pred), "equal": equal}
