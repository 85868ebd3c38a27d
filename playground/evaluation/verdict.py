"""Did reasoning pay? A session's grades and costs, per lane, as pure functions of stored records.

Which execution counts: a cell's latest execution that is not a budget-sweep point (sweep points
carry record["sweep"] = {"budget": n | None} and feed only the budget curve). A lane is graded
from its ANSWER text (graders.py) unless its run holds a grade cached against the same expected
answer and grader (`graders.grade_key`); python tests need a runner, which the caller passes in.

Numbers, over cells where both lanes ran and the cell has an expected answer:
- accuracy per lane = passed / graded, and the gain = reasoning − standard accuracy;
- extra tokens = mean over cells of (reasoning − standard generated tokens);
- latency multiple = total reasoning seconds ÷ total standard seconds (a ratio of sums, so a
  handful of tiny standard runs cannot blow it up);
- accuracy per 1k tokens = passed ÷ (generated tokens / 1000), per lane: what correctness costs;
  tokens and seconds per correct answer are the same cost the other way up;
- each accuracy (per lane, per budget point) carries its 95% Wilson interval, and the gain an exact
  McNemar p over the cells reasoning fixed and broke (stats.py); below MIN_CELLS_TO_TELL compared
  cells the verdict says "too few graded cells to tell" rather than a conclusion.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from playground.evaluation import stats
from playground.evaluation.graders import UNGRADED, Grade, grade, grade_key
from playground.lanes import LANES

SWEEP_KEY = "sweep"
UNLIMITED = "unlimited"  # how a budget of None is labelled in charts and exports


def is_sweep(execution) -> bool:
    return any(isinstance(r.record, dict) and SWEEP_KEY in r.record for r in execution.runs.values())


def sweep_budget(execution) -> int | None:
    r = next(iter(execution.runs.values()))
    return (r.record.get(SWEEP_KEY) or {}).get("budget")


def main_execution(cell):
    """The cell's latest execution that is not a sweep point, or None."""
    return next((e for e in reversed(cell.executions) if not is_sweep(e)), None)


def has_grader(cell) -> bool:
    return cell.kind == "prompt" and bool(cell.expected) and cell.grader is not None


def answer_grade(cell, status: str, answer_text: str, run_code: Callable[[str, str], Grade] | None = None) -> Grade:
    """A lane's grade from its status and its ANSWER text alone (never the reasoning), graded now."""
    if not has_grader(cell):
        return UNGRADED
    if status != "done":
        # A stopped, interrupted or failed run never had the chance to answer: counting it as wrong
        # would charge reasoning (the slower lane, so the one more often cut short) for the stop.
        return Grade("ungraded", None, f"the run is {status}, not done: run it again to grade it")
    return grade(cell.grader, cell.expected, answer_text, run_code)


def lane_grade(cell, run, run_code: Callable[[str, str], Grade] | None = None) -> Grade:
    """The grade of one stored lane: the cached one when it was graded against the cell's current
    expected answer and grader, else answer_grade of its status and answer text."""
    if has_grader(cell) and run.status == "done":
        cached = run.grade if isinstance(run.grade, dict) else None
        if cached and cached.get("key") == grade_key(cell.grader, cell.expected) and \
                (g := Grade.from_dict(cached)) is not None:
            return g
    return answer_grade(cell, run.status, run.answer_text, run_code)


def grade_record(cell, g: Grade) -> dict:
    """What store.set_grade keeps: the grade and what it was graded against."""
    return {**g.to_dict(), "key": grade_key(cell.grader, cell.expected)}


@dataclass(frozen=True)
class CellVerdict:
    label: str
    grades: dict[str, Grade]  # by lane
    tokens: dict[str, int]
    seconds: dict[str, float | None]
    prompt: str = ""  # what a report's table of graded cells shows beside the grades
    expected: str | None = None

    @property
    def extra_tokens(self) -> int | None:
        if "standard" in self.tokens and "reasoning" in self.tokens:
            return self.tokens["reasoning"] - self.tokens["standard"]
        return None

    @property
    def correctness_change(self) -> int | None:
        """+1 reasoning fixed it, −1 reasoning broke it, 0 no change; None when either is ungraded."""
        s, r = self.grades.get("standard"), self.grades.get("reasoning")
        if s is None or r is None or {s.status, r.status} - {"pass", "fail"}:
            return None
        return (r.status == "pass") - (s.status == "pass")


