"""One notebook cell: its inputs, its two lanes side by side, its charts, and its handlers.

Called inside the page's @gr.render; every component has a key derived from the cell id so a
re-render keeps what the user typed. A run streams at most ~25 updates per second (the service
coalesces tokens); plots are rebuilt only every PLOT_INTERVAL_S and at the end, because a new
figure per update costs far more than a growing string.
"""

from __future__ import annotations

import html
import time

import gradio as gr

from playground.evaluation.charts import LaneSeries
from playground.evaluation.graders import DEFAULT_TOLERANCE, GRADE_ICONS, GRADER_KINDS, Grade, check_grader
from playground.lanes import LaneSettings

from ..errors import InvalidInput
from .common import GPU_POOL, guarded, listen, owner_of, run_key
from .views import (
    SETTING_FIELDS,
    LaneShown,
    answer_md,
    figures,
    reasoning_html,
    series_from_run,
    settings_values,
    shown_from_run,
    status_line,
)

PLOT_INTERVAL_S = 3.0
EMPTY = LaneShown("empty", "", "", None)


def number(name: str, value, *, integer: bool = True, optional: bool = False, lane: str = ""):
    """Coerce a number from the page or an API client, or raise InvalidInput naming lane and field."""
    import math

    where = f"{lane} lane: " if lane else ""
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return None
        raise InvalidInput(f"{where}{name} is empty: give a number.")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{where}{name}={value!r} is not a number.") from None
    if math.isnan(x) or math.isinf(x):
        raise InvalidInput(f"{where}{name}={value!r} is not a finite number.")
    if integer:
        if x != int(x):
            raise InvalidInput(f"{where}{name}={value!r} must be a whole number.")
        return int(x)
    return x


def lane_settings(lane: str, values: dict) -> LaneSettings:
    """LaneSettings from loosely typed values (form fields or an API client's dict)."""
    if not isinstance(values, dict):
        raise InvalidInput(f"{lane} lane: settings must be an object of max_new_tokens, temperature, top_p, "
                           "top_k, seed (and thinking_budget).")
    unknown = set(values) - {*SETTING_FIELDS, "thinking_budget", "min_new_tokens"}
    if unknown:
        raise InvalidInput(f"{lane} lane: unknown settings {sorted(unknown)}.")
    d = LaneSettings()
    return LaneSettings(
        max_new_tokens=number("max_new_tokens", values.get("max_new_tokens", d.max_new_tokens), lane=lane),
        temperature=number("temperature", values.get("temperature", d.temperature), integer=False, lane=lane),
        top_p=number("top_p", values.get("top_p", d.top_p), integer=False, lane=lane),
        top_k=number("top_k", values.get("top_k", d.top_k), lane=lane),
        seed=number("seed", values.get("seed", d.seed), lane=lane),
        min_new_tokens=number("min_new_tokens", values.get("min_new_tokens", 0), lane=lane),
        thinking_budget=number("thinking_budget", values.get("thinking_budget"), optional=True, lane=lane),
    )


def form_lanes(standard: tuple, reasoning: tuple, budget) -> dict[str, LaneSettings]:
    """Both lanes' settings from the cell's form fields (SETTING_FIELDS order, plus the budget)."""
    return {"standard": lane_settings("standard", dict(zip(SETTING_FIELDS, standard, strict=True))),
            "reasoning": lane_settings("reasoning", {**dict(zip(SETTING_FIELDS, reasoning, strict=True)),
                                                    "thinking_budget": budget})}


def execution_view(cell, number_: int | None):
    """(shown per lane, series per lane) of one stored execution (the latest when None)."""
    ex = None
    if cell.executions:
        ex = cell.executions[-1] if number_ is None else next(
            (e for e in cell.executions if e.number == number_), cell.executions[-1])
    shown = {lane: shown_from_run(ex.runs[lane]) if ex and lane in ex.runs else EMPTY
             for lane in ("standard", "reasoning")}
    series = [series_from_run(ex.runs[lane]) for lane in ("standard", "reasoning") if ex and lane in ex.runs]
    return shown, series




