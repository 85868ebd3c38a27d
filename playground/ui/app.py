"""The Gradio page: a notebook of prompt cells, each run in a standard and a reasoning lane.

create_app() returns the Blocks and never launches it; server.py mounts it. Handlers are thin:
the logic lives in playground.app.service / playground.app.notebook / playground.store, and every
PlaygroundError becomes a readable gr.Error, never a stack trace.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from playground.app.notebook import Notebook
from playground.app.service import Playground, explain, plan_markdown
from playground.backends.remote import MAX_TIMEOUT_S as REMOTE_MAX_TIMEOUT_S
from playground.backends.remote import SWITCHES
from playground.evaluation.charts import CellSummary, session_summary, summary_numbers
from playground.evaluation.metrics import LaneMetrics
from playground.prompting.catalog import PRESETS
from playground.sharing import EXPORT_FORMATS, is_share_token, new_share_token, parse_import, render_export

from ..config import QUANTIZATIONS
from ..errors import InvalidInput
from .api import register_api
from .batch import render_batch_panel, render_verdict
from .cells import render_cell
from .common import GPU_POOL, owner_of
from .views import EXAMPLES

CSS = """
.cell { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px; margin-bottom: 12px; }
.prose.reasoning-trace { white-space: pre-wrap; font-family: var(--font-mono); font-size: 0.9em; max-height: 420px;
                         overflow-y: auto; margin: 0; }
.lane-answer { min-height: 2em; }
"""

LOCAL, REMOTE = "Local model", "Remote endpoint"
REMOTE_MODELS_SHOWN = 20  # a hosted endpoint can list hundreds: the first ones, and how many more

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


def enable_queue(demo: gr.Blocks, concurrency: int, max_size: int) -> None:
    """Turn on gradio's queue: `concurrency` runs share the model at once, `max_size` may wait."""
    demo.queue(default_concurrency_limit=concurrency, max_size=max_size)
    demo._queue.sleep_when_free = QUEUE_POLL_S  # no public setting (gradio 6.31); tests/test_queue pins it
    demo._queue.progress_update_sleep_when_free = PROGRESS_POLL_S


def mount_page(api, pg: Playground, store, secret: bytes):
    """Build the page, turn on its queue and mount it at "/" of the FastAPI app `api` (after the plain
    routes, which gradio's catch-all would otherwise take)."""
    demo = create_app(pg, store, secret)
    # One generation at a time on the model: runs share the GPU_POOL and wait their turn.
    enable_queue(demo, pg.settings.max_concurrent_runs, pg.settings.queue_size)
    # With PLAYGROUND_AUTH the page asks for a login; share pages (plain routes) stay readable.
    return gr.mount_gradio_app(api, demo, path="/", css=CSS, auth=pg.settings.auth_pairs or None)


