"""The Gradio page: a notebook of prompt cells, each run in a standard and a reasoning lane.

create_app() returns the Blocks and never launches it; server.py mounts it. Handlers are thin:
the logic lives in playground.app.service / playground.app.notebook / playground.store, and every
handler goes through one error wrapper (common.guarded): a readable gr.Error, never a stack trace.
The notebook is a list of rows and one open-cell view (notebook.py, detail.py), so the page costs
what is on screen, not what is in the session.
"""

from __future__ import annotations

import logging

import gradio as gr

from playground.app.notebook import Notebook
from playground.app.service import Playground
from playground.backends import concurrent_runs

from .api import register_api
from .batch import render_batch_panel
from .common import guarded, page
from .gate import Gates
from .insights import insights_panel, refresher
from .model_panel import model_panel
from .notebook import LIST_CSS, notebook_panel
from .running import wire_runs
from .sessions import open_first, sessions_panel, share_panel

log = logging.getLogger(__name__)

CSS = """
.cell { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px; margin-bottom: 12px; }
.prose.reasoning-trace { white-space: pre-wrap; font-family: var(--font-mono); font-size: 0.9em; max-height: 420px;
                         overflow-y: auto; margin: 0; }
.lane-answer { min-height: 2em; }
""" + LIST_CSS


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
    # Runs share the GPU_POOL, as many at once as the model's decode steps take; the rest see their place.
    enable_queue(demo, concurrent_runs(pg.settings, pg.loaded)[0], pg.settings.queue_size)
    # With PLAYGROUND_AUTH the page asks for a login; share pages (plain routes) stay readable.
    return gr.mount_gradio_app(api, demo, path="/", css=CSS, auth=pg.settings.auth_pairs or None)


def create_app(pg: Playground, store, secret: bytes) -> gr.Blocks:
    """The page: one function per panel, each building its components and wiring its handlers."""
    nb = Notebook(pg, store)
    gates = Gates()
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
                ui = notebook_panel(pg, store, secret, gates, controls.sid)
                ins = insights_panel(store, secret, gates, controls.sid)
                refresh = guarded(refresher(store, secret, gates, ins))
                wire_runs(nb, pg, store, secret, gates, ui, controls.sid, refresh, ins.outputs)
                for event in render_batch_panel(pg, store, secret, controls.sid, ui.cells, gates=gates):
                    event.then(refresh, controls.sid, ins.outputs, concurrency_limit=None, api_visibility="private")
                controls.sid.change(refresh, controls.sid, ins.outputs, concurrency_limit=None,
                                    api_visibility="private")
        footer.render()

        def load_page(request: gr.Request):
            """The page's session (sessions.open_first), its rows and first cell: all in one answer."""
            session_id, dropdown, title = open_first(store, secret, request)
            extra = {controls.sid: session_id, controls.dropdown: dropdown, controls.title: title}
            yield from ui.load(session_id, request, extra)

        demo.load(page(load_page), None, [*controls.opened, *ui.loaded], api_visibility="private",
                  show_progress="hidden")
        register_api(pg, nb, store, secret)
    return demo
