"""The Gradio page: model panel, a prompt, and the standard and reasoning lanes side by side.

create_app() returns the Blocks and never launches it; server.py mounts it. Handlers are thin:
the logic lives in playground.service, and PlaygroundErrors become gr.Error messages.
"""

from __future__ import annotations

import html
import math

import gradio as gr

from ..catalog import PRESETS
from ..config import QUANTIZATIONS
from ..engine import LaneSettings
from ..errors import InvalidInput
from ..metrics import LaneMetrics, format_metrics
from ..service import Playground, explain, plan_markdown

STATUS_ICONS = {"queued": "⏳", "running": "▶️", "done": "✅", "stopped": "⏹️", "error": "⚠️"}


def _number(name: str, value, *, integer: bool = True, optional: bool = False):
    """Coerce a number from the UI or an API client, or raise InvalidInput naming the field."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return None
        raise InvalidInput(f"{name} is empty: give a number.")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name}={value!r} is not a number.") from None
    if math.isnan(x) or math.isinf(x):
        raise InvalidInput(f"{name}={value!r} is not a finite number.")
    if integer:
        if x != int(x):
            raise InvalidInput(f"{name}={value!r} must be a whole number.")
        return int(x)
    return x


def lane_settings(max_new_tokens, temperature, top_p, top_k, seed, budget=None) -> LaneSettings:
    return LaneSettings(
        max_new_tokens=_number("max new tokens", max_new_tokens),
        temperature=_number("temperature", temperature, integer=False),
        top_p=_number("top_p", top_p, integer=False),
        top_k=_number("top_k", top_k),
        seed=_number("seed", seed),
        thinking_budget=_number("thinking budget", budget, optional=True),
    )


def status_line(lane_name: str, status: str, metrics: dict | None) -> str:
    line = f"**{lane_name}** {STATUS_ICONS.get(status, '')} {status}"
    if metrics:
        line += " · " + format_metrics(LaneMetrics(**metrics))
    return line


def reasoning_block(text: str) -> str:
    """The reasoning trace as escaped text: gr.Markdown would drop <think> elements and model output is
    untrusted, so it is shown verbatim inside a pre block."""
    return f"<pre style='white-space:pre-wrap'>{html.escape(text)}</pre>" if text else ""


def create_app(pg: Playground) -> gr.Blocks:
    std_default, rsn_default = pg.recommended()
    preset_choices = [(p.label, key) for key, p in PRESETS.items()]

    with gr.Blocks(title="Reasoning playground") as demo:
        gr.Markdown("# Reasoning playground\nEvery prompt runs twice, side by side: **standard** (reasoning off) "
                    "and **reasoning** (reasoning on), in one batched pass.")
        with gr.Accordion("Model", open=False):
            with gr.Row():
                model_box = gr.Dropdown(preset_choices, value="embedded", allow_custom_value=True,
                                        label="Preset, Hugging Face id or local folder")
                quant_box = gr.Radio(list(QUANTIZATIONS), value=pg.settings.quant, label="Quantization")
                hw_box = gr.Textbox(label="Hardware to plan for", placeholder="detected; or e.g. 2×H200, 4×A100-80GB")
            with gr.Row():
                plan_btn = gr.Button("Memory plan")
                load_btn = gr.Button("Load", variant="primary")
            plan_md = gr.Markdown()
            placement_md = gr.Markdown(pg.loaded.placement.to_markdown() if pg.loaded else "No model loaded.")

        prompt_box = gr.Textbox(label="Prompt", lines=4, placeholder="Ask something… (Ctrl+Enter runs)",
                                elem_id="prompt")
        system_box = gr.Textbox(label="System prompt (optional)", lines=1)
        with gr.Accordion("Lane settings", open=False):
            with gr.Row():
                with gr.Column():
                    gr.Markdown("Standard lane")
                    s_max = gr.Number(std_default.max_new_tokens, label="max new tokens", precision=0)
                    s_temp = gr.Number(std_default.temperature, label="temperature (0 = greedy)")
                    s_top_p = gr.Number(std_default.top_p, label="top_p")
                    s_top_k = gr.Number(std_default.top_k, label="top_k (0 = off)", precision=0)
                    s_seed = gr.Number(0, label="seed", precision=0)
                with gr.Column():
                    gr.Markdown("Reasoning lane")
                    r_max = gr.Number(rsn_default.max_new_tokens, label="max new tokens", precision=0)
                    r_temp = gr.Number(rsn_default.temperature, label="temperature (0 = greedy)")
                    r_top_p = gr.Number(rsn_default.top_p, label="top_p")
                    r_top_k = gr.Number(rsn_default.top_k, label="top_k (0 = off)", precision=0)
                    r_seed = gr.Number(0, label="seed", precision=0)
                    r_budget = gr.Number(None, label="thinking budget in tokens (empty = unlimited)", precision=0)
        with gr.Row():
            run_btn = gr.Button("Run", variant="primary", elem_id="run")
            stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
        with gr.Row():
            with gr.Column():
                std_status = gr.Markdown("**Standard**", elem_id="standard-status")
                std_answer = gr.Markdown(elem_id="standard-answer")
            with gr.Column():
                rsn_status = gr.Markdown("**Reasoning**", elem_id="reasoning-status")
                with gr.Accordion("Reasoning trace", open=True, elem_id="reasoning-trace"):
                    rsn_trace = gr.HTML(elem_id="reasoning-text")
                rsn_answer = gr.Markdown(elem_id="reasoning-answer")
        footer = gr.Markdown(pg.footer(), elem_id="footer")

        def run(prompt, system, s_max_, s_temp_, s_top_p_, s_top_k_, s_seed_, r_max_, r_temp_, r_top_p_, r_top_k_,
                r_seed_, r_budget_, request: gr.Request):
            try:
                lanes = {"standard": lane_settings(s_max_, s_temp_, s_top_p_, s_top_k_, s_seed_),
                         "reasoning": lane_settings(r_max_, r_temp_, r_top_p_, r_top_k_, r_seed_, r_budget_)}
                key = request.session_hash or "anonymous"
                run_ = pg.start_run(key, prompt, system, lanes)
            except Exception as exc:
                raise gr.Error(explain(exc)) from None
            yield (status_line("Standard", "queued", None), "", status_line("Reasoning", "queued", None), "", "")
            for views in pg.stream_views(key, run_):
                s, r = views["standard"], views["reasoning"]
                yield (status_line("Standard", s.status, s.metrics), s.answer,
                       status_line("Reasoning", r.status, r.metrics), reasoning_block(r.reasoning), r.answer)

        run_inputs = [prompt_box, system_box, s_max, s_temp, s_top_p, s_top_k, s_seed,
                      r_max, r_temp, r_top_p, r_top_k, r_seed, r_budget]
        run_outputs = [std_status, std_answer, rsn_status, rsn_trace, rsn_answer]
        run_event = run_btn.click(run, run_inputs, run_outputs, api_name="run", concurrency_id="gpu")
        prompt_box.submit(run, run_inputs, run_outputs, api_name=False, concurrency_id="gpu")

        def stop(request: gr.Request) -> str:
            stopped = pg.stop(request.session_hash or "anonymous")
            return "stopping" if stopped else "nothing to stop"

        stop_btn.click(stop, None, gr.Textbox(visible=False), api_name="stop", cancels=[run_event],
                       concurrency_limit=None)

        def plan(ref, quant, hardware):
            try:
                return plan_markdown(pg.plan(ref, quant, hardware))
            except Exception as exc:
                raise gr.Error(explain(exc)) from None

        plan_btn.click(plan, [model_box, quant_box, hw_box], plan_md, api_name="plan", concurrency_limit=None)

        def load(ref, quant, hardware, progress=gr.Progress()):
            try:
                loaded = pg.load(ref, quant, hardware, progress=lambda f, m: progress(f, desc=m))
            except Exception as exc:
                raise gr.Error(explain(exc)) from None
            return loaded.placement.to_markdown(), pg.footer()

        load_btn.click(load, [model_box, quant_box, hw_box], [placement_md, footer], api_name="load",
                       concurrency_id="gpu")
        # Ctrl+Enter runs the prompt from anywhere on the page.
        demo.load(None, None, None, js="""() => { document.addEventListener('keydown', (e) => {
            if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault();
              document.querySelector('#run')?.click(); } }); }""")
    return demo
