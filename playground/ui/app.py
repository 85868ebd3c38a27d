"""The Gradio page: a notebook of prompt cells, each run in a standard and a reasoning lane.

create_app() returns the Blocks and never launches it; server.py mounts it. Handlers are thin:
the logic lives in playground.app.service / playground.app.notebook / playground.store, and every
PlaygroundError becomes a readable gr.Error, never a stack trace.
"""

from __future__ import annotations

import logging

import gradio as gr

from playground.app.notebook import Notebook
from playground.app.service import Playground, explain
from playground.evaluation.charts import CellSummary, session_summary, summary_numbers
from playground.evaluation.metrics import LaneMetrics

from .api import register_api
from .batch import render_batch_panel, render_verdict
from .cells import render_cell
from .common import guarded, listen, owner_of
from .model_panel import model_panel
from .sessions import open_first, sessions_panel, share_panel
from .views import EXAMPLES

log = logging.getLogger(__name__)

CSS = """
.cell { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px; margin-bottom: 12px; }
.prose.reasoning-trace { white-space: pre-wrap; font-family: var(--font-mono); font-size: 0.9em; max-height: 420px;
                         overflow-y: auto; margin: 0; }
.lane-answer { min-height: 2em; }
"""

CTRL_ENTER_JS = """() => { document.addEventListener('keydown', (e) => {
  if (e.key !== 'Enter' || !(e.ctrlKey || e.metaKey)) return;
  const cell = document.activeElement && document.activeElement.closest('.cell');
  const btn = cell ? cell.querySelector('.run-btn') : null;
  if (btn) { e.preventDefault(); btn.click(); } }); }"""


# gradio's queue looks for new events every 1 ms and for progress every 10 ms, even when idle: 8% of
# a core on a 2-core machine, and each wake-up takes the GIL from the generate thread. At 20 ms and
# 50 ms an event starts at most 20 ms later, which nobody sees next to a run (bench.stream: the idle
# server's CPU fell from 7.7% to 1.9% of a core).
QUEUE_POLL_S = 0.02
PROGRESS_POLL_S = 0.05
# The gradio release whose queue internals the patch below was read against (requirements.txt pins it).
TESTED_GRADIO = "6.31.0"


def enable_queue(demo: gr.Blocks, concurrency: int, max_size: int) -> None:
    """Turn on gradio's queue: `concurrency` runs share the model at once, `max_size` may wait."""
    demo.queue(default_concurrency_limit=concurrency, max_size=max_size)
    if gr.__version__ != TESTED_GRADIO:
        log.warning("gradio %s is installed, but the queue's idle-loop patch (ui/app.py enable_queue) was checked "
                    "against gradio %s only: if the page misbehaves, install gradio==%s", gr.__version__,
                    TESTED_GRADIO, TESTED_GRADIO)
    # No public setting for these; tests/test_queue pins that the patched loops really sleep this long.
    demo._queue.sleep_when_free = QUEUE_POLL_S
    demo._queue.progress_update_sleep_when_free = PROGRESS_POLL_S


def mount_page(api, pg: Playground, store, secret: bytes):
    """Build the page, turn on its queue and mount it at "/" of the FastAPI app `api` (after the plain
    routes, which gradio's catch-all would otherwise take)."""
    demo = create_app(pg, store, secret)
    # One generation at a time on the model: runs share the GPU_POOL and wait their turn.
    enable_queue(demo, pg.settings.max_concurrent_runs, pg.settings.queue_size)
    # With PLAYGROUND_AUTH the page asks for a login; share pages (plain routes) stay readable.
    return gr.mount_gradio_app(api, demo, path="/", css=CSS, auth=pg.settings.auth_pairs or None)


