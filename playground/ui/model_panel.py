"""The Model panel: where runs go (a local model or a remote endpoint), memory plans, loading."""

from __future__ import annotations

import gradio as gr

from playground.app.service import Playground, explain, plan_markdown
from playground.backends.remote import MAX_TIMEOUT_S as REMOTE_MAX_TIMEOUT_S
from playground.backends.remote import SWITCHES
from playground.config import QUANTIZATIONS
from playground.prompting.catalog import PRESETS

from .common import GPU_POOL, guarded, listen, owner_of

LOCAL, REMOTE = "Local model", "Remote endpoint"
REMOTE_MODELS_SHOWN = 20  # a hosted endpoint can list hundreds: the first ones, and how many more


def model_panel(pg: Playground, secret: bytes, footer: gr.Markdown) -> None:
    """The accordion and its handlers; `footer` shows what runs where after every change."""
    with gr.Accordion("Model", open=False, elem_id="model-panel"):
        remote_on = pg.remote is not None
        where_radio = gr.Radio([LOCAL, REMOTE], value=REMOTE if remote_on else LOCAL, label="Runs go to",
                               elem_id="backend-choice")
        with gr.Group(visible=not remote_on) as local_group:
            with gr.Row():
                model_box = gr.Dropdown([(p.label, key) for key, p in PRESETS.items()], value=pg.settings.model,
                                        allow_custom_value=True, label="Preset, Hugging Face id or local folder")
                quant_box = gr.Radio(list(QUANTIZATIONS), value=pg.settings.quant, label="Quantization")
                hw_box = gr.Textbox(label="Hardware to plan for", placeholder="detected; or 2×H200, 4×A100-80GB")
            with gr.Row():
                plan_btn = gr.Button("Memory plan")
                load_btn = gr.Button("Load", variant="primary")
            plan_md = gr.Markdown()
            placement_md = gr.Markdown(pg.loaded.placement.to_markdown() if pg.loaded else "No model loaded.")
        with gr.Group(visible=remote_on, elem_id="remote-panel") as remote_group:
            remote = _remote_fields(pg)
    local = (model_box, quant_box, hw_box)
    _wire_local(pg, secret, local, plan_btn, load_btn, plan_md, placement_md, footer)
    _wire_remote(pg, secret, where_radio, local_group, remote_group, placement_md, remote, footer)


def _remote_fields(pg: Playground) -> dict:
    # In public mode the endpoint is the operator's (service.remote_config refuses others): the URL and
    # key boxes are shown read-only so visitors see where their prompts go.
    public = pg.settings.public
    with gr.Row():
        url = gr.Textbox(pg.settings.remote_url or "", label="Base URL", interactive=not public,
                         placeholder="http://127.0.0.1:8000/v1 (vLLM, SGLang, TGI, transformers serve)")
        model = gr.Textbox(pg.settings.remote_model, label="Model (empty: the server's only one)")
        key = gr.Textbox("", label="API key (kept in memory only; empty: PLAYGROUND_REMOTE_API_KEY)",
                         type="password", interactive=not public)
    with gr.Row():
        timeout = gr.Number(pg.settings.remote_timeout_s, label="Request timeout (s)", minimum=1,
                            maximum=REMOTE_MAX_TIMEOUT_S)
        switch = gr.Dropdown([(f"{k}: {v}", k) for k, v in SWITCHES.items()], value=pg.settings.remote_switch,
                             label="Reasoning switch")
    with gr.Row():
        test_btn = gr.Button("Test connection")
        use_btn = gr.Button("Use endpoint", variant="primary")
    status = gr.Markdown("Timings of a remote run are taken when each chunk arrives here: they include network "
                         "time.", elem_id="remote-status")
    return dict(url=url, model=model, key=key, timeout=timeout, switch=switch, test=test_btn, use=use_btn,
                status=status)


def _wire_local(pg, secret, local, plan_btn, load_btn, plan_md, placement_md, footer) -> None:
    def plan(ref, quant, hardware):
        return plan_markdown(pg.plan(ref, quant, hardware))

    plan_btn.click(guarded(plan), list(local), plan_md, api_name="plan", concurrency_limit=None)

    def load(ref, quant, hardware, request: gr.Request, progress=gr.Progress()):
        owner_of(request, secret)  # with Sign in with HF on, only signed-in visitors change the model
        loaded = pg.load(ref, quant, hardware, progress=lambda f, m: progress(f, desc=m), visitor=True)
        return loaded.placement.to_markdown(), pg.footer()

    load_btn.click(guarded(load), list(local), [placement_md, footer], api_name="load", concurrency_id=GPU_POOL)


def _wire_remote(pg, secret, where_radio, local_group, remote_group, placement_md, remote, footer) -> None:
    def choose_where(where, request: gr.Request):
        """Show the chosen panel; back to local runs at once if a local model is loaded (else the local
        panel says to load one)."""
        owner_of(request, secret)
        msg = gr.skip()
        if where == LOCAL and pg.remote is not None:
            try:
                pg.use_local()
            except Exception as exc:  # shown in the panel, not as a toast: the choice itself stands
                msg = explain(exc)
        return gr.Group(visible=where == LOCAL), gr.Group(visible=where == REMOTE), pg.footer(), msg

    listen(where_radio.change, choose_where, where_radio, [local_group, remote_group, footer, placement_md])

    def test_remote(url, key, timeout, request: gr.Request):
        owner_of(request, secret)
        models = pg.test_remote(url, key, timeout, visitor=True)
        listed = "\n".join(f"- `{m}`" for m in models[:REMOTE_MODELS_SHOWN]) or "- (none listed)"
        more = f"\n- … and {len(models) - REMOTE_MODELS_SHOWN} more" if len(models) > REMOTE_MODELS_SHOWN else ""
        return f"✅ Connected: the server lists {len(models)} model(s):\n{listed}{more}"

    listen(remote["test"].click, test_remote, [remote["url"], remote["key"], remote["timeout"]], remote["status"])

    def use_remote(url, model, key, timeout, switch, request: gr.Request):
        owner_of(request, secret)
        backend = pg.use_remote(url, model, key, timeout, switch, visitor=True)
        return (f"✅ Runs now go to `{backend.model}` (reasoning switch **{backend.switch}**). Timings include "
                "network time."), pg.footer()

    listen(remote["use"].click, use_remote,
           [remote["url"], remote["model"], remote["key"], remote["timeout"], remote["switch"]],
           [remote["status"], footer], concurrency_id=GPU_POOL)
