"""The verdict and its charts, from hand-built stored records (pure: no model, no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from playground.evaluation import charts
from playground.evaluation.graders import grade_key
from playground.evaluation.stats import MIN_CELLS_TO_TELL, wilson_interval
from playground.evaluation.verdict import lane_grade, session_verdict
from playground.store import CellFull, Execution, RunInfo, SessionFull

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run(lane, answer, tokens, seconds, reasoning="", number=1, sweep=None, grade=None, status="done"):
    record = {"model_id": "m", "settings": {}}
    if sweep is not None:
        record["sweep"] = {"budget": sweep[0]}
    r_tokens = tokens // 2 if lane == "reasoning" else 0
    return RunInfo(id="", cell_id="", execution=number, lane=lane, status=status, raw_text=reasoning + answer,
                   reasoning_text=reasoning, answer_text=answer, prompt_tokens=5, generated_tokens=tokens,
                   reasoning_tokens=r_tokens, answer_tokens=tokens - r_tokens, token_ids=(), token_times=(),
                   token_kinds="", forced="",
                   metrics={"total_s": seconds}, finish_reason="stop", error=None, record=record, started_at=T0,
                   finished_at=T0, updated_at=T0, grade=grade)


def cell(i, expected, grader, executions):
    return CellFull(id=f"c{i}", session_id="s", position=i, kind="prompt", prompt=f"q{i}", system_prompt=None,
                    note="", settings={}, created_at=T0, updated_at=T0, expected=expected, grader=grader,
                    executions=tuple(executions))


def pair(n, std_answer, rsn_answer, std_tokens=10, rsn_tokens=50, std_s=1.0, rsn_s=3.0, reasoning="hmm"):
    return Execution(n, {"standard": run("standard", std_answer, std_tokens, std_s, number=n),
                         "reasoning": run("reasoning", rsn_answer, rsn_tokens, rsn_s, reasoning, number=n)})


def session(*cells):
    return SessionFull(id="s", owner="me", title="t", created_at=T0, updated_at=T0, cells=tuple(cells))


NUM = {"kind": "numeric", "tolerance": 1e-6}


def test_accuracy_gain_tokens_latency_and_per_1k():
    s = session(
        cell(0, "4", NUM, [pair(1, "4", "4")]),  # both right
        cell(1, "12", NUM, [pair(1, "10", "12", rsn_tokens=90)]),  # reasoning fixed it
        cell(2, "7", NUM, [pair(1, "7", "8")]),  # reasoning broke it
        cell(3, "9", NUM, [pair(1, "1", "9")]),  # fixed
        cell(4, None, None, [pair(1, "x", "y")]),  # ungraded: not in the comparison
    )
    v = session_verdict(s)
    std, rsn = v.lanes["standard"], v.lanes["reasoning"]
    assert (std.passed, std.graded, rsn.passed, rsn.graded) == (2, 4, 3, 4)
    assert v.gain == 0.25 and len(v.compared) == 4
    assert v.mean_extra_tokens == (40 + 80 + 40 + 40) / 4
    assert v.latency_multiple == 3.0
    assert std.accuracy_per_1k_tokens == 2 / (40 / 1000) and rsn.accuracy_per_1k_tokens == 3 / (240 / 1000)
    d = v.to_dict()
    assert d["fixed_by_reasoning"] == 2 and d["broken_by_reasoning"] == 1 and d["cells_compared"] == 4
    assert "gain +25 points" in v.headline()
    assert [c.correctness_change for c in v.cells] == [0, 1, -1, 1, None]


def test_the_latest_non_sweep_execution_counts_and_sweeps_make_the_curve():
    sweeps = [Execution(n, {"reasoning": run("reasoning", ans, tok, 1.0, number=n, sweep=(b,))})
              for n, (b, ans, tok) in enumerate([(0, "3", 5), (64, "4", 40), (None, "4", 80)], start=3)]
    c = cell(0, "4", NUM, [pair(1, "1", "1"), pair(2, "4", "4"), *sweeps])
    v = session_verdict(session(c))
    assert v.lanes["standard"].passed == 1  # execution 2, not 1 nor the sweeps
    assert [(p.label, p.accuracy, p.mean_tokens) for p in v.budget_curve] == [
        ("0", 0.0, 5), ("64", 1.0, 40), ("unlimited", 1.0, 80)]


def test_a_cached_grade_is_used_only_while_the_expected_answer_is_unchanged():
    c = cell(0, "4", NUM, [])
    stale = {"status": "pass", "extracted": "99", "detail": "", "key": "old"}
    fresh = {"status": "pass", "extracted": "cached", "detail": "", "key": grade_key(NUM, "4")}
    assert lane_grade(c, run("standard", "5", 1, 1.0, grade=stale)).status == "fail"
    assert lane_grade(c, run("standard", "5", 1, 1.0, grade=fresh)).extracted == "cached"
    py = cell(1, "assert f() == 1", {"kind": "python"}, [])
    assert lane_grade(py, run("standard", "def f(): return 1", 1, 1.0)).status == "ungraded"  # no runner


@settings(max_examples=150, deadline=None)
@given(right=st.integers(-999, 999), wrong=st.integers(-999, 999),
       noise=st.text(alphabet="abc xyz.,", max_size=40))
def test_a_lane_is_graded_on_its_answer_never_its_reasoning(right, wrong, noise):
    reasoning = f"{noise} the answer is {right} \\boxed{{{right}}} {noise}"
    c = cell(0, str(right), NUM, [])
    g = lane_grade(c, run("reasoning", f"So: {wrong}", 10, 1.0, reasoning=reasoning))
    assert g.status == ("pass" if right == wrong else "fail") and g.extracted == str(wrong)
    # and an answer cut off inside the reasoning (none written) fails, whatever the reasoning found
    assert lane_grade(c, run("reasoning", "", 10, 1.0, reasoning=reasoning)).status == "fail"


def test_charts_of_the_verdict():
    s = session(cell(0, "4", NUM, [pair(1, "4", "4")]), cell(1, "12", NUM, [pair(1, "10", "12", rsn_tokens=90)]))
    v = session_verdict(s)
    fig = charts.verdict_scatter(v.cells)
    assert list(fig.data[0].x) == [40, 80] and list(fig.data[0].y) == [0, 1] and fig.data[0].meta["role"] == "cells"
    bars = charts.accuracy_bars(v.lanes)
    assert [(b.meta["lane"], b.y[0], b.text[0]) for b in bars.data] == [("standard", 0.5, "1/2"),
                                                                     ("reasoning", 1.0, "2/2")]
    pts = session_verdict(session(cell(0, "4", NUM, [
        Execution(2, {"reasoning": run("reasoning", "4", 30, 1.0, number=2, sweep=(None,))}),
        Execution(1, {"reasoning": run("reasoning", "3", 3, 1.0, number=1, sweep=(0,))})]))).budget_curve
    curve = charts.budget_curve(pts, standard_accuracy=0.5)
    by_role = {t.meta["role"]: t for t in curve.data}
    assert list(by_role["accuracy"].x) == ["0", "unlimited"] and list(by_role["accuracy"].y) == [0.0, 1.0]
    assert list(by_role["tokens"].y) == [3, 30] and list(by_role["standard"].y) == [0.5, 0.5]


def test_charts_cope_with_nothing():
    v = session_verdict(session())
    for fig in (charts.verdict_scatter(v.cells), charts.accuracy_bars(v.lanes), charts.budget_curve(())):
        assert not fig.data and fig.layout.annotations
    assert "No graded cells" in v.headline() and v.gain is None and v.latency_multiple is None


def test_runs_that_did_not_finish_are_not_graded_and_leave_the_comparison():
    stopped = Execution(1, {"standard": run("standard", "4", 10, 1.0),
                            "reasoning": run("reasoning", "", 50, 3.0, "thinking…", status="stopped")})
    v = session_verdict(session(cell(0, "4", NUM, [stopped]), cell(1, "4", NUM, [pair(1, "4", "5")])))
    assert v.cells[0].grades["reasoning"].status == "ungraded" and "stopped" in v.cells[0].grades["reasoning"].detail
    assert len(v.compared) == 1 and v.lanes["reasoning"].graded == 1


def many(outcomes):
    """A session whose cells are (standard right?, reasoning right?) pairs, expected answer "1"."""
    return session(*[cell(i, "1", NUM, [pair(1, "1" if s else "0", "1" if r else "0")])
                     for i, (s, r) in enumerate(outcomes)])


def test_too_few_graded_cells_to_tell_however_big_the_gain():
    v = session_verdict(many([(False, True)] * (MIN_CELLS_TO_TELL - 1)))
    assert v.gain == 1.0 and v.fixed == MIN_CELLS_TO_TELL - 1
    assert v.conclusion.startswith("too few graded cells to tell") and "too few graded cells" in v.headline()
    assert v.to_dict()["min_cells_to_tell"] == MIN_CELLS_TO_TELL


def test_a_gain_is_called_only_when_mcnemar_says_so():
    # 20 cells: 14 right in both, 6 fixed, none broken -> p = 2/64 < 0.05
    helped = session_verdict(many([(True, True)] * 14 + [(False, True)] * 6))
    assert helped.p_value == 2 / 64 and helped.conclusion.startswith("reasoning helped")
    # the same gain of 2 cells made of 4 fixed and 2 broken is noise (p = 0.6875)
    noise = session_verdict(many([(True, True)] * 14 + [(False, True)] * 4 + [(True, False)] * 2))
    assert noise.p_value == 2 * 22 / 64 and noise.conclusion.startswith("no clear difference")
    d = noise.to_dict()
    assert d["p_value"] == noise.p_value and d["conclusion"] == noise.conclusion and d["confidence"] == 0.95


def test_intervals_and_costs_per_correct_answer_per_lane():
    # standard 1/2 right (10 tokens, 1 s each), reasoning 2/2 (50 tokens, 3 s each)
    v = session_verdict(session(cell(0, "4", NUM, [pair(1, "4", "4")]), cell(1, "5", NUM, [pair(1, "0", "5")])))
    std, rsn = v.lanes["standard"], v.lanes["reasoning"]
    assert std.tokens_per_correct == 20 and std.seconds_per_correct == 2.0
    assert rsn.tokens_per_correct == 50 and rsn.seconds_per_correct == 3.0
    assert std.interval == wilson_interval(1, 2) and rsn.interval == wilson_interval(2, 2)
    lanes = v.to_dict()["lanes"]
    assert lanes["standard"]["interval"] == list(wilson_interval(1, 2))
    assert lanes["reasoning"]["tokens_per_correct"] == 50
    none_right = session_verdict(many([(False, False)]))
    assert none_right.lanes["standard"].tokens_per_correct is None


def test_budget_points_carry_intervals_and_the_charts_draw_them_as_error_bars():
    sweeps = [Execution(n, {"reasoning": run("reasoning", ans, 10, 1.0, number=n, sweep=(b,))})
              for n, (b, ans) in enumerate([(0, "3"), (64, "4")], start=2)]
    s = session(cell(0, "4", NUM, [pair(1, "4", "4"), *sweeps]), cell(1, "5", NUM, [pair(1, "0", "5")]))
    v = session_verdict(s)
    assert [p.interval for p in v.budget_curve] == [wilson_interval(0, 1), wilson_interval(1, 1)]
    assert v.to_dict()["budget_curve"][1]["interval"] == list(wilson_interval(1, 1))
    curve = {t.meta["role"]: t for t in charts.budget_curve(v.budget_curve).data}["accuracy"]
    lo, hi = wilson_interval(1, 1)
    assert list(curve.error_y.array) == [wilson_interval(0, 1)[1], hi - 1.0]
    assert list(curve.error_y.arrayminus) == [0.0, 1.0 - lo]
    bars = charts.accuracy_bars(v.lanes)
    std = next(b for b in bars.data if b.meta["lane"] == "standard")
    lo, hi = wilson_interval(1, 2)
    assert std.error_y.array[0] == pytest.approx(hi - 0.5) and std.error_y.arrayminus[0] == pytest.approx(0.5 - lo)