def grade_md(g: Grade | None) -> str:
    """A lane's grade badge: status and what the grader read from the answer (model output: escaped)."""
    if g is None:
        return ""
    seen = f" · read <code>{html.escape(g.extracted[:120])}</code>" if g.extracted is not None else ""
    why = f" · {html.escape(g.detail[:160], quote=False)}" if g.status in ("fail", "error", "ungraded") else ""
    return f"{GRADE_ICONS.get(g.status, '')} **{g.status}**{seen}{why}"


def execution_grades(cell, number_: int | None) -> tuple[str, str]:
    """The two lanes' grade badges of one stored execution (the latest when None)."""
    from playground.evaluation.verdict import has_grader, lane_grade

    if not has_grader(cell) or not cell.executions:
        return "", ""
    ex = cell.executions[-1] if number_ is None else next(
        (e for e in cell.executions if e.number == number_), cell.executions[-1])
    return tuple(grade_md(lane_grade(cell, ex.runs[lane]) if lane in ex.runs else None)
                 for lane in ("standard", "reasoning"))


def grader_spec(kind: str | None, tolerance, expected: str | None) -> dict | None:
    """The grader a cell's form describes, validated (InvalidInput says what to fix)."""
    if not (expected or "").strip():
        return None
    spec: dict = {"kind": kind or "exact"}
    if spec["kind"] == "numeric":
        spec["tolerance"] = number("tolerance", tolerance, integer=False, optional=True)
        if spec["tolerance"] is None:
            spec["tolerance"] = DEFAULT_TOLERANCE
    return check_grader(spec, expected)


def lane_outputs(shown: dict[str, LaneShown]):
    s, r = shown["standard"], shown["reasoning"]
    return (status_line("standard", s), answer_md(s.answer), status_line("reasoning", r),
            reasoning_html(r.reasoning), answer_md(r.answer))


def render_note(store, secret, cell, index: int, tick) -> None:
    with gr.Group(elem_classes="cell note-cell"):
        with gr.Row():
            gr.Markdown(f"**Note {index + 1}**")
            _cell_controls(store, secret, cell, tick)
        text = gr.Textbox(cell.note, lines=3, label="Markdown", key=f"note-{cell.id}", interactive=True)
        preview = gr.Markdown(cell.note, key=f"note-md-{cell.id}")

    def save(value, request: gr.Request):
        store.update_cell(owner_of(request, secret), cell.id, note=value)
        return value

    listen(text.input, save, text, preview, trigger_mode="always_last", show_progress="hidden")


def _cell_controls(store, secret, cell, tick) -> None:
    up = gr.Button("↑", size="sm", min_width=36, scale=0, elem_classes="cell-up")
    down = gr.Button("↓", size="sm", min_width=36, scale=0, elem_classes="cell-down")
    delete = gr.Button("✕", size="sm", min_width=36, scale=0, variant="stop", elem_classes="cell-delete")

    def move(delta):
        def go(t, request: gr.Request):
            store.move_cell(owner_of(request, secret), cell.id, delta)
            return t + 1
        return go

    def remove(t, confirmed, request: gr.Request):
        if not confirmed:
            return gr.skip()
        store.delete_cell(owner_of(request, secret), cell.id)
        return t + 1

    listen(up.click, move(-1), tick, tick)
    listen(down.click, move(+1), tick, tick)
    flag = gr.Checkbox(visible=False, key=f"del-flag-{cell.id}")
    listen(delete.click, remove, [tick, flag], tick, js="(t, _c) => [t, confirm('Delete this cell and its runs?')]")


