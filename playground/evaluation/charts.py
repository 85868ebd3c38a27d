"""Charts of what reasoning cost, as pure functions of recorded data returning plotly figures.

No gradio, no torch, no I/O: the same input always gives the same figure, so the UI can re-render
freely and tests can assert on `fig.data`. Every chart copes with empty or partial input (no lanes,
a stopped lane with 0 tokens, missing metrics) by drawing what it has, or a "no tokens yet" note.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from playground.lanes import CHAR_KINDS, FORCED_CHARS, LANES

_CHAR_FORCED = {c: f for f, c in FORCED_CHARS.items()}

# One colour per lane everywhere, so a lane is recognisable across charts; thinking is the same colour
# drawn dotted/hatched rather than a new colour, which would read as a third lane.
STANDARD_COLOR = "#1f77b4"
REASONING_COLOR = "#d62728"
OTHER_COLOR = "#7f7f7f"
LANE_COLORS = {"standard": STANDARD_COLOR, "reasoning": REASONING_COLOR}

HEIGHT = 300
SUMMARY_HEIGHT = 460  # four panels need more room than one chart to stay legible
MARGIN = dict(l=55, r=10, t=40, b=45)
MARKER_LIMIT = 200  # markers show single-token segments on short runs; long runs stay plain lines
# Points drawn per line: a chart a screen wide shows no more, and a 16,000-token lane would otherwise
# send (and make the browser draw) 16,000 points per line. The numbers still count every token.
MAX_DRAWN_POINTS = 1_000


# Objects with the LaneMetrics fields (playground.evaluation.metrics.LaneMetrics or a stored equivalent); read
# with getattr so partial records and None work.
LaneMetricsLike = Any


def lane_color(lane: str) -> str:
    return LANE_COLORS.get(lane, OTHER_COLOR)


@dataclass(frozen=True)
class LaneSeries:
    lane: str  # "standard" | "reasoning"
    times: tuple[float, ...]  # seconds since the run started, one per generated token
    kinds: tuple[str, ...]  # "reasoning" | "answer", one per token
    forced: tuple[bool, ...] = ()

    @classmethod
    def from_result(cls, result) -> LaneSeries:
        """From an engine LaneResult (absolute perf_counter times): times become relative to t_start."""
        # A running lane is appended to by the engine thread: take one length and slice every list to it
        # so times and kinds stay aligned even if a token lands mid-copy.
        n = min(len(result.token_times), len(result.token_kinds))
        t0 = result.t_start
        return cls(result.lane, tuple(t - t0 for t in result.token_times[:n]), tuple(result.token_kinds[:n]),
                   tuple(bool(f) for f in result.forced[:n]))

    @classmethod
    def from_stored(cls, lane: str, token_times: list[float], token_kinds: str, forced: str = "") -> LaneSeries:
        """From a stored run: relative times, kinds as "r"/"a" per token, forced as "0"/"1" per token.
        Unknown characters raise ValueError: silently guessing would hide a corrupt store."""
        try:
            kinds = tuple(CHAR_KINDS[c] for c in token_kinds)
            flags = tuple(_CHAR_FORCED[c] for c in forced)
        except KeyError as e:
            raise ValueError(f"bad stored token code {e.args[0]!r} in lane {lane!r}") from None
        return cls(lane, tuple(float(t) for t in token_times), kinds, flags)

    def kind(self, i: int) -> str:
        # Kinds may lag times by a token in hand-built series; an unclassified token counts as answer.
        return self.kinds[i] if i < len(self.kinds) else "answer"

    def first_answer_time(self) -> float | None:
        return next((t for i, t in enumerate(self.times) if self.kind(i) == "answer"), None)


@dataclass(frozen=True)
class CellSummary:
    """One executed prompt cell, for the session summary."""

    label: str  # e.g. "Cell 3"
    standard: LaneMetricsLike | None
    reasoning: LaneMetricsLike | None


# plotly_white's look, only the parts these 2-D charts use: applying the full template deep-copies it
# (about 0.1 s a figure on a small CPU) and adds 7 KB to every figure sent to a page.
_AXIS = dict(gridcolor="#EBF0F8", linecolor="#EBF0F8", zerolinecolor="#EBF0F8", zerolinewidth=2, ticks="",
             automargin=True, title=dict(standoff=15))
THEME = go.layout.Template(layout=dict(
    paper_bgcolor="white", plot_bgcolor="white", font=dict(color="#2a3f5f"), hoverlabel=dict(align="left"),
    colorway=["#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3"], xaxis=_AXIS, yaxis=_AXIS,
    annotationdefaults=dict(arrowcolor="#2a3f5f", arrowhead=0, arrowwidth=1), title=dict(x=0.05)))


def _style(fig: go.Figure, title: str, uirevision: Any, height: int = HEIGHT) -> go.Figure:
    # uirevision: while it stays the same, plotly keeps the user's zoom/legend toggles across re-renders
    # (the UI re-renders on every streamed token).
    fig.update_layout(title=dict(text=title, font_size=14), template=THEME, height=height,
                      margin=MARGIN, uirevision=uirevision, hovermode="closest",
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))
    return fig


def _empty(fig: go.Figure, message: str) -> go.Figure:
    fig.add_annotation(text=message, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                       font=dict(size=14, color=OTHER_COLOR))
    return fig


def decimate(xs: Sequence, ys: Sequence, limit: int = MAX_DRAWN_POINTS) -> tuple[list, list]:
    """At most about `limit` points that draw the same line: each bucket of neighbouring points keeps its
    lowest and highest (in their order), so spikes and both ends survive; a None (a break) is kept."""
    if len(xs) <= limit:
        return list(xs), list(ys)
    runs, start = [], 0
    for i, x in enumerate(xs):
        if x is None:
            runs.append((start, i))
            start = i + 1
    runs.append((start, len(xs)))
    total = sum(b - a for a, b in runs) or 1
    out_x: list = []
    out_y: list = []
    for a, b in runs:
        if a > 0:  # the run after a break (even an empty one: every break stays, however many there are)
            out_x.append(None)
            out_y.append(None)
        keep = _extremes(ys, a, b, max(2, limit * (b - a) // total))
        out_x += [xs[i] for i in keep]
        out_y += [ys[i] for i in keep]
    return out_x, out_y


def _extremes(ys: Sequence, a: int, b: int, k: int) -> list[int]:
    """Indices in [a, b): the first, the last, and each of k/2 buckets' lowest and highest."""
    if b - a <= k:
        return list(range(a, b))
    buckets = max(1, k // 2)
    size = -(-(b - a) // buckets)
    keep = {a, b - 1}
    for lo in range(a, b, size):
        hi = min(b, lo + size)
        keep.add(min(range(lo, hi), key=ys.__getitem__))
        keep.add(max(range(lo, hi), key=ys.__getitem__))
    return sorted(keep)


def _segment(s: LaneSeries, kind: str) -> tuple[list, list]:
    """Cumulative-count points of the tokens of one kind; None breaks the line between separate runs."""
    xs: list = []
    ys: list = []
    for i, t in enumerate(s.times):
        if s.kind(i) != kind:
            continue
        if xs and s.kind(i - 1) != kind:
            xs.append(None)
            ys.append(None)
        xs.append(t)
        ys.append(i + 1)
    return xs, ys


def tokens_over_time(lanes: Sequence[LaneSeries], *, uirevision: Any = "tokens_over_time",
                     max_points: int = MAX_DRAWN_POINTS) -> go.Figure:
    """Cumulative tokens vs time, one line per lane; thinking drawn dotted, a dashed marker at the first
    answer token. Traces carry meta={"lane", "role"} (role "tokens" or "first_answer"). Each line is
    drawn with at most about max_points points (decimate)."""
    fig = go.Figure()
    for s in lanes:
        n = len(s.times)
        if n == 0:
            continue
        color = lane_color(s.lane)
        mode = "lines+markers" if n <= MARKER_LIMIT else "lines"
        # Only split when the lane actually thought, so a plain lane keeps its plain name.
        parts = ([("reasoning", "thinking", "dot"), ("answer", "answer", "solid")]
                 if "reasoning" in s.kinds[:n] else [("answer", None, "solid")])
        for kind, label, dash in parts:
            xs, ys = decimate(*_segment(s, kind), max_points)
            if not xs:
                continue
            fig.add_scatter(x=xs, y=ys, mode=mode, name=f"{s.lane} ({label})" if label else s.lane,
                            legendgroup=s.lane, meta={"lane": s.lane, "role": "tokens", "kind": kind},
                            line=dict(color=color, dash=dash, width=2.5 if kind == "reasoning" else 2),
                            marker=dict(size=3), hovertemplate="%{x:.2f} s · %{y} tokens<extra></extra>")
        first = s.first_answer_time()
        if first is not None:
            fig.add_scatter(x=[first, first], y=[0, n], mode="lines", name=f"{s.lane} first answer",
                            legendgroup=s.lane, showlegend=False, meta={"lane": s.lane, "role": "first_answer"},
                            line=dict(color=color, dash="dash", width=1),
                            hovertemplate=f"{s.lane}: first answer token at %{{x:.2f}} s<extra></extra>")
    if not fig.data:
        _empty(fig, "no tokens yet")
    fig.update_xaxes(title_text="time since start (s)", rangemode="tozero")
    fig.update_yaxes(title_text="tokens generated", rangemode="tozero")
    return _style(fig, "Tokens over time", uirevision)


def inter_token_latency(lanes: Sequence[LaneSeries], *, uirevision: Any = "inter_token_latency",
                        max_points: int = MAX_DRAWN_POINTS) -> go.Figure:
    """Gap before each token (ms) vs that token's number (2..n), one trace per lane with ≥2 tokens, drawn
    with at most about max_points points (decimate keeps the spikes)."""
    fig = go.Figure()
    for s in lanes:
        if len(s.times) < 2:
            continue
        gaps = [(b - a) * 1000 for a, b in zip(s.times, s.times[1:])]
        xs, ys = decimate(range(2, len(s.times) + 1), gaps, max_points)
        fig.add_scatter(x=xs, y=ys, mode="lines", name=s.lane,
                        meta={"lane": s.lane}, line=dict(color=lane_color(s.lane), width=1),
                        hovertemplate="token %{x}: %{y:.1f} ms<extra></extra>")
    if not fig.data:
        _empty(fig, "no tokens yet" if not any(s.times for s in lanes) else "need two tokens for a gap")
    fig.update_xaxes(title_text="token #")
    fig.update_yaxes(title_text="inter-token latency (ms)", rangemode="tozero")
    return _style(fig, "Inter-token latency", uirevision)


def token_split(lanes: Sequence[LaneSeries], *, uirevision: Any = "token_split") -> go.Figure:
    """Stacked bars per lane: thinking (hatched) under answer tokens, in the lane's colour."""
    fig = go.Figure()
    names = [s.lane for s in lanes]
    colors = [lane_color(s.lane) for s in lanes]
    counts = {k: [sum(1 for i in range(len(s.times)) if s.kind(i) == k) for s in lanes]
              for k in ("reasoning", "answer")}
    fig.add_bar(x=names, y=counts["reasoning"], name="thinking", meta={"kind": "reasoning"},
                marker=dict(color=colors, opacity=0.55, pattern=dict(shape="/")))
    fig.add_bar(x=names, y=counts["answer"], name="answer", meta={"kind": "answer"}, marker=dict(color=colors))
    if not any(counts["reasoning"] + counts["answer"]):  # also no lanes at all
        _empty(fig, "no tokens yet")
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title_text="lane", type="category")
    fig.update_yaxes(title_text="tokens", rangemode="tozero")
    return _style(fig, "Reasoning vs answer tokens", uirevision)


def _get(m: LaneMetricsLike | None, name: str):
    return getattr(m, name, None)  # None for a missing lane (None has no such attribute) or field


def _cell_values(cell: CellSummary) -> dict:
    """Per-cell aggregates; None wherever a lane or a metric is missing (plotted as a gap)."""
    std_n, rsn_n = _get(cell.standard, "generated_tokens"), _get(cell.reasoning, "generated_tokens")
    std_t, rsn_t = _get(cell.standard, "total_s"), _get(cell.reasoning, "total_s")
    return {
        "extra_tokens": rsn_n - std_n if std_n is not None and rsn_n is not None else None,
        # A standard lane with zero duration (stopped at once) has no meaningful multiple.
        "latency_multiple": rsn_t / std_t if rsn_t is not None and std_t else None,
        "tok_s": {"standard": _get(cell.standard, "decode_tok_s"), "reasoning": _get(cell.reasoning, "decode_tok_s")},
        "ttfat_s": {"standard": _get(cell.standard, "ttfat_s"), "reasoning": _get(cell.reasoning, "ttfat_s")},
        "reasoning_tokens": _get(cell.reasoning, "reasoning_tokens"),
    }


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def summary_numbers(cells: Sequence[CellSummary]) -> dict:
    """The session_summary aggregates as numbers (None where no cell had the data)."""
    rows = [_cell_values(c) for c in cells]
    extra = [r["extra_tokens"] for r in rows if r["extra_tokens"] is not None]
    mult = [r["latency_multiple"] for r in rows if r["latency_multiple"] is not None]
    return {
        "cells": len(rows),
        "total_extra_tokens": sum(extra),
        "mean_extra_tokens": _mean(extra),
        "median_latency_multiple": statistics.median(mult) if mult else None,
        "max_latency_multiple": max(mult) if mult else None,
        "total_reasoning_tokens": sum(r["reasoning_tokens"] or 0 for r in rows),
        "mean_tok_s": {lane: _mean([r["tok_s"][lane] for r in rows]) for lane in LANES},
        "mean_ttfat_s": {lane: _mean([r["ttfat_s"][lane] for r in rows]) for lane in LANES},
    }


def session_summary(cells: Sequence[CellSummary], *, uirevision: Any = "session_summary") -> go.Figure:
    """2×2 across cells: extra tokens, latency multiple, decode tokens/s per lane, first-answer time per lane.
    Traces carry meta={"panel", "lane"}; panels are extra_tokens, latency_multiple, tok_s, ttfat_s."""
    fig = make_subplots(rows=2, cols=2, vertical_spacing=0.2, horizontal_spacing=0.12, subplot_titles=(
        "extra tokens (reasoning − standard)", "latency multiple (reasoning ÷ standard)",
        "decode speed", "time to first answer token"))
    if not cells:
        return _style(_empty(fig, "no cells run yet"), "Session summary", uirevision, SUMMARY_HEIGHT)
    labels = [c.label for c in cells]
    rows = [_cell_values(c) for c in cells]
    fig.add_bar(x=labels, y=[r["extra_tokens"] for r in rows], name="extra tokens", showlegend=False,
                meta={"panel": "extra_tokens", "lane": "reasoning"}, marker_color=REASONING_COLOR, row=1, col=1)
    fig.add_bar(x=labels, y=[r["latency_multiple"] for r in rows], name="latency multiple", showlegend=False,
                meta={"panel": "latency_multiple", "lane": "reasoning"}, marker_color=REASONING_COLOR, row=1, col=2)
    # 1× is "reasoning cost nothing": the reference that makes the multiple readable.
    fig.add_hline(y=1, line=dict(color=OTHER_COLOR, dash="dot", width=1), row=1, col=2)
    for col, panel in ((1, "tok_s"), (2, "ttfat_s")):
        for lane in LANES:
            fig.add_bar(x=labels, y=[r[panel][lane] for r in rows], name=lane, legendgroup=lane,
                        showlegend=col == 1, meta={"panel": panel, "lane": lane},
                        marker_color=lane_color(lane), row=2, col=col)
    fig.update_layout(barmode="group")
    # Category axes: labels like "1" must not be read as numbers and re-ordered.
    fig.update_xaxes(type="category")
    for (row, col), title in {(1, 1): "tokens", (1, 2): "× standard", (2, 1): "tok/s", (2, 2): "s"}.items():
        fig.update_yaxes(title_text=title, rangemode="tozero", row=row, col=col)
    return _style(fig, "Session summary", uirevision, SUMMARY_HEIGHT)


# --- "did reasoning pay?" ------------------------------------------------------------------------
# Inputs are playground.evaluation.verdict objects (CellVerdict, LaneTotals, BudgetPoint), read by attribute.
def verdict_scatter(cells: Sequence[Any], *, uirevision: Any = "verdict_scatter") -> go.Figure:
    """One point per cell graded in both lanes: extra reasoning tokens (x) vs change in correctness
    (y: +1 reasoning fixed it, 0 same, −1 reasoning broke it). Jitter-free: points on a level share
    y, and the hover names the cell. Trace meta={"role": "cells"}."""
    fig = go.Figure()
    rows = [c for c in cells if c.correctness_change is not None and c.extra_tokens is not None]
    if rows:
        colors = {1: "#2ca02c", 0: OTHER_COLOR, -1: REASONING_COLOR}
        fig.add_scatter(x=[c.extra_tokens for c in rows], y=[c.correctness_change for c in rows], mode="markers",
                        text=[c.label for c in rows], meta={"role": "cells"}, name="cells",
                        marker=dict(size=10, color=[colors[c.correctness_change] for c in rows], opacity=0.8),
                        hovertemplate="%{text}: %{x:+,} tokens, change %{y:+d}<extra></extra>")
    else:
        _empty(fig, "no cell graded in both lanes yet")
    fig.update_xaxes(title_text="extra reasoning tokens (reasoning − standard)", zeroline=True)
    fig.update_yaxes(title_text="change in correctness", tickvals=[-1, 0, 1],
                     ticktext=["broke it", "same", "fixed it"], range=[-1.5, 1.5])
    return _style(fig, "Per cell: tokens spent vs correctness gained", uirevision)


def _interval(x: Any) -> tuple[float, float]:
    return x.interval or (0.0, 0.0)


def _error_bars(items: Sequence[Any]) -> dict:
    """Asymmetric error bars from each item's .accuracy and .interval (Wilson intervals are not
    symmetric around the accuracy); an item with nothing graded gets none."""
    up, down = [], []
    for x in items:
        if x.accuracy is None or x.interval is None:
            up.append(None)
            down.append(None)
        else:
            up.append(x.interval[1] - x.accuracy)
            down.append(x.accuracy - x.interval[0])
    return dict(type="data", symmetric=False, array=up, arrayminus=down, thickness=1.5, width=6)


def accuracy_bars(lanes: dict[str, Any], *, uirevision: Any = "accuracy_bars") -> go.Figure:
    """Accuracy per lane (0–1) with passed/graded on each bar and its 95% Wilson interval as the
    error bar. Trace meta={"lane"}."""
    fig = go.Figure()
    for lane in LANES:
        t = lanes.get(lane)
        if t is None or not t.graded:
            continue
        lo, hi = _interval(t)
        fig.add_bar(x=[lane], y=[t.accuracy], name=lane, meta={"lane": lane}, marker_color=lane_color(lane),
                    text=[f"{t.passed}/{t.graded}"], textposition="auto", error_y=_error_bars([t]),
                    hovertemplate=f"{lane}: %{{y:.0%}} ({t.passed}/{t.graded}), 95% interval "
                                  f"{lo:.0%}–{hi:.0%}<extra></extra>")
    if not fig.data:
        _empty(fig, "no graded cells yet")
    fig.update_xaxes(title_text="lane", type="category")
    fig.update_yaxes(title_text="accuracy", range=[0, 1], tickformat=".0%")
    return _style(fig, "Accuracy per lane", uirevision)


def budget_curve(points: Sequence[Any], standard_accuracy: float | None = None, *,
                 uirevision: Any = "budget_curve") -> go.Figure:
    """Test-time scaling: reasoning-lane accuracy (left axis) and mean tokens (right axis) against the
    thinking budget, unlimited last, each accuracy with its 95% Wilson interval as an error bar; the
    standard lane's accuracy as a dotted reference. Traces carry
    meta={"role": "accuracy" | "tokens" | "standard"}."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    labels = [p.label for p in points]
    if points:
        fig.add_scatter(x=labels, y=[p.accuracy for p in points], mode="lines+markers", name="accuracy",
                        meta={"role": "accuracy"}, line=dict(color=REASONING_COLOR, width=2.5),
                        error_y=_error_bars(points),
                        hovertemplate="budget %{x}: %{y:.0%}<extra></extra>", secondary_y=False)
        fig.add_scatter(x=labels, y=[p.mean_tokens for p in points], mode="lines+markers", name="mean tokens",
                        meta={"role": "tokens"}, line=dict(color=OTHER_COLOR, dash="dot"),
                        hovertemplate="budget %{x}: %{y:,.0f} tokens<extra></extra>", secondary_y=True)
        if standard_accuracy is not None:
            fig.add_scatter(x=labels, y=[standard_accuracy] * len(labels), mode="lines", name="standard lane",
                            meta={"role": "standard"}, line=dict(color=STANDARD_COLOR, dash="dash", width=1),
                            secondary_y=False)
    else:
        _empty(fig, "no budget sweep yet")
    fig.update_xaxes(title_text="thinking budget (tokens)", type="category")
    fig.update_yaxes(title_text="accuracy", range=[0, 1], tickformat=".0%", secondary_y=False)
    fig.update_yaxes(title_text="mean tokens", rangemode="tozero", secondary_y=True)
    return _style(fig, "Accuracy and tokens vs thinking budget", uirevision)
