"""Charts are pure functions of data: assert on the figures' arrays, not on snapshots."""

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from playground.evaluation.charts import (
    REASONING_COLOR,
    STANDARD_COLOR,
    CellSummary,
    LaneSeries,
    inter_token_latency,
    session_summary,
    summary_numbers,
    token_split,
    tokens_over_time,
)
from playground.evaluation.metrics import lane_metrics

R, A = "reasoning", "answer"

STD = LaneSeries("standard", (0.2, 0.3, 0.45), (A, A, A))
RSN = LaneSeries("reasoning", (0.25, 0.35, 0.4, 0.6, 0.7), (R, R, R, A, A), (False, False, True, False, False))


def traces(fig, **meta):
    return [t for t in fig.data if all((t.meta or {}).get(k) == v for k, v in meta.items())]


def points(trace):
    return [(x, y) for x, y in zip(trace.x, trace.y) if x is not None]


def annotations(fig):
    return [a.text for a in fig.layout.annotations]


def test_cumulative_tokens_end_at_the_token_count():
    fig = tokens_over_time([STD, RSN])
    for s in (STD, RSN):
        ys = [y for t in traces(fig, lane=s.lane, role="tokens") for _, y in points(t)]
        assert max(ys) == len(s.times) and sorted(ys) == list(range(1, len(s.times) + 1))
    (std,) = traces(fig, lane="standard", role="tokens")
    assert std.name == "standard" and std.line.color == STANDARD_COLOR
    assert list(std.x) == [0.2, 0.3, 0.45]


def test_reasoning_lane_splits_thinking_from_answer():
    fig = tokens_over_time([RSN])
    (think,) = traces(fig, lane="reasoning", role="tokens", kind=R)
    (answer,) = traces(fig, lane="reasoning", role="tokens", kind=A)
    assert think.name == "reasoning (thinking)" and answer.name == "reasoning (answer)"
    assert points(think) == [(0.25, 1), (0.35, 2), (0.4, 3)]
    assert points(answer) == [(0.6, 4), (0.7, 5)]
    assert think.line.color == answer.line.color == REASONING_COLOR and think.line.dash != answer.line.dash


def test_interleaved_kinds_break_the_segment_line():
    s = LaneSeries("reasoning", (1.0, 2.0, 3.0, 4.0), (R, A, R, A))
    (think,) = traces(tokens_over_time([s]), kind=R)
    assert list(think.x) == [1.0, None, 3.0] and list(think.y) == [1, None, 3]


def test_first_answer_marker_sits_at_the_first_answer_token():
    fig = tokens_over_time([STD, RSN])
    (m_std,) = traces(fig, lane="standard", role="first_answer")
    (m_rsn,) = traces(fig, lane="reasoning", role="first_answer")
    assert list(m_std.x) == [0.2, 0.2] and list(m_rsn.x) == [0.6, 0.6]
    assert list(m_rsn.y) == [0, 5]


def test_no_marker_while_still_thinking():
    s = LaneSeries("reasoning", (0.1, 0.2), (R, R))
    fig = tokens_over_time([s])
    assert not traces(fig, role="first_answer") and not traces(fig, kind=A)
    assert s.first_answer_time() is None


def test_itl_is_gaps_in_ms():
    fig = inter_token_latency([STD, RSN])
    (rsn,) = traces(fig, lane="reasoning")
    assert list(rsn.x) == [2, 3, 4, 5]
    assert list(rsn.y) == pytest.approx([100, 50, 200, 100])
    (std,) = traces(fig, lane="standard")
    assert list(std.y) == pytest.approx([100, 150])


def test_token_split_bar_heights_are_the_counts():
    fig = token_split([STD, RSN])
    (think,) = traces(fig, kind=R)
    (answer,) = traces(fig, kind=A)
    assert list(think.x) == list(answer.x) == ["standard", "reasoning"]
    assert list(think.y) == [0, 3] and list(answer.y) == [3, 2]
    assert list(answer.marker.color) == [STANDARD_COLOR, REASONING_COLOR]
    assert fig.layout.barmode == "stack"


@pytest.mark.parametrize("lanes", [[], [LaneSeries("standard", (), ())],
                                   [LaneSeries("standard", (), ()), LaneSeries("reasoning", (), ())]])
