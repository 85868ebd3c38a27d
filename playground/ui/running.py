"""Running the open cell: Run (queued on the model), both lanes streamed into the open-cell view, Stop,
and what a run changes besides its text: its row, versions, grades and charts.

The stream carries the five lane texts and nothing else: each skipped output costs gradio 0.2–0.8 ms
an update (a follow-up's also carries both lanes' earlier turns and its box, written once at its
start). Everything else comes from `settle`, which the page's timer calls every PLOT_INTERVAL_S
while a run of the tab waits or runs (rows with live token counts, a live chart with a bounded number
of points), and which runs once more right after a run ends (the row, grades, versions, final charts).
A run keeps going when its cell is no longer open; only its row shows it then.
"""

from __future__ import annotations

import itertools
import time
from contextlib import closing

import gradio as gr

from playground.evaluation.charts import LaneSeries, tokens_over_time
from playground.lanes import LANES

from . import rows
from .cells import EMPTY, form_lanes, lane_outputs
from .common import GPU_POOL, listen, owner_of, page, run_key
from .detail import CHARTS, chart_values, history_values, version_values
from .views import LaneShown

PLOT_INTERVAL_S = 3.0
LIVE_CHART_POINTS = 150  # per line of the live chart: its size stays the same however long the run
HEARTBEAT_S = 1.0  # a run whose cell is not open still yields this often, so a closed tab stops it
# The page gets a run's texts at most this often: every update costs the browser gradio's bookkeeping
# for each component on the page (~25 ms on a busy 2-core box), and four a second still read as live.
PAGE_INTERVAL_S = 0.25
UNCHANGED = (gr.skip(),) * 5  # lane_outputs' five texts, as they were


def wire_runs(nb, pg, store, secret: bytes, gates, ui, sid, insights_refresh, insights_outputs) -> gr.Timer:
    d = ui.detail
    timer = gr.Timer(PLOT_INTERVAL_S, active=False)

    def ask(cell_id, request: gr.Request):
        """Unqueued, so it lands at the click: a Stop pressed while the run waits in the queue cancels it."""
        if not cell_id:
            return gr.skip(), gr.skip()
        gate = gates.of(request)
        pg.mark_waiting(run_key(request, cell_id))
        gate.asked(cell_id)
        return gr.Timer(active=True), rows.patch(gate.next_seq(), [{"id": cell_id, "lanes": rows.queued_lanes()}])

    # Explicit parameters: gradio injects gr.Request only into a named positional parameter. Not named `run`
    # (nor `stop` below): a private handler still takes its name, and would push the API's /run to /run_1.
    def run_open_cell(cell_id, prompt, system, s_max, s_temp, s_top_p, s_top_k, s_seed, r_max, r_temp, r_top_p, r_top_k,
            r_seed, r_budget, request: gr.Request):
        gate, key = gates.of(request), run_key(request, cell_id)
        try:
            owner = owner_of(request, secret)
            if pg.cancelled_while_waiting(key):
                gr.Info("Stopped before it started: the run was still waiting for its turn, and nothing was saved.")
                yield UNCHANGED  # a generator must yield once, or gradio blanks its outputs
                return
            lanes = form_lanes((s_max, s_temp, s_top_p, s_top_k, s_seed), (r_max, r_temp, r_top_p, r_top_k, r_seed),
                               r_budget)
            yield from stream_lanes(gate, cell_id, nb.run_cell(owner, cell_id, key, prompt, system, lanes))
        finally:
            gate.ended(cell_id)

    def settle(request: gr.Request):
        yield from settle_tab(gates.of(request), store, owner_of(request, secret), timer, ui)

    follow_open_cell = _follower(nb, pg, store, secret, gates, d)
    settled = [timer, ui.cells, *d.execution, d.charts, *d.plots]
    # "multiple" down the chain: with gradio's default ("once") the page drops a chained step while the same
    # step of an earlier click is pending, so a cell's Run pressed while another cell runs would never run.
    chained = dict(api_visibility="private", trigger_mode="multiple")

    def wire(button, handler, inputs, outputs) -> None:
        """A click that asks for a run (at once), streams it into the open cell (in the model's queue), then
        settles the cell's row and view and refreshes the session's insights."""
        listen(button.click, ask, d.open_id, [timer, ui.cells], queue=False, show_progress="hidden").then(
            page(handler), inputs, outputs, concurrency_id=GPU_POOL,
            # "full" on the two status lines only: a waiting visitor sees their place in the queue there.
            show_progress="full", show_progress_on=[d.s_status, d.r_status], **chained).then(
            page(settle), None, settled, concurrency_limit=None, **chained).then(
            page(insights_refresh), sid, insights_outputs, concurrency_limit=None, **chained)

    wire(d.run, run_open_cell, [d.open_id, d.prompt, d.system, *d.settings], d.lanes)
    wire(d.send, follow_open_cell, [d.open_id, d.follow, d.keep, d.version, *d.settings],
         [*d.lanes, *d.histories, d.follow])
    listen(timer.tick, settle, None, settled, show_progress="hidden")

    def stop_open_cell(cell_id, request: gr.Request):
        if cell_id:
            pg.stop(run_key(request, cell_id))

    # Unqueued, like `ask`: a Stop lands at the click, even while the queue is slow to look at new events,
    # so a run still waiting for its turn is cancelled before that turn comes.
    listen(d.stop.click, stop_open_cell, d.open_id, None, queue=False)
    return timer


