"""Metrics are pure functions of timestamps: checked on hand-made timelines."""

from itertools import cycle
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from playground.evaluation.metrics import RunningMetrics, format_metrics, lane_metrics, percentile, result_metrics


def test_percentile_interpolates():
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([4.0, 1.0, 3.0, 2.0], 100) == 4.0


def test_lane_metrics_on_a_known_timeline():
    # start at t=10; tokens at 10.5, 10.6, 10.7, 10.9; first two reasoning, first answer at 10.7
    m = lane_metrics(prompt_tokens=12, t_start=10.0, token_times=[10.5, 10.6, 10.7, 10.9],
                     token_kinds=["reasoning", "reasoning", "answer", "answer"], forced=[False, True, False, False],
                     first_answer_time=10.7, t_end=11.0, finish_reason="stop")
    assert m.prompt_tokens == 12 and m.generated_tokens == 4
    assert (m.reasoning_tokens, m.answer_tokens, m.forced_tokens) == (2, 2, 1)
    assert abs(m.ttft_s - 0.5) < 1e-9 and abs(m.ttfat_s - 0.7) < 1e-9 and abs(m.total_s - 1.0) < 1e-9
    assert abs(m.decode_tok_s - 3 / 0.4) < 1e-9
    assert abs(m.itl_p50_ms - 100) < 1e-6 and m.itl_p95_ms > m.itl_p50_ms
    assert "TTFT 0.50 s" in format_metrics(m) and "stop" in format_metrics(m)


def test_no_tokens_gives_no_rates():
    m = lane_metrics(5, 1.0, [], [], t_end=1.2, finish_reason="error")
    assert m.ttft_s is None and m.decode_tok_s is None and m.itl_p50_ms is None and m.generated_tokens == 0
    assert "–" in format_metrics(m)


@given(st.lists(st.floats(0.001, 1.0), min_size=2, max_size=50))
def test_rates_follow_the_gaps(gaps):
    times = [0.1]
    for g in gaps:
        times.append(times[-1] + g)
    m = lane_metrics(1, 0.0, times, ["answer"] * len(times))
    assert abs(m.decode_tok_s - len(gaps) / (times[-1] - times[0])) < 1e-6
    assert min(gaps) * 1000 - 1e-6 <= m.itl_p50_ms <= m.itl_p95_ms <= max(gaps) * 1000 + 1e-6


@given(st.lists(st.tuples(st.floats(0.0, 0.5), st.sampled_from(["reasoning", "answer"]), st.booleans()),
                max_size=60),
       st.lists(st.integers(1, 12), min_size=1, max_size=20), st.booleans())
def test_running_metrics_equal_a_full_recount_at_every_step(tokens, steps, finished):
    """The UI's live metrics (counted token by token as the lane grows) are exactly what a full
    recount of the same lane gives, after any split of its growth into updates."""

    def recount(lane):
        return lane_metrics(lane.prompt_tokens, lane.t_start, lane.token_times, lane.token_kinds, lane.forced,
                            lane.first_answer_time, lane.t_end, lane.finish_reason)

    lane = SimpleNamespace(prompt_tokens=7, t_start=1.0, token_times=[], token_kinds=[], forced=[],
                           first_answer_time=None, t_end=None, finish_reason=None)
    live = RunningMetrics()
    t, i, cuts = 1.2, 0, cycle(steps)
    while i < len(tokens):
        for gap, kind, forced in tokens[i:i + next(cuts)]:
            t += gap
            lane.token_times.append(t)
            lane.token_kinds.append(kind)
            lane.forced.append(forced)
            if kind == "answer" and lane.first_answer_time is None:
                lane.first_answer_time = t
        i = len(lane.token_times)
        assert live.of(lane) == recount(lane)
    if finished:
        lane.t_end, lane.finish_reason = t + 0.1, "stop"
    assert live.of(lane) == recount(lane) == result_metrics(lane)
    assert live.of(lane).generated_tokens == len(tokens)


def test_running_metrics_count_only_what_every_list_already_holds():
    """Another thread appends a running lane's time before its kind: a read in between counts the
    token once both are there, never a time without its kind."""
    lane = SimpleNamespace(prompt_tokens=1, t_start=0.0, token_times=[0.1, 0.2, 0.3], token_kinds=["answer"] * 2,
                           forced=[False, False], first_answer_time=0.1, t_end=None, finish_reason=None)
    live = RunningMetrics()
    assert live.of(lane).generated_tokens == 2
    lane.token_kinds.append("answer")
    lane.forced.append(True)
    m = live.of(lane)
    assert (m.generated_tokens, m.answer_tokens, m.forced_tokens) == (3, 3, 1)
    assert m == result_metrics(lane) == lane_metrics(1, 0.0, lane.token_times, lane.token_kinds, lane.forced, 0.1)


def test_a_stored_run_with_partial_or_odd_metrics_still_has_a_line_or_none():
    """An imported session may carry an older version's or another tool's metrics: the view and share
    pages show what there is (or nothing), never fail on it."""
    from playground.evaluation.metrics import metrics_line

    line = metrics_line({"ttft_s": 0.5, "total_s": 2.0, "generated_tokens": 20, "unknown_field": 1})
    assert line is not None and "TTFT 0.50 s" in line
    assert metrics_line({"ttft_s": "soon"}) is None  # an odd value: no line rather than an error
    assert metrics_line(None) is None and metrics_line({}) is None
