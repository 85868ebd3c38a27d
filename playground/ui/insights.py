"""What a session's runs add up to: the summary line (and chart), and the verdict, "did reasoning pay?".

Fixed components, refreshed from the stored numbers when a session opens and after runs end; never
a re-render of cells. Their charts (plotly figures are the costly part) are drawn only while their
panel is open: opening it draws them, closing it frees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import gradio as gr

from playground.evaluation.charts import (
    CellSummary,
    accuracy_bars,
    budget_curve,
    session_summary,
    summary_numbers,
    verdict_scatter,
)
from playground.evaluation.verdict import session_verdict
from playground.sharing.markdown import VERDICT_COLUMNS, verdict_rows

from .common import listen, owner_of
from .gate import Gates

SUMMARY, VERDICT = "summary", "verdict"  # the chart panels a tab may have open (Gate.panels)


@dataclass
class Insights:
    summary_text: gr.Markdown
    summary_plot: gr.Plot
    verdict_text: gr.Markdown
    verdict_plots: list

    @property
    def outputs(self) -> list:
        return [self.summary_text, self.summary_plot, self.verdict_text, *self.verdict_plots]


def summary_cells(session) -> list[CellSummary]:
    """Each prompt cell's latest execution, as the session summary counts it."""
    cells = []
    for i, cell in enumerate(session.cells, 1):
        ex = cell.latest
        if cell.kind != "prompt" or ex is None:
            continue
        # Read by attribute (charts.LaneMetricsLike): an imported run may carry only some of the fields.
        lanes = {lane: SimpleNamespace(**run.metrics) if run.metrics else None for lane, run in ex.runs.items()}
        cells.append(CellSummary(f"Cell {i}", lanes.get("standard"), lanes.get("reasoning")))
    return cells


def session_turns(session) -> int:
    """The turns of every run prompt cell's shown conversation (its latest run's): a cell never followed
    up counts one."""
    return sum(c.latest.turn for c in session.cells if c.kind == "prompt" and c.latest is not None)


def counted(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def summary_text(cells: list[CellSummary], turns: int = 0) -> str:
    """The summary line; `turns` (session_turns) shows beside the cells when follow-ups add to them."""
    if not cells:
        return "Run a cell to see what reasoning costs."
    nums = summary_numbers(cells)
    mult = nums.get("median_latency_multiple")
    head = counted(nums["cells"], "cell") + (f" · {turns} turns" if turns > nums["cells"] else "") + " run"
    if mult is None:
        return f"{head} · extra tokens {nums['total_extra_tokens']:+,}"
    return (f"{head} · reasoning lane spent **{nums['total_extra_tokens']:+,}** extra tokens "
            f"in all · median latency multiple **{mult:.2f}×**")


def verdict_md(v) -> str:
    """The headline and the table share pages have (accuracy with its interval, tokens and seconds per correct)."""
    table = "\n".join("| " + " | ".join(r) + " |" for r in verdict_rows(v))
    return (f"{v.headline()}\n\n| " + " | ".join(VERDICT_COLUMNS) + " |\n|" + "---|" * len(VERDICT_COLUMNS)
            + f"\n{table}")


def verdict_figures(v) -> tuple:
    return (verdict_scatter(v.cells), accuracy_bars(v.lanes),
            budget_curve(v.budget_curve, v.lanes["standard"].accuracy))


def insights_values(ins: Insights, session, panels: set) -> dict:
    """Every insight of the session; a panel's charts only when it is open (else left as they are)."""
    cells = summary_cells(session)
    v = session_verdict(session)
    out = {ins.summary_text: summary_text(cells, session_turns(session)), ins.verdict_text: verdict_md(v)}
    if SUMMARY in panels:
        out[ins.summary_plot] = session_summary(cells)
    if VERDICT in panels:
        out.update(zip(ins.verdict_plots, verdict_figures(v), strict=True))
    return out


def insights_panel(store, secret: bytes, gates: Gates, sid: gr.State) -> Insights:
    """The summary line, then two panels of charts (closed: nothing drawn until opened)."""
    text = gr.Markdown(summary_text([]), elem_id="summary-text")
    with gr.Accordion("Session summary: what did reasoning cost?", open=False, elem_id="summary") as summary_acc:
        summary_plot = gr.Plot(elem_id="summary-plot")
    with gr.Accordion("Did reasoning pay?", open=False, elem_id="verdict") as verdict_acc:
        verdict_text = gr.Markdown(elem_id="verdict-text")
        with gr.Row():
            plots = [gr.Plot(elem_id=f"verdict-{name}") for name in ("scatter", "accuracy", "budget")]
    ins = Insights(text, summary_plot, verdict_text, plots)
    _wire_panel(store, secret, gates, sid, ins, SUMMARY, summary_acc, [summary_plot])
    _wire_panel(store, secret, gates, sid, ins, VERDICT, verdict_acc, plots)
    return ins


def _wire_panel(store, secret, gates, sid, ins: Insights, name: str, acc: gr.Accordion, plots: list) -> None:
    def expand(session_id, request: gr.Request):
        gates.of(request).panels.add(name)
        if not session_id:
            return {ins.summary_text: gr.skip()}
        session = store.get_session(owner_of(request, secret), session_id)
        return insights_values(ins, session, {name})

    def collapse(request: gr.Request):
        gates.of(request).panels.discard(name)
        return {p: None for p in plots}

    listen(acc.expand, expand, sid, ins.outputs)
    listen(acc.collapse, collapse, None, plots)


def refresher(store, secret: bytes, gates: Gates, ins: Insights):
    """The handler that refreshes every insight of the open session (chained after what changes them)."""
    def refresh(session_id, request: gr.Request):
        if not session_id:
            return {ins.summary_text: gr.skip()}
        session = store.get_session(owner_of(request, secret), session_id)
        return insights_values(ins, session, set(gates.of(request).panels))
    return refresh