def test_empty_lanes_give_a_note_not_an_error(lanes):
    for chart in (tokens_over_time, inter_token_latency, token_split):
        fig = chart(lanes)
        assert any("no tokens yet" in t for t in annotations(fig)), chart.__name__
        assert fig.layout.template.layout.paper_bgcolor is not None  # plotly_white applied
        fig.to_json()


def test_partial_lanes_draw_what_they_have():
    one = LaneSeries("reasoning", (0.5,), (R,))
    fig = tokens_over_time([STD, LaneSeries("reasoning", (), ())])
    assert {t.meta["lane"] for t in fig.data} == {"standard"}
    assert not annotations(fig)
    assert "need two tokens for a gap" in annotations(inter_token_latency([one]))
    assert list(token_split([one]).data[0].y) == [1]


def test_figures_are_small_light_and_keep_zoom():
    for fig in (tokens_over_time([STD, RSN]), inter_token_latency([STD, RSN]), token_split([STD, RSN])):
        assert fig.layout.height == 300 and fig.layout.uirevision
        assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
        assert all(t.text is None and t.hovertext is None for t in fig.data)
    assert tokens_over_time([RSN], uirevision="cell-7").layout.uirevision == "cell-7"


def test_charts_are_pure():
    assert tokens_over_time([STD, RSN]).to_json() == tokens_over_time([STD, RSN]).to_json()
    assert session_summary([cell("C", 10, 30)]).to_json() == session_summary([cell("C", 10, 30)]).to_json()


def test_long_runs_are_plain_lines_drawn_with_bounded_points():
    n = 5000
    s = LaneSeries("reasoning", tuple(i * 0.01 for i in range(n)), (R,) * 2000 + (A,) * 3000)
    fig = tokens_over_time([s], max_points=500)
    assert all(t.mode == "lines" for t in fig.data)
    lines = traces(fig, role="tokens")
    assert sum(len(points(t)) for t in lines) <= 2 * 500  # decimated for drawing...
    assert max(y for t in lines for y in t.y if y is not None) == n  # ...yet every token is counted


def test_from_result_subtracts_t_start():
    result = SimpleNamespace(lane="reasoning", t_start=100.0, token_times=[100.5, 100.75, 101.0],
                             token_kinds=[R, A, A], forced=[False, True, False])
    s = LaneSeries.from_result(result)
    assert s == LaneSeries("reasoning", (0.5, 0.75, 1.0), (R, A, A), (False, True, False))


def test_from_result_aligns_a_lane_caught_mid_token():
    # the engine appended the time but not yet the kind
    result = SimpleNamespace(lane="standard", t_start=1.0, token_times=[1.5, 2.0], token_kinds=[A], forced=[])
    s = LaneSeries.from_result(result)
    assert s.times == (0.5,) and s.kinds == (A,) and s.forced == ()


def test_from_stored_parses_the_compact_strings():
    s = LaneSeries.from_stored("reasoning", [0.1, 0.2, 0.3], "rra", "010")
    assert s == LaneSeries("reasoning", (0.1, 0.2, 0.3), (R, R, A), (False, True, False))
    assert LaneSeries.from_stored("standard", [], "") == LaneSeries("standard", (), (), ())
    with pytest.raises(ValueError):
        LaneSeries.from_stored("standard", [0.1], "x")


def cell(label, std_n, rsn_n, std_total=1.0, rsn_total=3.0):
    std = lane_metrics(5, 0.0, [0.1 + i * 0.9 / max(std_n - 1, 1) for i in range(std_n)], [A] * std_n,
                       first_answer_time=0.1 if std_n else None, t_end=std_total, finish_reason="stop")
    kinds = [R] * (rsn_n - 2) + [A] * 2
    times = [0.2 + i * 2.6 / max(rsn_n - 1, 1) for i in range(rsn_n)]
    rsn = lane_metrics(5, 0.0, times, kinds, first_answer_time=times[-2], t_end=rsn_total, finish_reason="stop")
    return CellSummary(label, std, rsn)