def render_cell(nb, pg, store, secret, session_id: str, cell, index: int, tick) -> None:
    if cell.kind == "note":
        render_note(store, secret, cell, index, tick)
        return
    with gr.Group(elem_classes="cell prompt-cell", elem_id=f"cell-{cell.id}"):
        c = _cell_inputs(pg, store, secret, cell, index, tick)
        c.update(_cell_lanes(cell))
    _wire_inputs(store, secret, cell.id, c)
    _wire_run(nb, pg, store, secret, session_id, cell.id, c, tick)


def _cell_inputs(pg, store, secret, cell, index: int, tick) -> dict:
    """The cell's header, prompt, system prompt, lane settings and grader (keyed: a re-render keeps them)."""
    std_default, rsn_default = pg.recommended()
    saved = cell.settings or {}
    sv = settings_values(saved.get("standard"), std_default)
    rv = settings_values(saved.get("reasoning"), rsn_default)
    versions = [e.number for e in cell.executions]
    k = cell.id
    with gr.Row(equal_height=True):
        gr.Markdown(f"**Cell {index + 1}**")
        version = gr.Dropdown([(f"run {n}", n) for n in versions], value=versions[-1] if versions else None,
                              show_label=False, container=False, key=f"ver-{k}", min_width=100, scale=0,
                              elem_classes="cell-version")
        _cell_controls(store, secret, cell, tick)
    prompt = gr.Textbox(cell.prompt, lines=3, label="Prompt (Ctrl+Enter runs)", key=f"prompt-{k}",
                        elem_classes="cell-prompt", interactive=True)
    system = gr.Textbox(cell.system_prompt or "", lines=1, label="System prompt (optional)", key=f"sys-{k}",
                        interactive=True)
    with gr.Accordion("Lane settings", open=False):
        gr.Markdown("Standard lane (reasoning off)")
        with gr.Row():
            s_fields = [gr.Number(sv[f], label=f, key=f"s-{f}-{k}", interactive=True, min_width=90)
                        for f in SETTING_FIELDS]
        gr.Markdown("Reasoning lane (reasoning on)")
        with gr.Row():
            r_fields = [gr.Number(rv[f], label=f, key=f"r-{f}-{k}", interactive=True, min_width=90)
                        for f in SETTING_FIELDS]
            r_budget = gr.Number(rv.get("thinking_budget"), label="thinking budget (empty = unlimited)",
                                 key=f"r-budget-{k}", interactive=True, min_width=90)
    grader0 = cell.grader or {}
    with gr.Accordion("Expected answer and grader", open=bool(cell.expected), elem_classes="grading"):
        with gr.Row():
            expected = gr.Textbox(cell.expected or "", lines=1, label="Expected answer (a pattern for regex, "
                                  "a test for python)", key=f"exp-{k}", interactive=True, scale=3)
            grader_kind = gr.Dropdown(list(GRADER_KINDS), value=grader0.get("kind", "exact"), label="Grader",
                                      key=f"grader-{k}", interactive=True, min_width=110, scale=1)
            tolerance = gr.Number(grader0.get("tolerance", DEFAULT_TOLERANCE), label="tolerance (numeric)",
                                  key=f"tol-{k}", interactive=True, min_width=90, scale=1)
        grading_note = gr.Markdown("", elem_classes="grading-note")
    with gr.Row():
        run_btn = gr.Button("Run", variant="primary", size="sm", scale=0, min_width=90, elem_classes="run-btn")
        stop_btn = gr.Button("Stop", variant="stop", size="sm", scale=0, min_width=90, elem_classes="stop-btn")
    return dict(version=version, prompt=prompt, system=system, s_fields=s_fields, r_fields=r_fields,
                r_budget=r_budget, expected=expected, grader_kind=grader_kind, tolerance=tolerance,
                grading_note=grading_note, run=run_btn, stop=stop_btn)


