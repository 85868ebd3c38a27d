"""The open-cell view: ONE fixed set of components that shows whichever cell is open.

Opening a cell loads its values into these components (cell_values); nothing is built or torn down,
so the page costs the same at 1,000 cells as at one. The view is a unit: its header (number,
versions, move, delete, close), the prompt, system prompt, lane settings and grader, both lanes
side by side (status, grade, answer; the folded reasoning trace) and the cell's charts; for a note
cell, its Markdown. Stable hooks for tests and tools: the prompt part has the class `prompt-cell`,
the lanes `lane-standard` / `lane-reasoning`, their status lines `lane-status`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import gradio as gr

from playground.evaluation.graders import DEFAULT_TOLERANCE, GRADER_KINDS

from .cells import execution_grades, execution_view, lane_outputs
from .common import static_text
from .turns import lane_history, shown_chain, version_label
from .views import SETTING_FIELDS, figures, settings_values

CHARTS = "charts"  # the open cell's chart panel, when a tab has it open (Gate.panels)
TRACE_TEMPLATE = "<div class='trace-text'></div>"
TRACE_JS = static_text("trace.js")
# What the view shows (its prompt part, its note part, or nothing) is a class on it, view-prompt /
# view-note / view-closed, that the list's script sets from the open row's kind (notebook.js setOpen;
# notebook.css hides the rest). Never a component's `visible`: gradio unmounts what is not visible
# (closing then opening a cell would rebuild the view's forty components), and gradio 6.31 does not
# hide a layout updated to visible="hidden". Nor an update of the view's Column: see Detail.shown.
VIEW_CLASSES = ("cell", "open-cell")


@dataclass
class Detail:
    """The view's components (see the module docstring for the layout)."""

    view: gr.Column
    open_id: gr.Textbox  # the open cell's id: the input every handler of the view acts on
    title: gr.Markdown
    version: gr.Dropdown
    up: gr.Button
    down: gr.Button
    delete: gr.Button
    close: gr.Button
    del_flag: gr.Checkbox
    prompt: gr.Textbox
    system: gr.Textbox
    s_fields: list
    r_fields: list
    r_budget: gr.Number
    expected: gr.Textbox
    grader_kind: gr.Dropdown
    tolerance: gr.Number
    grading_note: gr.Markdown
    run: gr.Button
    stop: gr.Button
    follow_part: gr.Column  # the follow-up box: shown once the cell has run
    follow: gr.Textbox
    keep: gr.Checkbox
    send: gr.Button
    s_history: gr.HTML  # each lane's earlier turns, one value (turns.lane_history)
    r_history: gr.HTML
    s_status: gr.Markdown
    s_grade: gr.Markdown
    s_answer: gr.Markdown
    r_status: gr.Markdown
    r_grade: gr.Markdown
    r_acc: gr.Accordion
    r_trace: gr.HTML
    r_answer: gr.Markdown
    charts: gr.Accordion  # closed until opened: a cell's figures are drawn only while it is open
    plots: list
    note: gr.Textbox
    note_preview: gr.Markdown

    @property
    def lanes(self) -> list:
        """What a run streams into, in lane_outputs order."""
        return [self.s_status, self.s_answer, self.r_status, self.r_trace, self.r_answer]

    @property
    def histories(self) -> list:
        return [self.s_history, self.r_history]

    @property
    def execution(self) -> list:
        """What version_values fills: one execution of the open cell (charts apart)."""
        return [*self.lanes, self.s_grade, self.r_grade, self.r_acc, self.version, *self.histories, self.follow_part]

    @property
    def read_only(self) -> set:
        """What only the server writes (no typing, no page script): safe to leave alone when unchanged."""
        return {self.open_id, self.title, self.grading_note, *self.lanes, self.s_grade, self.r_grade, *self.plots,
                *self.histories}

    @property
    def settings(self) -> list:
        return [*self.s_fields, *self.r_fields, self.r_budget]

    @property
    def shown(self) -> list:
        """Every component cell_values fills: the outputs of opening a cell.

        Neither the view's Column nor the charts' Accordion: on every status message of every event
        (pending, started, each yield, done) gradio's page re-reads the value of every component that was
        ever an output, a layout's whole subtree included. With the view among them, each click on the
        page cost four walks of its forty components (bench.page_scale: about 90 ms of an add's 280)."""
        skipped = (gr.Button, gr.Checkbox)  # the follow-up's "keep reasoning" stays as the visitor set it
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is self.view or value is self.charts:
                continue
            out += value if isinstance(value, list) else ([] if isinstance(value, skipped) else [value])
        return out