@dataclass(frozen=True)
class LaneTotals:
    graded: int = 0
    passed: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def accuracy(self) -> float | None:
        return self.passed / self.graded if self.graded else None

    @property
    def accuracy_per_1k_tokens(self) -> float | None:
        return self.passed / (self.tokens / 1000) if self.graded and self.tokens else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return stats.wilson_interval(self.passed, self.graded)

    @property
    def tokens_per_correct(self) -> float | None:
        return stats.per_correct(self.tokens, self.passed)

    @property
    def seconds_per_correct(self) -> float | None:
        return stats.per_correct(self.seconds, self.passed)

    def to_dict(self) -> dict:
        return {**asdict(self), "accuracy": self.accuracy, "interval": _pair(self.interval),
                "accuracy_per_1k_tokens": self.accuracy_per_1k_tokens,
                "tokens_per_correct": self.tokens_per_correct, "seconds_per_correct": self.seconds_per_correct}


@dataclass(frozen=True)
class BudgetPoint:
    budget: int | None  # None = unlimited
    cells: int
    passed: int
    graded: int
    mean_tokens: float
    mean_reasoning_tokens: float

    @property
    def accuracy(self) -> float | None:
        return self.passed / self.graded if self.graded else None

    @property
    def label(self) -> str:
        return UNLIMITED if self.budget is None else str(self.budget)

    @property
    def interval(self) -> tuple[float, float] | None:
        return stats.wilson_interval(self.passed, self.graded)

    def to_dict(self) -> dict:
        return {"budget": self.budget, "label": self.label, "cells": self.cells, "graded": self.graded,
                "passed": self.passed, "accuracy": self.accuracy, "interval": _pair(self.interval),
                "mean_tokens": self.mean_tokens, "mean_reasoning_tokens": self.mean_reasoning_tokens}


def _pair(interval: tuple[float, float] | None) -> list[float] | None:
    return list(interval) if interval is not None else None


@dataclass(frozen=True)
class Verdict:
    cells: tuple[CellVerdict, ...]
    lanes: dict[str, LaneTotals]
    budget_curve: tuple[BudgetPoint, ...] = field(default=())

    @property
    def compared(self) -> tuple[CellVerdict, ...]:
        """Cells graded in both lanes: the ones every comparison is made over."""
        return tuple(c for c in self.cells if c.correctness_change is not None)

    @property
    def gain(self) -> float | None:
        s, r = self.lanes["standard"].accuracy, self.lanes["reasoning"].accuracy
        return r - s if s is not None and r is not None else None

    @property
    def mean_extra_tokens(self) -> float | None:
        xs = [c.extra_tokens for c in self.compared if c.extra_tokens is not None]
        return statistics.fmean(xs) if xs else None

    @property
    def latency_multiple(self) -> float | None:
        s, r = self.lanes["standard"].seconds, self.lanes["reasoning"].seconds
        return r / s if s > 0 and self.compared else None

    @property
    def fixed(self) -> int:
        return sum(1 for c in self.compared if c.correctness_change == 1)

    @property
    def broken(self) -> int:
        return sum(1 for c in self.compared if c.correctness_change == -1)

    @property
    def p_value(self) -> float | None:
        """Exact McNemar over the compared cells; None when none was compared."""
        return stats.mcnemar_exact(self.fixed, self.broken) if self.compared else None

    @property
    def conclusion(self) -> str:
        return stats.conclusion(len(self.compared), self.fixed, self.broken)

    def to_dict(self) -> dict:
        """Plain JSON values, for exports and share pages."""
        return {"cells_compared": len(self.compared), "cells_graded": sum(1 for c in self.cells if c.grades),
                "lanes": {lane: t.to_dict() for lane, t in self.lanes.items()}, "gain": self.gain,
                "mean_extra_tokens": self.mean_extra_tokens, "latency_multiple": self.latency_multiple,
                "fixed_by_reasoning": self.fixed, "broken_by_reasoning": self.broken,
                "p_value": self.p_value, "confidence": stats.CONFIDENCE, "min_cells_to_tell": stats.MIN_CELLS_TO_TELL,
                "conclusion": self.conclusion if self.compared else None,
                "budget_curve": [p.to_dict() for p in self.budget_curve]}

    def headline(self) -> str:
        """One sentence a person can act on."""
        n = len(self.compared)
        if not n:
            return "No graded cells yet: give cells an expected answer and a grader, then run them."
        s, r = self.lanes["standard"], self.lanes["reasoning"]
        parts = [f"{n} graded cell(s): standard {s.passed}/{s.graded}, reasoning {r.passed}/{r.graded}"]
        if self.gain is not None:
            parts.append(f"gain {self.gain * 100:+.0f} points")
        if self.mean_extra_tokens is not None:
            parts.append(f"{self.mean_extra_tokens:+,.0f} tokens per cell")
        if self.latency_multiple is not None:
            parts.append(f"{self.latency_multiple:.2f}× the time")
        return " · ".join(parts) + f". Verdict: {self.conclusion}."


