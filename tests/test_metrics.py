"""Metrics are pure functions of timestamps: checked on hand-made timelines."""

from hypothesis import given
from hypothesis import strategies as st

from playground.metrics import format_metrics, lane_metrics, percentile


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