def build_detail() -> Detail:
    """The view, hidden until a cell opens (inside the notebook column)."""
    with gr.Column(elem_id="open-cell", elem_classes=[*VIEW_CLASSES, "view-closed"]) as view:
        open_id = gr.Textbox(visible=False, elem_id="open-cell-id")
        with gr.Row(equal_height=True, elem_classes="open-cell-header"):
            title = gr.Markdown(elem_classes="open-cell-title")
            version = gr.Dropdown([], show_label=False, container=False, min_width=150, scale=0,
                                  elem_classes="cell-version", interactive=True)
            up = gr.Button("↑", size="sm", min_width=36, scale=0, elem_classes="cell-up")
            down = gr.Button("↓", size="sm", min_width=36, scale=0, elem_classes="cell-down")
            delete = gr.Button("✕ Delete", size="sm", min_width=36, scale=0, variant="stop",
                               elem_classes="cell-delete")
            close = gr.Button("Close (Esc)", size="sm", min_width=36, scale=0, elem_classes="cell-close")
        del_flag = gr.Checkbox(visible=False)
        with gr.Column(elem_classes="prompt-cell"):
            form = _prompt_form()
            lanes = _lanes()
        with gr.Column(elem_classes="note-cell"):
            note = gr.Textbox(lines=3, label="Markdown", interactive=True, elem_classes="cell-note")
            note_preview = gr.Markdown(elem_classes="note-preview")
    return Detail(view=view, open_id=open_id, title=title, version=version, up=up, down=down, delete=delete,
                  close=close, del_flag=del_flag, note=note,
                  note_preview=note_preview, **form, **lanes)


def _prompt_form() -> dict:
    prompt = gr.Textbox(lines=3, label="Prompt (Ctrl+Enter runs)", elem_classes="cell-prompt", interactive=True)
    system = gr.Textbox(lines=1, label="System prompt (optional)", interactive=True, elem_classes="cell-system")
    with gr.Accordion("Lane settings", open=False, elem_classes="lane-settings"):
        gr.Markdown("Standard lane (reasoning off)")
        with gr.Row():
            s_fields = [gr.Number(label=f, interactive=True, min_width=90) for f in SETTING_FIELDS]
        gr.Markdown("Reasoning lane (reasoning on)")
        with gr.Row():
            r_fields = [gr.Number(label=f, interactive=True, min_width=90) for f in SETTING_FIELDS]
            r_budget = gr.Number(label="thinking budget (empty = unlimited)", interactive=True, min_width=90)
    with gr.Accordion("Expected answer and grader", open=False, elem_classes="grading"):
        with gr.Row():
            expected = gr.Textbox(lines=1, label="Expected answer (a pattern for regex, a test for python)",
                                  interactive=True, scale=3)
            grader_kind = gr.Dropdown(list(GRADER_KINDS), value="exact", label="Grader", interactive=True,
                                      min_width=110, scale=1)
            tolerance = gr.Number(DEFAULT_TOLERANCE, label="tolerance (numeric)", interactive=True, min_width=90,
                                  scale=1)
        grading_note = gr.Markdown("", elem_classes="grading-note")
    with gr.Row():
        run = gr.Button("Run", variant="primary", size="sm", scale=0, min_width=90, elem_classes="run-btn")
        stop = gr.Button("Stop", variant="stop", size="sm", scale=0, min_width=90, elem_classes="stop-btn")
    return dict(prompt=prompt, system=system, s_fields=s_fields, r_fields=r_fields, r_budget=r_budget,
                expected=expected, grader_kind=grader_kind, tolerance=tolerance, grading_note=grading_note,
                run=run, stop=stop)


def _follow_up() -> dict:
    """The next turn's box, under the lanes: it continues the shown run (the version picker's)."""
    # visible=False, not "hidden": gradio 6.31 shows a layout updated to "hidden" (checked in Chromium), and
    # unmounting these three components is cheap (their values survive it).
    with gr.Column(visible=False, elem_classes="follow-up") as follow_part, gr.Row(equal_height=True):
        follow = gr.Textbox(lines=1, max_lines=6, show_label=False, placeholder="Ask a follow-up (Ctrl+Enter sends)",
                            interactive=True, scale=4, elem_classes="follow-prompt")
        keep = gr.Checkbox(False, label="keep earlier reasoning", interactive=True, scale=1, min_width=120,
                           elem_classes="follow-keep")
        send = gr.Button("Send", variant="primary", size="sm", scale=0, min_width=90, elem_classes="send-btn")
    return dict(follow_part=follow_part, follow=follow, keep=keep, send=send)