def summary_of(session) -> tuple[object, str]:
    """The session summary chart and its headline numbers, from each cell's latest execution."""
    cells = []
    for i, cell in enumerate(session.cells, 1):
        ex = cell.latest
        if cell.kind != "prompt" or ex is None:
            continue
        lanes = {lane: LaneMetrics(**run.metrics) if run.metrics else None for lane, run in ex.runs.items()}
        cells.append(CellSummary(f"Cell {i}", lanes.get("standard"), lanes.get("reasoning")))
    nums = summary_numbers(cells)
    if not cells:
        return session_summary(cells), "Run a cell to see what reasoning costs."
    mult = nums.get("median_latency_multiple")
    text = (f"{nums['cells']} cells run · reasoning lane spent **{nums['total_extra_tokens']:+,}** extra tokens "
            f"in all · median latency multiple **{mult:.2f}×**" if mult is not None else
            f"{nums['cells']} cells run · extra tokens {nums['total_extra_tokens']:+,}")
    return session_summary(cells), text


def create_app(pg: Playground, store, secret: bytes) -> gr.Blocks:
    """The page: one function per panel, each building its components and wiring its handlers."""
    nb = Notebook(pg, store)
    with gr.Blocks(title="Reasoning playground") as demo:
        gr.Markdown("# Reasoning playground\nEvery cell runs twice, side by side, in one batched pass: "
                    "**standard** (reasoning off) and **reasoning** (reasoning on).")
        if pg.settings.hf_oauth_on:
            # Its presence makes gradio add /login/huggingface and the session cookie that owner_of reads.
            gr.LoginButton(elem_id="hf-login")
        footer = gr.Markdown(pg.footer(), elem_id="footer", render=False)  # drawn last, written by the model panel
        model_panel(pg, secret, footer)
        with gr.Row():
            with gr.Column(scale=1, min_width=220):
                controls = sessions_panel(store, secret)
                share_panel(store, secret, controls)
            with gr.Column(scale=4):
                tick = cells_panel(nb, pg, store, secret, controls.sid)
                render_batch_panel(pg, store, secret, controls.sid, tick)
        footer.render()

        def load_page(request: gr.Request):
            return (*open_first(store, secret, request), 0)

        demo.load(guarded(load_page), None, [*controls.opened, tick], js=CTRL_ENTER_JS, api_visibility="private")
        register_api(pg, nb, store, secret)
    return demo


def cells_panel(nb, pg, store, secret: bytes, sid: gr.State) -> gr.State:
    """Examples, every cell of the open session, its summary and verdict, and the add buttons; returns
    the tick that re-renders them after a structural change."""
    tick = gr.State(0)
    with gr.Row():
        gr.Markdown("Start from an example:")
        example_btns = {name: gr.Button(name, size="sm") for name in EXAMPLES}

    @gr.render(inputs=[sid, tick], concurrency_limit=None)
    def cells(session_id, _tick, request: gr.Request):
        if not session_id:
            gr.Markdown("Loading…")
            return
        try:
            session = store.get_session(owner_of(request, secret), session_id)
        except Exception as exc:
            gr.Markdown(f"⚠️ {explain(exc)}")
            return
        for index, cell in enumerate(session.cells):
            render_cell(nb, pg, store, secret, session_id, cell, index, tick)
        with gr.Accordion("Session summary: what did reasoning cost?", open=True):
            fig, text = summary_of(session)
            gr.Markdown(text, elem_id="summary-text")
            gr.Plot(fig, elem_id="summary-plot")
        render_verdict(session)

    with gr.Row():
        add_prompt_btn = gr.Button("+ Prompt cell", size="sm", elem_id="add-prompt")
        add_note_btn = gr.Button("+ Note cell", size="sm", elem_id="add-note")

    def cell_adder(kind: str, prompt: str = ""):
        def add(session_id, t, request: gr.Request):
            store.add_cell(owner_of(request, secret), session_id, kind=kind, prompt=prompt)
            return t + 1
        return add

    listen(add_prompt_btn.click, cell_adder("prompt"), [sid, tick], tick)
    listen(add_note_btn.click, cell_adder("note"), [sid, tick], tick)
    for name, btn in example_btns.items():
        listen(btn.click, cell_adder("prompt", EXAMPLES[name]), [sid, tick], tick)
    return tick