def _follower(nb, pg, store, secret: bytes, gates, d):
    """The page's handler of Send: the next turn of the shown run (Notebook.follow_up)."""
    # Explicit parameters, as run_open_cell's: gradio injects gr.Request only into a named positional one.
    def follow_open_cell(cell_id, prompt, keep, number, s_max, s_temp, s_top_p, s_top_k, s_seed, r_max, r_temp,
                         r_top_p, r_top_k, r_seed, r_budget, request: gr.Request):
        """The next turn of the shown run: both lanes' earlier turns (and the new prompt) first, then the
        lanes streamed as Run streams them."""
        gate, key = gates.of(request), run_key(request, cell_id)
        try:
            owner = owner_of(request, secret)
            if pg.cancelled_while_waiting(key):
                gr.Info("Stopped before it started: the follow-up was still waiting for its turn, and nothing was "
                        "saved.")
                yield UNCHANGED + (gr.skip(),) * 3
                return
            lanes = form_lanes((s_max, s_temp, s_top_p, s_top_k, s_seed), (r_max, r_temp, r_top_p, r_top_k, r_seed),
                               r_budget)
            cell = store.get_cell_full(owner, cell_id)
            parent = number if any(e.number == number for e in cell.executions) else None
            with closing(nb.follow_up(owner, cell_id, key, prompt, lanes, keep_reasoning=bool(keep),
                                      parent=parent)) as stream:
                first = next(stream, None)  # the checks (never ran, context too long) raise here, before any write
                earlier = history_values(d, cell, cell.conversation(parent), prompt)
                with gate.writing(cell_id, wait=True) as ok:
                    if ok:
                        yield UNCHANGED + (earlier[d.s_history], earlier[d.r_history], "")
                turn = itertools.chain([first] if first is not None else [], stream)
                yield from (texts + (gr.skip(),) * 3 for texts in stream_lanes(gate, cell_id, turn))
        finally:
            gate.ended(cell_id)

    return follow_open_cell


def stream_lanes(gate, cell_id: str, stream):
    """The notebook's (views, run) pairs as the five lane texts, written only while the cell is open, at
    most every PAGE_INTERVAL_S; at least one update (a generator that yields none makes gradio blank
    its outputs: another cell's, maybe)."""
    beat = sent = 0.0
    yielded = False
    views = None
    for i, (views, run) in enumerate(stream):
        if i == 0:
            gate.started(cell_id, run)
        now = time.monotonic()
        if now - sent >= PAGE_INTERVAL_S:
            with gate.writing(cell_id) as ok:
                if ok:
                    sent = beat = now
                    yielded = True
                    yield _texts(views)
                    continue
        if now - beat >= HEARTBEAT_S:
            beat, yielded = now, True
            yield UNCHANGED
    if views is not None:  # the end, which the interval may have held back
        with gate.writing(cell_id, wait=True) as ok:
            if ok:
                yielded = True
                yield _texts(views)
    if not yielded:
        yield UNCHANGED


def _texts(views) -> tuple:
    shown = {lane: LaneShown(v.status, v.reasoning, v.answer, v.metrics) for lane, v in views.items()}
    return lane_outputs({lane: shown.get(lane, EMPTY) for lane in LANES})


def settle_tab(gate, store, owner: str, timer, ui):
    """Rows of the tab's runs (ended: as stored; live: token counts so far) and the open cell's view:
    final versions, grades and charts when its run ended, a live chart while it runs."""
    d = ui.detail
    ended, live = gate.take_finished(), gate.live_runs()
    patches, open_cell = [], None
    for cell_id in ended:
        try:
            cell = store.get_cell_full(owner, cell_id)
        except Exception:  # deleted meanwhile: its row went with it
            continue
        patches.append(rows.row_of(cell))
        if cell_id == gate.cell_id:
            open_cell = cell
    for cell_id, run in live.items():
        patches.append({"id": cell_id, "lanes": [rows.live_lane(run.results[lane]) if lane in run.results else None
                                                 for lane in LANES]})
    out = {timer: gr.Timer(active=gate.following()),
           ui.cells: rows.patch(gate.next_seq(), patches) if patches else gr.skip()}
    view_id = gate.cell_id
    if open_cell is not None:  # its run ended: its charts too (and the panel opens: the visitor ran it)
        gate.panels.add(CHARTS)
        view = {**version_values(d, open_cell, None), **chart_values(d, open_cell), d.charts: gr.Accordion(open=True)}
    elif view_id in live and CHARTS in gate.panels:
        view = live_view(d, view_id, live[view_id], fold=gate.fold_once(view_id))
    else:
        view = {}
    with gate.writing(view_id, wait=True) as ok:
        yield {**out, **(view if ok else {})}


def live_view(d, cell_id: str, run, fold) -> dict:
    """While a run streams: its tokens-over-time chart, a bounded number of points per line, and its
    reasoning trace folded (once: a visitor may open it again) when the answer has started."""
    series = [LaneSeries.from_result(r) for r in run.results.values()]
    out = {d.plots[0]: tokens_over_time(series, uirevision=cell_id, max_points=LIVE_CHART_POINTS)}
    reasoning = run.results.get("reasoning")
    if reasoning is not None and reasoning.answer.strip() and fold():
        out[d.r_acc] = gr.Accordion(open=False)
    return out
