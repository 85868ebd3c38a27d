"""Timing and token metrics of one lane, as pure functions of its recorded timestamps.

All times are seconds from the run's start (`t_start`, taken just before generate is called),
so time to first token includes the prefill.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class LaneMetrics:
    prompt_tokens: int
    generated_tokens: int
    reasoning_tokens: int
    answer_tokens: int
    forced_tokens: int
    ttft_s: float | None  # time to first token
    ttfat_s: float | None  # time to first answer token
    total_s: float | None
    decode_tok_s: float | None  # tokens after the first, per second of decoding
    itl_p50_ms: float | None  # inter-token latency
    itl_p95_ms: float | None
    finish_reason: str | None
    # Where the token counts come from: "exact" (the local engine saw every token), or for a remote
    # endpoint "usage" (its report), "tokenizer" (counted here) or "estimate" (one per streamed chunk).
    count_source: str | None = "exact"

    def to_dict(self) -> dict:
        return asdict(self)


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0–100); None for no values."""
    return _sorted_percentile(sorted(values), q)


def _sorted_percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def lane_metrics(prompt_tokens: int, t_start: float, token_times: list[float], token_kinds: list[str],
                 forced: list[bool] | None = None, first_answer_time: float | None = None,
                 t_end: float | None = None, finish_reason: str | None = None) -> LaneMetrics:
    counts = (sum(1 for k in token_kinds if k == "reasoning"), sum(1 for k in token_kinds if k == "answer"),
              sum(1 for f in (forced or []) if f))
    gaps = sorted(b - a for a, b in zip(token_times, token_times[1:]))
    return _assemble(prompt_tokens, t_start, token_times, len(token_times), counts, gaps, first_answer_time,
                     t_end, finish_reason)


def _assemble(prompt_tokens: int, t_start: float, token_times: list[float], n: int, counts: tuple[int, int, int],
              sorted_gaps: list[float], first_answer_time: float | None, t_end: float | None,
              finish_reason: str | None) -> LaneMetrics:
    """LaneMetrics from the first n token times, the (reasoning, answer, forced) counts and the sorted gaps."""
    decode_s = token_times[n - 1] - token_times[0] if n > 1 else 0.0
    return LaneMetrics(
        prompt_tokens=prompt_tokens,
        generated_tokens=n,
        reasoning_tokens=counts[0],
        answer_tokens=counts[1],
        forced_tokens=counts[2],
        ttft_s=token_times[0] - t_start if n else None,
        ttfat_s=first_answer_time - t_start if first_answer_time is not None else None,
        total_s=(t_end if t_end is not None else (token_times[n - 1] if n else t_start)) - t_start,
        decode_tok_s=(n - 1) / decode_s if decode_s > 0 else None,
        itl_p50_ms=_ms(_sorted_percentile(sorted_gaps, 50)),
        itl_p95_ms=_ms(_sorted_percentile(sorted_gaps, 95)),
        finish_reason=finish_reason,
    )


class RunningMetrics:
    """result_metrics of one lane while it grows, at the cost of its new tokens only.

    The UI asks for a running lane's metrics about ten times a second. Recounting a 3,000-token lane
    each time (three sums, two sorts: 0.7 ms) made the server's late updates cost more than its early
    ones; here each token is counted once and its gap inserted into a kept-sorted list."""

    def __init__(self):
        self._seen = 0
        self._counts = [0, 0, 0]  # reasoning, answer, forced
        self._gaps: list[float] = []  # sorted

    def of(self, result) -> LaneMetrics:
        times, kinds, forced = result.token_times, result.token_kinds, result.forced
        # Another thread may be appending to a running lane: count up to one length read once.
        n = min(len(times), len(kinds))
        for i in range(self._seen, n):
            self._counts[0] += kinds[i] == "reasoning"
            self._counts[1] += kinds[i] == "answer"
            self._counts[2] += i < len(forced) and bool(forced[i])
            if i:
                insort(self._gaps, times[i] - times[i - 1])
        self._seen = n
        m = _assemble(result.prompt_tokens, result.t_start, times, n, tuple(self._counts), self._gaps,
                      result.first_answer_time, result.t_end, result.finish_reason)
        source = getattr(result, "count_source", "exact")
        return m if source == "exact" else replace(m, count_source=source)


def result_metrics(result) -> LaneMetrics:
    """Metrics of an engine LaneResult (or anything with the same fields)."""
    return RunningMetrics().of(result)


def _ms(x: float | None) -> float | None:
    return None if x is None else x * 1000


def format_metrics(m: LaneMetrics) -> str:
    """One line for a lane's footer."""
    def s(x, unit="s", nd=2):
        return "–" if x is None else f"{x:.{nd}f} {unit}"

    approx = "≈" if m.count_source == "estimate" else ""  # counted one per streamed chunk, not in tokens
    return (f"TTFT {s(m.ttft_s)} · first answer token {s(m.ttfat_s)} · reasoning {approx}{m.reasoning_tokens} / "
            f"answer {approx}{m.answer_tokens} tokens{' (estimated)' if approx else ''} · "
            f"{s(m.decode_tok_s, 'tok/s', 1)} · "
            f"ITL p50 {s(m.itl_p50_ms, 'ms', 0)} p95 {s(m.itl_p95_ms, 'ms', 0)} · {m.finish_reason or 'running'}")


def metrics_line(metrics: dict | None) -> str | None:
    """A run's stored metrics as format_metrics' line (plain text, not escaped); None when there are none
    or they cannot be read: an imported session may lack fields (an older version's, another tool's) or
    carry odd values, and opening its cell must still work."""
    if not metrics:
        return None
    try:
        return format_metrics(LaneMetrics(**{k: metrics.get(k) for k in LaneMetrics.__dataclass_fields__}))
    except (TypeError, ValueError):
        return None