def _cell_lanes(cell) -> dict:
    """Both lanes side by side (status, grade, answer; the folded trace) and the cell's three charts."""
    shown, series = execution_view(cell, None)
    s_status_v, s_answer_v, r_status_v, r_trace_v, r_answer_v = lane_outputs(shown)
    s_grade_v, r_grade_v = execution_grades(cell, None)
    with gr.Row(equal_height=False):
        with gr.Column(elem_classes="lane lane-standard"):
            s_status = gr.Markdown(s_status_v, elem_classes="lane-status")
            s_grade = gr.Markdown(s_grade_v, elem_classes="lane-grade")
            s_answer = gr.Markdown(s_answer_v, elem_classes="lane-answer")
        with gr.Column(elem_classes="lane lane-reasoning"):
            r_status = gr.Markdown(r_status_v, elem_classes="lane-status")
            r_grade = gr.Markdown(r_grade_v, elem_classes="lane-grade")
            with gr.Accordion("Reasoning trace", open=not shown["reasoning"].answer,
                              elem_classes="reasoning-acc") as r_acc:
                r_trace = gr.HTML(r_trace_v, elem_classes="reasoning-trace")
            r_answer = gr.Markdown(r_answer_v, elem_classes="lane-answer")
    with gr.Accordion("Charts", open=True):
        figs = figures(series, cell.id)
        with gr.Row():
            plots = [gr.Plot(figs[0], elem_classes="plot-tokens"), gr.Plot(figs[1], elem_classes="plot-itl"),
                     gr.Plot(figs[2], elem_classes="plot-split")]
    return dict(lanes=[s_status, s_answer, r_status, r_trace, r_answer], r_acc=r_acc, plots=plots,
                grades=[s_grade, r_grade])


def _wire_inputs(store, secret, k: str, c: dict) -> None:
    """Everything typed into the cell is saved as it is typed."""
    def save_text(field):
        def save(value, request: gr.Request):
            store.update_cell(owner_of(request, secret), k, **{field: value})
        return save

    def save_grading(expected_v, kind_v, tol_v, request: gr.Request):
        try:
            spec = grader_spec(kind_v, tol_v, expected_v)
        except InvalidInput as exc:
            return f"⚠️ {html.escape(str(exc), quote=False)}"  # half-typed: say what to fix, keep the old one
        store.update_cell(owner_of(request, secret), k, expected=(expected_v or None) if spec else None, grader=spec)
        return "" if spec else "No expected answer: this cell is not graded."

    quiet = dict(trigger_mode="always_last", show_progress="hidden")
    grading = [c["expected"], c["grader_kind"], c["tolerance"]]
    listen([x.input for x in grading], save_grading, grading, c["grading_note"], **quiet)
    listen(c["prompt"].input, save_text("prompt"), c["prompt"], None, **quiet)
    listen(c["system"].input, save_text("system_prompt"), c["system"], None, **quiet)

    def save_settings(s_max, s_temp, s_top_p, s_top_k, s_seed, r_max, r_temp, r_top_p, r_top_k, r_seed, r_budget_v,
                      request: gr.Request):
        try:
            lanes = form_lanes((s_max, s_temp, s_top_p, s_top_k, s_seed), (r_max, r_temp, r_top_p, r_top_k, r_seed),
                               r_budget_v)
        except InvalidInput:
            return  # half-typed: the run itself reports what is wrong
        store.update_cell(owner_of(request, secret), k, settings={lane: v.to_dict() for lane, v in lanes.items()})

    fields = [*c["s_fields"], *c["r_fields"], c["r_budget"]]
    listen([f.input for f in fields], save_settings, fields, None, **quiet)