def session_choices(store, owner: str, query: str = "") -> list[tuple[str, str]]:
    return [(f"{s.title} · {s.updated_at:%Y-%m-%d %H:%M}", s.id) for s in store.list_sessions(owner, query)]


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
    nb = Notebook(pg, store)
    preset_choices = [(p.label, key) for key, p in PRESETS.items()]

    with gr.Blocks(title="Reasoning playground") as demo:
        sid = gr.State(None)  # the open session's id
        tick = gr.State(0)  # bumped to re-render the cells after a structural change
        gr.Markdown("# Reasoning playground\nEvery cell runs twice, side by side, in one batched pass: "
                    "**standard** (reasoning off) and **reasoning** (reasoning on).")
        if pg.settings.hf_oauth_on:
            # Its presence makes gradio add /login/huggingface and the session cookie that owner_of reads.
            gr.LoginButton(elem_id="hf-login")
        with gr.Accordion("Model", open=False, elem_id="model-panel"):
            remote_on = pg.remote is not None
            where_radio = gr.Radio([LOCAL, REMOTE], value=REMOTE if remote_on else LOCAL, label="Runs go to",
                                   elem_id="backend-choice")
            with gr.Group(visible=not remote_on) as local_group:
                with gr.Row():
                    model_box = gr.Dropdown(preset_choices, value=pg.settings.model, allow_custom_value=True,
                                            label="Preset, Hugging Face id or local folder")
                    quant_box = gr.Radio(list(QUANTIZATIONS), value=pg.settings.quant, label="Quantization")
                    hw_box = gr.Textbox(label="Hardware to plan for", placeholder="detected; or 2×H200, 4×A100-80GB")
                with gr.Row():
                    plan_btn = gr.Button("Memory plan")
                    load_btn = gr.Button("Load", variant="primary")
                plan_md = gr.Markdown()
                placement_md = gr.Markdown(pg.loaded.placement.to_markdown() if pg.loaded else "No model loaded.")
            with gr.Group(visible=remote_on, elem_id="remote-panel") as remote_group:
                # In public mode the endpoint is the operator's (service.remote_config refuses others): the
                # URL and key boxes are shown read-only so visitors see where their prompts go.
                public = pg.settings.public
                with gr.Row():
                    r_url = gr.Textbox(pg.settings.remote_url or "", label="Base URL", interactive=not public,
                                       placeholder="http://127.0.0.1:8000/v1 (vLLM, SGLang, TGI, transformers serve)")
                    r_model = gr.Textbox(pg.settings.remote_model, label="Model (empty: the server's only one)")
                    r_key = gr.Textbox("", label="API key (kept in memory only; empty: PLAYGROUND_REMOTE_API_KEY)",
                                       type="password", interactive=not public)
                with gr.Row():
                    r_timeout = gr.Number(pg.settings.remote_timeout_s, label="Request timeout (s)", minimum=1,
                                          maximum=REMOTE_MAX_TIMEOUT_S)
                    r_switch = gr.Dropdown([(f"{k}: {v}", k) for k, v in SWITCHES.items()],
                                           value=pg.settings.remote_switch, label="Reasoning switch")
                with gr.Row():
                    test_btn = gr.Button("Test connection")
                    use_btn = gr.Button("Use endpoint", variant="primary")
                remote_md = gr.Markdown("Timings of a remote run are taken when each chunk arrives here: they "
                                        "include network time.", elem_id="remote-status")
        with gr.Row():
            with gr.Column(scale=1, min_width=220):
                search_box = gr.Textbox(label="Search sessions", placeholder="title or prompt text")
                sessions_dd = gr.Dropdown([], label="Sessions", elem_id="sessions")
                title_box = gr.Textbox(label="Title", elem_id="session-title")
                with gr.Row():
                    new_btn = gr.Button("New", size="sm")
                    dup_btn = gr.Button("Duplicate", size="sm")
                    del_btn = gr.Button("Delete", size="sm", variant="stop")
                with gr.Accordion("Share, import, fork", open=False, elem_id="share-panel"):
                    share_btn = gr.Button("Create a read-only link", size="sm", elem_id="share-btn")
                    revoke_btn = gr.Button("Revoke this session's links", size="sm")
                    share_md = gr.Markdown(elem_id="share-link")
                    export_fmt = gr.Radio(list(EXPORT_FORMATS), value="json", label="Export format")
                    export_btn = gr.Button("Export this session", size="sm", elem_id="export-btn")
                    export_file = gr.File(label="Exported file", interactive=False, elem_id="export-file")
                    import_file = gr.File(label="Import a JSON export", file_types=[".json"], type="binary",
                                          elem_id="import-file")
                    fork_box = gr.Textbox(label="Fork a shared link", placeholder="paste a /s/… link")
                    fork_btn = gr.Button("Fork into my sessions", size="sm")
            with gr.Column(scale=4):
                with gr.Row():
                    gr.Markdown("Start from an example:")
                    example_btns = {name: gr.Button(name, size="sm") for name in EXAMPLES}

                @gr.render(inputs=[sid, tick], concurrency_limit=None)
                def cells(session_id, _tick, request: gr.Request):
                    if not session_id:
                        gr.Markdown("Loading…")
                        return
                    owner = owner_of(request, secret)
                    try:
                        session = store.get_session(owner, session_id)
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
                render_batch_panel(pg, store, secret, sid, tick)
        footer = gr.Markdown(pg.footer(), elem_id="footer")

        # --- sessions -----------------------------------------------------------------------------
        def open_first(request: gr.Request):
            owner = owner_of(request, secret)
            wanted = request.query_params.get("session") if request else None
            sessions = store.list_sessions(owner)
            if wanted and any(s.id == wanted for s in sessions):
                chosen = next(s for s in sessions if s.id == wanted)
            elif sessions:
                chosen = sessions[0]
            else:
                chosen = store.create_session(owner, "My first session")
                store.add_cell(owner, chosen.id, prompt=EXAMPLES["Arithmetic"])
            return chosen.id, gr.Dropdown(choices=session_choices(store, owner), value=chosen.id), chosen.title, 0

        demo.load(open_first, None, [sid, sessions_dd, title_box, tick], js=CTRL_ENTER_JS, api_visibility="private")

        def switch(session_id, request: gr.Request):
            if not session_id:
                return gr.skip(), gr.skip()
            session = store.get_session(owner_of(request, secret), session_id)
            return session_id, session.title

        sessions_dd.input(switch, sessions_dd, [sid, title_box], concurrency_limit=None, api_visibility="private")

        def search(query, request: gr.Request):
            return gr.Dropdown(choices=session_choices(store, owner_of(request, secret), query or ""))

        search_box.input(search, search_box, sessions_dd, trigger_mode="always_last", concurrency_limit=None,
                         api_visibility="private")

        def rename(session_id, title, request: gr.Request):
            owner = owner_of(request, secret)
            try:
                store.rename_session(owner, session_id, title)
            except Exception as exc:
                raise gr.Error(explain(exc)) from None
            return gr.Dropdown(choices=session_choices(store, owner), value=session_id)

        title_box.submit(rename, [sid, title_box], sessions_dd, concurrency_limit=None, api_visibility="private")
        title_box.blur(rename, [sid, title_box], sessions_dd, concurrency_limit=None, api_visibility="private")

        def create_new(request: gr.Request):
            owner = owner_of(request, secret)
            s = store.create_session(owner)
            store.add_cell(owner, s.id)
            return s.id, gr.Dropdown(choices=session_choices(store, owner), value=s.id), s.title

        new_btn.click(create_new, None, [sid, sessions_dd, title_box], concurrency_limit=None, api_visibility="private")

        def duplicate(session_id, request: gr.Request):
            owner = owner_of(request, secret)
            s = store.duplicate_session(owner, session_id)
            return s.id, gr.Dropdown(choices=session_choices(store, owner), value=s.id), s.title

        dup_btn.click(duplicate, sid, [sid, sessions_dd, title_box], concurrency_limit=None, api_visibility="private")

        def delete(session_id, confirmed, request: gr.Request):
            if not confirmed:
                return gr.skip(), gr.skip(), gr.skip()
            owner = owner_of(request, secret)
            store.delete_session(owner, session_id)
            remaining = store.list_sessions(owner)
            s = remaining[0] if remaining else store.create_session(owner)
            return s.id, gr.Dropdown(choices=session_choices(store, owner), value=s.id), s.title

        confirm_flag = gr.Checkbox(visible=False)
        del_btn.click(delete, [sid, confirm_flag], [sid, sessions_dd, title_box], concurrency_limit=None,
                      api_visibility="private",
                      js="(sid, _c) => [sid, confirm('Delete this session and all its runs? This cannot be undone.')]")

        # --- sharing ----------------------------------------------------------------------------------
        def share(session_id, request: gr.Request):
            try:
                token = store.create_share(owner_of(request, secret), session_id, new_share_token())
            except Exception as exc:
                raise gr.Error(explain(exc)) from None
            host = request.headers.get("host", "127.0.0.1")
            scheme = request.headers.get("x-forwarded-proto", "http")
            url = f"{scheme}://{host}/s/{token}"
            return f"Read-only link (anyone with it can read this session): [{url}]({url})"

        share_btn.click(share, sid, share_md, concurrency_limit=None, api_visibility="private")

        def revoke(session_id, request: gr.Request):
            owner = owner_of(request, secret)
            shares = [x for x in store.list_shares(owner, session_id) if x.revoked_at is None]
            for x in shares:
                store.revoke_share(owner, x.token)
            return f"Revoked {len(shares)} link(s)."

        revoke_btn.click(revoke, sid, share_md, concurrency_limit=None, api_visibility="private")

        def export(session_id, fmt, request: gr.Request):
            """The export as a file to download (through gradio, so it works with login on too)."""
            try:
                body, _media, filename = render_export(store.get_session(owner_of(request, secret), session_id), fmt)
            except Exception as exc:
                raise gr.Error(explain(exc)) from None
            folder = Path(tempfile.mkdtemp(prefix="export-"))
            path = folder / filename
            path.write_text(body, encoding="utf-8")
            return str(path)

        export_btn.click(export, [sid, export_fmt], export_file, concurrency_limit=None, api_visibility="private")

        def import_session(data, request: gr.Request):
            if data is None:
                return gr.skip(), gr.skip(), gr.skip()
            owner = owner_of(request, secret)
            try:
                s = store.import_sessions(owner, [parse_import(data)])[0]
            except Exception as exc:
                raise gr.Error(explain(exc)) from None
            return s.id, gr.Dropdown(choices=session_choices(store, owner), value=s.id), s.title

        import_file.upload(import_session, import_file, [sid, sessions_dd, title_box], concurrency_limit=None,
                           api_visibility="private")

        def fork(link, request: gr.Request):
            owner = owner_of(request, secret)
            token = (link or "").strip().rstrip("/").rsplit("/s/", 1)[-1].split("/")[0].split("?")[0]
            try:
                if not is_share_token(token):
                    raise InvalidInput("That is not a share link: paste a link that looks like …/s/<token>.")
                s = store.fork_session(owner, share_token=token)
            except Exception as exc:
                raise gr.Error(explain(exc)) from None
            return s.id, gr.Dropdown(choices=session_choices(store, owner), value=s.id), s.title

        fork_btn.click(fork, fork_box, [sid, sessions_dd, title_box], concurrency_limit=None,
                       api_visibility="private")

        # --- cells ----------------------------------------------------------------------------------
        def cell_adder(kind: str, prompt: str = ""):
            def add(session_id, t, request: gr.Request):
                store.add_cell(owner_of(request, secret), session_id, kind=kind, prompt=prompt)
                return t + 1
            return add

        add_prompt_btn.click(cell_adder("prompt"), [sid, tick], tick, concurrency_limit=None, api_visibility="private")
        add_note_btn.click(cell_adder("note"), [sid, tick], tick, concurrency_limit=None, api_visibility="private")
        for name, btn in example_btns.items():
            btn.click(cell_adder("prompt", EXAMPLES[name]), [sid, tick], tick, concurrency_limit=None,
                      api_visibility="private")

        # --- model ----------------------------------------------------------------------------------
        def plan(ref, quant, hardware):
            try:
                return plan_markdown(pg.plan(ref, quant, hardware))
            except Exception as exc:
                raise gr.Error(explain(exc)) from None

        plan_btn.click(plan, [model_box, quant_box, hw_box], plan_md, api_name="plan", concurrency_limit=None)

        def load(ref, quant, hardware, request: gr.Request, progress=gr.Progress()):
            owner_of(request, secret)  # with Sign in with HF on, only signed-in visitors change the model
            try:
                loaded = pg.load(ref, quant, hardware, progress=lambda f, m: progress(f, desc=m), visitor=True)
            except Exception as exc:
                raise gr.Error(explain(exc)) from None
            return loaded.placement.to_markdown(), pg.footer()

        load_btn.click(load, [model_box, quant_box, hw_box], [placement_md, footer], api_name="load",
                       concurrency_id=GPU_POOL)

        def choose_where(where, request: gr.Request):
            """Show the chosen panel; back to local runs at once if a local model is loaded (else the local
            panel says to load one)."""
            owner_of(request, secret)
            msg = gr.skip()
            if where == LOCAL and pg.remote is not None:
                try:
                    pg.use_local()
                except Exception as exc:
                    msg = explain(exc)
            return gr.Group(visible=where == LOCAL), gr.Group(visible=where == REMOTE), pg.footer(), msg

        where_radio.change(choose_where, where_radio, [local_group, remote_group, footer, placement_md],
                           concurrency_limit=None, api_visibility="private")

        def test_remote(url, key, timeout, request: gr.Request):
            owner_of(request, secret)
            try:
                models = pg.test_remote(url, key, timeout, visitor=True)
            except Exception as exc:
                raise gr.Error(explain(exc)) from None
            listed = "\n".join(f"- `{m}`" for m in models[:REMOTE_MODELS_SHOWN]) or "- (none listed)"
            more = f"\n- … and {len(models) - REMOTE_MODELS_SHOWN} more" if len(models) > REMOTE_MODELS_SHOWN else ""
            return f"✅ Connected: the server lists {len(models)} model(s):\n{listed}{more}"

        test_btn.click(test_remote, [r_url, r_key, r_timeout], remote_md, concurrency_limit=None,
                       api_visibility="private")

        def use_remote(url, model, key, timeout, switch, request: gr.Request):
            owner_of(request, secret)
            try:
                backend = pg.use_remote(url, model, key, timeout, switch, visitor=True)
            except Exception as exc:
                raise gr.Error(explain(exc)) from None
            return (f"✅ Runs now go to `{backend.model}` (reasoning switch **{backend.switch}**). Timings include "
                    "network time."), pg.footer()

        use_btn.click(use_remote, [r_url, r_model, r_key, r_timeout, r_switch], [remote_md, footer],
                      concurrency_id=GPU_POOL, api_visibility="private")
        register_api(pg, nb, store, secret)
    return demo
