"""What a grader returns, shared by every grader module (graders.py dispatches; math_grader.py and
gym.py grade through a checker worker), so none of them imports another to get it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

STATUSES = ("pass", "fail", "ungraded", "error")
GRADE_ICONS = {"pass": "✅", "fail": "❌", "ungraded": "➖", "error": "⚠️"}


@dataclass(frozen=True)
class Grade:
    """status pass|fail|ungraded|error; extracted is what the grader read from the answer (shown to
    the user so they can see why); detail says why in words."""

    status: str
    extracted: str | None = None
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> Grade | None:
        if not isinstance(d, dict) or d.get("status") not in STATUSES:
            return None
        return cls(d["status"], d.get("extracted"), str(d.get("detail") or ""))


UNGRADED = Grade("ungraded", None, "no expected answer")

# What a python grader is handed: (answer code, test code) -> Grade. sandbox.run_code_test fits.
CodeRunner = Callable[[str, str], Grade]