def _lanes() -> dict:
    with gr.Row(equal_height=False):
        with gr.Column(elem_classes="lane lane-standard"):
            s_history = gr.HTML("", elem_classes="lane-turns", padding=False)
            s_status = gr.Markdown(elem_classes="lane-status")
            s_grade = gr.Markdown(elem_classes="lane-grade")
            s_answer = gr.Markdown(elem_classes="lane-answer")
        with gr.Column(elem_classes="lane lane-reasoning"):
            r_history = gr.HTML("", elem_classes="lane-turns", padding=False)
            r_status = gr.Markdown(elem_classes="lane-status")
            r_grade = gr.Markdown(elem_classes="lane-grade")
            with gr.Accordion("Reasoning trace", open=True, elem_classes="reasoning-acc") as r_acc:
                # Its value is plain text, drawn as text by static/trace.js (appends only new text).
                r_trace = gr.HTML("", html_template=TRACE_TEMPLATE, js_on_load=TRACE_JS, elem_classes="reasoning-trace")
            r_answer = gr.Markdown(elem_classes="lane-answer")
    follow = _follow_up()
    with gr.Accordion("Charts", open=False, elem_classes="cell-charts") as charts:
        with gr.Row():
            plots = [gr.Plot(elem_classes=name) for name in ("plot-tokens", "plot-itl", "plot-split")]
    return dict(s_status=s_status, s_grade=s_grade, s_answer=s_answer, r_status=r_status, r_grade=r_grade,
                r_acc=r_acc, r_trace=r_trace, r_answer=r_answer, charts=charts, plots=plots, s_history=s_history,
                r_history=r_history, **follow)


def cell_values(d: Detail, cell, recommended) -> dict:
    """What the view shows for a stored cell (a CellFull): every component of d.shown, charts excepted
    (chart_values, drawn after the rest so that opening a cell is quick)."""
    out = {d.open_id: cell.id, d.title: title_of(cell),
           d.note: cell.note, d.note_preview: cell.note, d.prompt: cell.prompt, d.system: cell.system_prompt or "",
           d.grading_note: "", d.follow: "", **version_values(d, cell, None), **form_values(d, cell, recommended)}
    out.update({p: None for p in d.plots})
    return out


def form_values(d: Detail, cell, recommended) -> dict:
    """The folded parts of the form: lane settings (saved, else the model's recommendation) and the grader."""
    std_default, rsn_default = recommended
    saved = cell.settings or {}
    sv, rv = settings_values(saved.get("standard"), std_default), settings_values(saved.get("reasoning"), rsn_default)
    out = dict(zip(d.s_fields, (sv[f] for f in SETTING_FIELDS), strict=True))
    out.update(zip(d.r_fields, (rv[f] for f in SETTING_FIELDS), strict=True))
    grader = cell.grader or {}
    out.update({d.r_budget: rv.get("thinking_budget"), d.expected: cell.expected or "",
                d.grader_kind: grader.get("kind", "exact"), d.tolerance: grader.get("tolerance", DEFAULT_TOLERANCE)})
    return out


def title_of(cell) -> str:
    return f"**{'Cell' if cell.kind == 'prompt' else 'Note'} {cell.position + 1}**"


def version_values(d: Detail, cell, number: int | None) -> dict:
    """The lanes, grades and version picker of one execution of the cell (the latest when None)."""
    lanes, _series = execution_view(cell, number)
    versions = [e.number for e in cell.executions]
    picked = number if number in versions else (versions[-1] if versions else None)
    out = dict(zip(d.lanes, lane_outputs(lanes), strict=True))
    out.update(zip((d.s_grade, d.r_grade), execution_grades(cell, number), strict=True))
    out[d.r_acc] = gr.Accordion(open=not lanes["reasoning"].answer)
    out[d.version] = gr.Dropdown(choices=[(version_label(e), e.number) for e in cell.executions], value=picked)
    out.update(history_values(d, cell, *shown_chain(cell, picked)))
    out[d.follow_part] = gr.Column(visible=bool(cell.executions))
    return out


def history_values(d: Detail, cell, earlier, asking: str | None) -> dict:
    """Both lanes' earlier turns (and what the shown turn asked)."""
    return {d.s_history: lane_history(cell, earlier, "standard", asking),
            d.r_history: lane_history(cell, earlier, "reasoning", asking)}


def chart_values(d: Detail, cell, number: int | None = None) -> dict:
    """The cell's three charts (None for a cell never run: charts exist only for what ran)."""
    _shown, series = execution_view(cell, number)
    figs = figures(series, cell.id) if cell.executions else (None, None, None)
    return dict(zip(d.plots, figs, strict=True))


def closed_values(d: Detail) -> dict:
    """Nothing open: the view hides and lets go of its texts and figures."""
    out = {c: "" for c in (d.prompt, d.system, d.note, d.note_preview, *d.lanes, d.s_grade, d.r_grade,
                           *d.histories)}
    out.update({p: None for p in d.plots})
    out.update({d.open_id: "", d.title: ""})
    return out