def _seconds(run) -> float | None:
    m = run.metrics if isinstance(run.metrics, dict) else {}
    v = m.get("total_s")
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def session_verdict(session, run_code: Callable[[str, str], Grade] | None = None) -> Verdict:
    """The verdict of a stored session (SessionFull or anything with .cells of CellFull)."""
    cells: list[CellVerdict] = []
    totals = {lane: LaneTotals() for lane in LANES}
    for i, cell in enumerate(session.cells, 1):
        ex = main_execution(cell) if cell.kind == "prompt" else None
        if ex is None:
            continue
        grades = {lane: lane_grade(cell, run, run_code) for lane, run in ex.runs.items()} if has_grader(cell) else {}
        cv = CellVerdict(f"Cell {i}", grades, {lane: r.generated_tokens for lane, r in ex.runs.items()},
                         {lane: _seconds(r) for lane, r in ex.runs.items()}, cell.prompt, cell.expected)
        cells.append(cv)
        if cv.correctness_change is None:
            continue  # accuracy is compared over cells graded in both lanes only
        for lane in LANES:
            t = totals[lane]
            totals[lane] = LaneTotals(t.graded + 1, t.passed + (cv.grades[lane].status == "pass"),
                                      t.tokens + cv.tokens[lane], t.seconds + (cv.seconds[lane] or 0.0))
    return Verdict(tuple(cells), totals, budget_curve(session, run_code))


def budget_curve(session, run_code: Callable[[str, str], Grade] | None = None) -> tuple[BudgetPoint, ...]:
    """Accuracy and tokens of the reasoning lane per thinking budget, from the sweep executions
    (the latest sweep point of each cell per budget), budgets ascending with unlimited last."""
    latest: dict[int | None, dict[str, tuple]] = {}
    for cell in session.cells:
        for ex in cell.executions:
            if not is_sweep(ex) or "reasoning" not in ex.runs:
                continue
            latest.setdefault(sweep_budget(ex), {})[cell.id] = (cell, ex.runs["reasoning"])
    points = []
    for budget in sorted(latest, key=lambda b: (b is None, b or 0)):
        rows = list(latest[budget].values())
        grades = [lane_grade(c, r, run_code) for c, r in rows if has_grader(c)]
        graded = [g for g in grades if g.status in ("pass", "fail")]
        points.append(BudgetPoint(budget, len(rows), sum(g.status == "pass" for g in graded), len(graded),
                                  statistics.fmean(r.generated_tokens for _, r in rows),
                                  statistics.fmean(r.reasoning_tokens for _, r in rows)))
    return tuple(points)