def test_session_summary_values_come_from_the_metrics():
    cells = [cell("Cell 1", 10, 40, 1.0, 3.0), cell("Cell 2", 20, 30, 2.0, 3.0)]
    fig = session_summary(cells)
    (extra,) = traces(fig, panel="extra_tokens")
    (mult,) = traces(fig, panel="latency_multiple")
    assert list(extra.x) == ["Cell 1", "Cell 2"] and list(extra.y) == [30, 10]
    assert list(mult.y) == pytest.approx([3.0, 1.5])
    (tps_std,) = traces(fig, panel="tok_s", lane="standard")
    (tps_rsn,) = traces(fig, panel="tok_s", lane="reasoning")
    assert list(tps_std.y) == pytest.approx([c.standard.decode_tok_s for c in cells])
    assert list(tps_rsn.y) == pytest.approx([c.reasoning.decode_tok_s for c in cells])
    (ttfat_rsn,) = traces(fig, panel="ttfat_s", lane="reasoning")
    assert list(ttfat_rsn.y) == pytest.approx([c.reasoning.ttfat_s for c in cells])
    assert fig.layout.yaxis2.title.text and fig.layout.xaxis4.type == "category"

    nums = summary_numbers(cells)
    assert nums["cells"] == 2 and nums["total_extra_tokens"] == 40 and nums["mean_extra_tokens"] == 20
    assert nums["median_latency_multiple"] == pytest.approx(2.25) and nums["max_latency_multiple"] == 3.0
    assert nums["total_reasoning_tokens"] == 38 + 28
    assert nums["mean_tok_s"]["standard"] == pytest.approx(sum(c.standard.decode_tok_s for c in cells) / 2)
    assert nums["mean_ttfat_s"]["standard"] == pytest.approx(0.1)


def test_session_summary_survives_missing_metrics():
    stopped = lane_metrics(5, 0.0, [], [], t_end=0.0, finish_reason="stopped")  # 0 tokens, 0 s
    cells = [CellSummary("a", None, None), CellSummary("b", stopped, cell("x", 3, 5).reasoning),
             CellSummary("c", SimpleNamespace(generated_tokens=4), None)]
    fig = session_summary(cells)
    (extra,) = traces(fig, panel="extra_tokens")
    (mult,) = traces(fig, panel="latency_multiple")
    assert list(extra.y) == [None, 5, None] and list(mult.y) == [None, None, None]
    nums = summary_numbers(cells)
    assert nums["total_extra_tokens"] == 5 and nums["median_latency_multiple"] is None
    assert nums["mean_tok_s"]["standard"] is None
    fig.to_json()


def test_empty_session():
    fig = session_summary([])
    assert "no cells run yet" in annotations(fig)
    assert summary_numbers([]) == {"cells": 0, "total_extra_tokens": 0, "mean_extra_tokens": None,
                                   "median_latency_multiple": None, "max_latency_multiple": None,
                                   "total_reasoning_tokens": 0, "mean_tok_s": {"standard": None, "reasoning": None},
                                   "mean_ttfat_s": {"standard": None, "reasoning": None}}


@st.composite
def lane_series(draw, lane):
    gaps = draw(st.lists(st.floats(min_value=1e-4, max_value=5.0, allow_nan=False), max_size=60))
    times, t = [], draw(st.floats(min_value=0.0, max_value=10.0))
    for g in gaps:
        t += g
        times.append(t)
    kinds = draw(st.lists(st.sampled_from([R, A]), min_size=len(times), max_size=len(times)))
    return LaneSeries(lane, tuple(times), tuple(kinds))


# plotly figure construction takes ~0.1 s, so no per-example deadline and a modest example count
@settings(deadline=None, max_examples=50)
@given(lane_series("standard"), lane_series("reasoning"))
def test_property_counts_and_gaps(std, rsn):
    tot, itl, split = tokens_over_time([std, rsn]), inter_token_latency([std, rsn]), token_split([std, rsn])
    for i, s in enumerate((std, rsn)):
        n = len(s.times)
        segs = traces(tot, lane=s.lane, role="tokens")
        ys = [y for t in segs for _, y in points(t)]
        assert (max(ys) if ys else 0) == n and len(ys) == n
        # the final point of the lane (in time) is its n-th token
        assert max((p for t in segs for p in points(t)), default=(None, 0))[1] == n
        assert sum(len(points(t)) for t in traces(tot, lane=s.lane, kind=R)) == s.kinds.count(R)
        lane_itl = traces(itl, lane=s.lane)
        assert (len(lane_itl[0].y) if lane_itl else 0) == max(n - 1, 0)
        assert split.data[0].y[i] + split.data[1].y[i] == n
