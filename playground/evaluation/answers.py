"""Reading a final answer out of a lane's answer text: `\\boxed{}` values and the last number, as
people write them. Pure functions, shared by the graders (graders.py, gym.py)."""

from __future__ import annotations

import re
from fractions import Fraction

# A number as people write it: thousands separators (1,234,567), decimals, exponents, a leading
# sign, or a fraction (3/4). "1,2" is two numbers: a separator group has exactly three digits.
_NUMBER = re.compile(r"(?<![\w.])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?:/\d+)?(?![\d])"
                     r"|(?<![\w.])[-+−]?\.\d+")


def boxed_values(text: str) -> list[str]:
    """Contents of every \\boxed{...} (or \\fbox{...}), braces matched, so \\boxed{\\frac{1}{2}} is whole."""
    out = []
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[m.end():i - 1])
    return out


def _frac_to_slash(text: str) -> str:
    # \frac{3}{4} and \dfrac{3}{4} read as 3/4.
    return re.sub(r"\\[dt]?frac\s*\{\s*([-\d.,]+)\s*\}\s*\{\s*([-\d.,]+)\s*\}", r"\1/\2", text)


def parse_number(token: str) -> float | None:
    """A number written as 1,234.5, -3, 3/4, 1e3 or \\frac{3}{4}; None when it is not one."""
    t = _frac_to_slash(token).strip().replace("−", "-").replace(",", "").rstrip(".")
    t = t.strip("$€£%")
    try:
        if "/" in t:
            num, den = t.split("/", 1)
            return float(Fraction(num.strip()) / Fraction(den.strip()))
        return float(t)
    except (ValueError, ZeroDivisionError):
        return None


def extract_number(text: str) -> str | None:
    """The final number of an answer: the last \\boxed{} value that holds one, else the last number
    in the text (final answers come last; "about 3, exactly 4" means 4)."""
    for box in reversed(boxed_values(text)):
        found = _NUMBER.findall(_frac_to_slash(box))
        if found:
            return found[-1]
    found = _NUMBER.findall(_frac_to_slash(text))
    return found[-1] if found else None
