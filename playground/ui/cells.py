"""One cell's form and what it shows, as plain functions: settings and graders read from loosely typed
values (form fields or an API client's JSON), a stored execution as the open-cell view shows it.
"""

from __future__ import annotations

import html
import math

from playground.evaluation.graders import DEFAULT_TOLERANCE, GRADE_ICONS, Grade, check_grader
from playground.evaluation.verdict import has_grader, lane_grade
from playground.lanes import LaneSettings

from ..errors import InvalidInput
from .views import SETTING_FIELDS, LaneShown, answer_md, series_from_run, shown_from_run, status_line

EMPTY = LaneShown("empty", "", "", None)


def number(name: str, value, *, integer: bool = True, optional: bool = False, lane: str = ""):
    """Coerce a number from the page or an API client, or raise InvalidInput naming lane and field."""
    where = f"{lane} lane: " if lane else ""
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return None
        raise InvalidInput(f"{where}{name} is empty: give a number.")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{where}{name}={value!r} is not a number.") from None
    if math.isnan(x) or math.isinf(x):
        raise InvalidInput(f"{where}{name}={value!r} is not a finite number.")
    if integer:
        if x != int(x):
            raise InvalidInput(f"{where}{name}={value!r} must be a whole number.")
        return int(x)
    return x


def lane_settings(lane: str, values: dict) -> LaneSettings:
    """LaneSettings from loosely typed values (form fields or an API client's dict)."""
    if not isinstance(values, dict):
        raise InvalidInput(f"{lane} lane: settings must be an object of max_new_tokens, temperature, top_p, "
                           "top_k, seed (and thinking_budget).")
    unknown = set(values) - {*SETTING_FIELDS, "thinking_budget", "min_new_tokens"}
    if unknown:
        raise InvalidInput(f"{lane} lane: unknown settings {sorted(unknown)}.")
    d = LaneSettings()
    return LaneSettings(
        max_new_tokens=number("max_new_tokens", values.get("max_new_tokens", d.max_new_tokens), lane=lane),
        temperature=number("temperature", values.get("temperature", d.temperature), integer=False, lane=lane),
        top_p=number("top_p", values.get("top_p", d.top_p), integer=False, lane=lane),
        top_k=number("top_k", values.get("top_k", d.top_k), lane=lane),
        seed=number("seed", values.get("seed", d.seed), lane=lane),
        min_new_tokens=number("min_new_tokens", values.get("min_new_tokens", 0), lane=lane),
        thinking_budget=number("thinking_budget", values.get("thinking_budget"), optional=True, lane=lane),
    )


def form_lanes(standard: tuple, reasoning: tuple, budget) -> dict[str, LaneSettings]:
    """Both lanes' settings from the cell's form fields (SETTING_FIELDS order, plus the budget)."""
    return {"standard": lane_settings("standard", dict(zip(SETTING_FIELDS, standard, strict=True))),
            "reasoning": lane_settings("reasoning", {**dict(zip(SETTING_FIELDS, reasoning, strict=True)),
                                                    "thinking_budget": budget})}


def execution_view(cell, number_: int | None):
    """(shown per lane, series per lane) of one stored execution (the latest when None)."""
    ex = None
    if cell.executions:
        ex = cell.executions[-1] if number_ is None else next(
            (e for e in cell.executions if e.number == number_), cell.executions[-1])
    shown = {lane: shown_from_run(ex.runs[lane]) if ex and lane in ex.runs else EMPTY
             for lane in ("standard", "reasoning")}
    series = [series_from_run(ex.runs[lane]) for lane in ("standard", "reasoning") if ex and lane in ex.runs]
    return shown, series


def grade_md(g: Grade | None) -> str:
    """A lane's grade badge: status and what the grader read from the answer (model output: escaped)."""
    if g is None:
        return ""
    seen = f" · read <code>{html.escape(g.extracted[:120])}</code>" if g.extracted is not None else ""
    why = f" · {html.escape(g.detail[:160], quote=False)}" if g.status in ("fail", "error", "ungraded") else ""
    return f"{GRADE_ICONS.get(g.status, '')} **{g.status}**{seen}{why}"


def execution_grades(cell, number_: int | None) -> tuple[str, str]:
    """The two lanes' grade badges of one stored execution (the latest when None)."""
    if not has_grader(cell) or not cell.executions:
        return "", ""
    ex = cell.executions[-1] if number_ is None else next(
        (e for e in cell.executions if e.number == number_), cell.executions[-1])
    return tuple(grade_md(lane_grade(cell, ex.runs[lane]) if lane in ex.runs else None)
                 for lane in ("standard", "reasoning"))


def grader_spec(kind: str | None, tolerance, expected: str | None) -> dict | None:
    """The grader a cell's form describes, validated (InvalidInput says what to fix)."""
    if not (expected or "").strip():
        return None
    spec: dict = {"kind": kind or "exact"}
    if spec["kind"] == "numeric":
        spec["tolerance"] = number("tolerance", tolerance, integer=False, optional=True)
        if spec["tolerance"] is None:
            spec["tolerance"] = DEFAULT_TOLERANCE
    return check_grader(spec, expected)


def lane_outputs(shown: dict[str, LaneShown]):
    """The open cell's five lane texts: status lines and answers as Markdown (inert), the reasoning trace as
    plain text (the page sets it as text, static/trace.js; it grows by appends as a run streams)."""
    s, r = shown["standard"], shown["reasoning"]
    return (status_line("standard", s), answer_md(s.answer), status_line("reasoning", r), r.reasoning,
            answer_md(r.answer))