def _wire_run(nb, pg, store, secret, session_id: str, k: str, c: dict, tick) -> None:
    """Run (streams both lanes, then re-renders from the store), Stop, and earlier versions."""
    outputs = [*c["lanes"], c["r_acc"], *c["plots"], c["version"]]

    # Explicit parameters: gradio injects gr.Request only into a named positional parameter.
    def run(prompt_v, system_v, s_max, s_temp, s_top_p, s_top_k, s_seed, r_max, r_temp, r_top_p, r_top_k, r_seed,
            r_budget_v, request: gr.Request):
        owner = owner_of(request, secret)
        if pg.cancelled_while_waiting(run_key(request, k)):
            gr.Info("Stopped before it started: the run was still waiting for its turn, and nothing was saved.")
            return
        lanes = form_lanes((s_max, s_temp, s_top_p, s_top_k, s_seed), (r_max, r_temp, r_top_p, r_top_k, r_seed),
                           r_budget_v)
        stream = nb.run_cell(owner, k, run_key(request, k), prompt_v, system_v, lanes)
        first = next(stream)
        yield from _stream(stream, first, store, owner, session_id, k)

    def mark_waiting(request: gr.Request):
        pg.mark_waiting(run_key(request, k))

    # Unqueued, so it lands at the click: a Stop pressed while the run waits in the queue then cancels it.
    # After the run, re-render from the store so the session summary and versions include it.
    inputs = [c["prompt"], c["system"], *c["s_fields"], *c["r_fields"], c["r_budget"]]
    listen(c["run"].click, mark_waiting, None, None, queue=False, show_progress="hidden").then(
        guarded(run), inputs, outputs, concurrency_id=GPU_POOL,
        # "full" on the two status lines only: a waiting visitor sees their place in the queue there.
        show_progress="full", show_progress_on=[c["lanes"][0], c["lanes"][2]], api_visibility="private").then(
        guarded(lambda t: t + 1), tick, tick, concurrency_limit=None, api_visibility="private")

    def stop(request: gr.Request):
        pg.stop(run_key(request, k))

    listen(c["stop"].click, stop, None, None)

    def show_version(n, request: gr.Request):
        fresh = _find_cell(store, owner_of(request, secret), session_id, k)
        if fresh is None:
            return (gr.skip(),) * (len(outputs) + 2)
        shown_v, series_v = execution_view(fresh, n)
        return (*lane_outputs(shown_v), gr.Accordion(open=not shown_v["reasoning"].answer), *figures(series_v, k),
                gr.skip(), *execution_grades(fresh, n))

    listen(c["version"].input, show_version, c["version"], [*outputs, *c["grades"]])


def _find_cell(store, owner, session_id, cell_id):
    session = store.get_session(owner, session_id)
    return next((c for c in session.cells if c.id == cell_id), None)


def _stream(stream, first, store, owner, session_id, cell_id):
    """Turn the notebook's (views, run) pairs into component updates: text every time, the reasoning
    accordion folded once the answer starts, plots every PLOT_INTERVAL_S and at the end."""
    answer_started = False
    last_plot = time.perf_counter()

    def updates(item, final=False):
        nonlocal answer_started, last_plot
        views, run = item
        shown = {lane: LaneShown(x.status, x.reasoning, x.answer, x.metrics) for lane, x in views.items()}
        for lane in ("standard", "reasoning"):
            shown.setdefault(lane, EMPTY)
        acc = gr.skip()
        if shown["reasoning"].answer.strip() and not answer_started:
            answer_started = True
            acc = gr.Accordion(open=False)
        plots = (gr.skip(),) * 3
        now = time.perf_counter()
        if final or now - last_plot >= PLOT_INTERVAL_S:
            last_plot = now
            plots = figures([LaneSeries.from_result(r) for r in run.results.values()], cell_id)
        return (*lane_outputs(shown), acc, *plots)

    item = first
    yield (*updates(item), gr.skip())
    for item in stream:
        yield (*updates(item), gr.skip())
    versions = gr.skip()
    cell = _find_cell(store, owner, session_id, cell_id)
    if cell is not None:
        ns = [e.number for e in cell.executions]
        versions = gr.Dropdown(choices=[(f"run {n}", n) for n in ns], value=ns[-1] if ns else None)
    yield (*updates(item, final=True), versions)
