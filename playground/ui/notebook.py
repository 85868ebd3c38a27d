"""The notebook: a list of rows, one per cell, and the open-cell view (detail.py).

The list is one gr.HTML whose script (static/notebook.js) draws only the rows on screen from the
rows the server sends (rows.py messages); it never holds a gradio component per cell. A structural
change sends the one change (insert, move, delete), a run its rows' new status; the view is loaded
with the open cell's values. So every action costs what it touches, at 10 cells or at 1,000.

Every handler that writes into the view is a one-yield generator under the tab's gate (gate.py), so
a write decided for one cell never lands after the view switched to another.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from playground.errors import InvalidInput
from playground.evaluation.verdict import has_grader
from playground.store import CellFull

from . import rows
from .cells import form_lanes, grader_spec
from .common import listen, owner_of, page, static_text
from .detail import (
    CHARTS,
    Detail,
    build_detail,
    cell_values,
    chart_values,
    closed_values,
    title_of,
    version_values,
)
from .gate import Gates
from .views import EXAMPLES

LIST_JS = static_text("notebook.js")
LIST_CSS = static_text("notebook.css")
LIST_TEMPLATE = ("<div class='nb-list' tabindex='0' role='listbox' aria-label='Cells of this session'>"
                 "<div class='nb-spacer'><div class='nb-rows'></div></div></div>")
# The buttons that open a new cell: until the server answers, the open-cell view takes no clicks or typing
# (notebook.js, at the click), so a click right after "+ Prompt cell" lands in the new cell, not the old one.
ADDS = "add-cell"
DELETE_JS = ("(id, _c, _n) => [id, confirm('Delete this cell and its runs?'), "
             "window.pgNotebook ? window.pgNotebook.neighbour(id) : '']")
QUIET = dict(trigger_mode="always_last", show_progress="hidden")
# A chained step runs for every click: with gradio's default ("once") the page drops a step while the same
# step of an earlier click is still pending (two quick opens would leave the second cell without charts).
CHAINED = dict(concurrency_limit=None, api_visibility="private", trigger_mode="multiple")
# The list's own events: the last one asked for always runs (after the one in progress), never dropped.
LATEST = dict(trigger_mode="always_last")


def unchanged(component) -> dict:
    """What a generator handler yields to change nothing: one that ends without yielding makes gradio set
    every one of its outputs to None."""
    return {component: gr.skip()}


@dataclass
class NotebookUI:
    """What the other panels reach: the list (an output for row messages) and the view."""

    cells: gr.HTML
    detail: Detail
    hint: gr.Textbox  # a cell id the page suggests (the neighbour to open after a delete)
    load: object = None  # load(session_id, request, extra): a gated write of a session's rows and first cell

    @property
    def loaded(self) -> list:
        """What load writes (with the components of `extra`)."""
        return [self.cells, *self.detail.shown]


def notebook_panel(pg, store, secret: bytes, gates: Gates, sid: gr.State) -> NotebookUI:
    with gr.Row():
        gr.Markdown("Start from an example:")
        examples = {name: gr.Button(name, size="sm", elem_classes=ADDS) for name in EXAMPLES}
    cells = gr.HTML("", html_template=LIST_TEMPLATE, js_on_load=LIST_JS, elem_id="cell-list", padding=False)
    with gr.Row():
        add_prompt = gr.Button("+ Prompt cell", size="sm", elem_id="add-prompt", elem_classes=ADDS)
        add_note = gr.Button("+ Note cell", size="sm", elem_id="add-note", elem_classes=ADDS)
    detail = build_detail()
    ui = NotebookUI(cells, detail, gr.Textbox(visible=False))
    ctx = _Context(pg, store, secret, gates, ui)
    _wire_opening(ctx, sid)
    for btn, kind, prompt in [(add_prompt, "prompt", ""), (add_note, "note", ""),
                              *((b, "prompt", EXAMPLES[name]) for name, b in examples.items())]:
        listen(btn.click, ctx.adder(kind, prompt), sid, [cells, *detail.shown])
    _wire_structure(ctx)
    _wire_edits(ctx)
    return ui


@dataclass
class _Context:
    pg: object
    store: object
    secret: bytes
    gates: Gates
    ui: NotebookUI

    def cell(self, request, cell_id) -> CellFull:
        return self.store.get_cell_full(owner_of(request, self.secret), cell_id)

    def show(self, gate, cell: CellFull | None, message: str):
        """Open `cell` (None: close the view) with the list message that says so: one gated write, held
        until gradio queued it, so that no write for `cell` (its run streaming) lands before it."""
        with gate.opening(cell.id if cell else None):
            yield self._view_of(gate, cell, message)

    def _view_of(self, gate, cell: CellFull | None, message: str) -> dict:
        d = self.ui.detail
        values = cell_values(d, cell, self.pg.recommended()) if cell else closed_values(d)
        return {self.ui.cells: message, **gate.unchanged_dropped(values, d.read_only)}

    def adder(self, kind: str, prompt: str):
        """A plain function, not a one-yield generator like show: a new cell has no run whose write could
        land before its values, and writes for the cell it replaces are dropped from the switch on. So
        it need not hold the gate until gradio queued its answer, and a plain answer is two status
        messages fewer for the page to apply to every component it ever updated (~40 ms a click)."""
        def add(session_id, request: gr.Request):
            gate = self.gates.of(request)
            info = self.store.add_cell(owner_of(request, self.secret), session_id, kind=kind, prompt=prompt)
            cell = CellFull(**info.__dict__)
            message = rows.insert(gate.next_seq(), info.position, rows.row_of(cell), info.id)
            with gate.opening(cell.id):
                return self._view_of(gate, cell, message)
        return add

    def charts(self, cell_id, request: gr.Request):
        """The open cell's charts while its chart panel is open, drawn after the rest of the cell (figures
        are the slow part of opening one)."""
        gate, d = self.gates.of(request), self.ui.detail
        if not cell_id or CHARTS not in gate.panels:
            yield unchanged(d.plots[0])
            return
        cell = self.cell(request, cell_id)
        with gate.writing(cell_id, wait=True) as ok:
            yield chart_values(d, cell) if ok else unchanged(d.plots[0])

    def load(self, session_id, request, extra: dict | None = None):
        """A session opened: every row, and its first cell (with `extra` outputs in the same write)."""
        gate = self.gates.of(request)
        seq = gate.next_seq()  # before reading: whatever changes after the read comes with a later seq
        session = self.store.get_session(owner_of(request, self.secret), session_id)
        gate.session_id = session.id
        first = session.cells[0] if session.cells else None
        for out in self.show(gate, first, rows.reset(seq, session.id, session.cells, first.id if first else None)):
            yield {**out, **(extra or {})}


def _wire_opening(ctx: _Context, sid: gr.State) -> None:
    ui, d = ctx.ui, ctx.ui.detail

    ui.load = ctx.load

    def load_session(session_id, request: gr.Request):
        """Another session opened (switch, new, duplicate, import, fork); the page load loads its own."""
        if session_id and session_id != ctx.gates.of(request).session_id:
            yield from ctx.load(session_id, request)
        else:
            yield unchanged(ui.cells)

    listen(sid.change, load_session, sid, ui.loaded).then(
        page(ctx.charts), d.open_id, d.plots, **CHAINED)

    def expand_charts(cell_id, request: gr.Request):
        ctx.gates.of(request).panels.add(CHARTS)
        yield from ctx.charts(cell_id, request)

    def collapse_charts(request: gr.Request):
        ctx.gates.of(request).panels.discard(CHARTS)
        return {p: None for p in d.plots}

    listen(d.charts.expand, expand_charts, d.open_id, d.plots)
    listen(d.charts.collapse, collapse_charts, None, d.plots)

    def open_cell(evt: gr.EventData, request: gr.Request):
        gate = ctx.gates.of(request)
        cell = ctx.cell(request, evt.id)
        yield from ctx.show(gate, cell, rows.opened(gate.next_seq(), cell.id))

    listen(ui.cells.open_cell, open_cell, None, [ui.cells, *d.shown], **LATEST).then(
        page(ctx.charts), d.open_id, d.plots, **CHAINED)

    def refresh_cell(evt: gr.EventData, request: gr.Request):
        """The open cell changed elsewhere (a batch ran it): its lanes, grades, versions and charts again."""
        cell = ctx.cell(request, evt.id)
        gate = ctx.gates.of(request)
        with gate.writing(cell.id, wait=True) as ok:
            yield ({**version_values(d, cell, None), **(chart_values(d, cell) if CHARTS in gate.panels else {})}
                   if ok else unchanged(d.version))

    listen(ui.cells.refresh_cell, refresh_cell, None, [*d.execution, *d.plots], **LATEST)

    def close_cell(request: gr.Request):
        gate = ctx.gates.of(request)
        yield from ctx.show(gate, None, rows.opened(gate.next_seq(), None))

    listen(ui.cells.close_cell, close_cell, None, [ui.cells, *d.shown])  # Esc (a custom event: not for gr.on)
    listen(d.close.click, close_cell, None, [ui.cells, *d.shown])

    def resync(session_id, request: gr.Request):
        """The page missed a message: every row again (the open cell stays as it is)."""
        if not session_id:
            return gr.skip()
        gate = ctx.gates.of(request)
        seq = gate.next_seq()
        session = ctx.store.get_session(owner_of(request, ctx.secret), session_id)
        return rows.reset(seq, session.id, session.cells, gate.cell_id)

    listen(ui.cells.resync, resync, sid, ui.cells, **LATEST)


def _wire_structure(ctx: _Context) -> None:
    ui, d = ctx.ui, ctx.ui.detail

    def mover(delta: int):
        def move(cell_id, request: gr.Request):
            gate, owner = ctx.gates.of(request), owner_of(request, ctx.secret)
            position = ctx.store.move_cell(owner, cell_id, delta)
            message = rows.move(gate.next_seq(), cell_id, position)
            title = title_of(ctx.store.get_cell(owner, cell_id))
            with gate.writing(cell_id, wait=True) as ok:
                yield {ui.cells: message, d.title: title if ok else gr.skip()}
        return move

    listen(d.up.click, mover(-1), d.open_id, [ui.cells, d.title])
    listen(d.down.click, mover(+1), d.open_id, [ui.cells, d.title])

    def delete(cell_id, confirmed, neighbour, request: gr.Request):
        if not confirmed or not cell_id:
            yield unchanged(ui.cells)
            return
        gate = ctx.gates.of(request)
        ctx.store.delete_cell(owner_of(request, ctx.secret), cell_id)
        after = ctx.cell(request, neighbour) if neighbour and neighbour != cell_id else None
        yield from ctx.show(gate, after, rows.delete(gate.next_seq(), cell_id, after.id if after else None))

    listen(d.delete.click, delete, [d.open_id, d.del_flag, ui.hint], [ui.cells, *d.shown], js=DELETE_JS).then(
        page(ctx.charts), d.open_id, d.plots, **CHAINED)

    def show_version(cell_id, number, request: gr.Request):
        cell = ctx.cell(request, cell_id)
        gate = ctx.gates.of(request)
        with gate.writing(cell_id, wait=True) as ok:
            yield ({**version_values(d, cell, number), **(chart_values(d, cell, number) if CHARTS in gate.panels
                                                          else {})} if ok else unchanged(d.version))

    listen(d.version.input, show_version, [d.open_id, d.version], [*d.execution, *d.plots])


def _wire_edits(ctx: _Context) -> None:
    """Everything typed into the open cell is saved as it is typed, into the cell it was typed in (the
    view's open_id goes with every save)."""
    ui, d = ctx.ui, ctx.ui.detail

    def text_saver(field: str):
        def save(cell_id, value, request: gr.Request):
            if not cell_id:
                return gr.skip()
            gate = ctx.gates.of(request)
            ctx.store.update_cell(owner_of(request, ctx.secret), cell_id, **{field: value})
            return rows.patch(gate.next_seq(), [{"id": cell_id, "text": rows.first_line(value)}])
        return save

    listen(d.prompt.input, text_saver("prompt"), [d.open_id, d.prompt], ui.cells, **QUIET)
    listen(d.note.input, text_saver("note"), [d.open_id, d.note], ui.cells, **QUIET)
    d.note.input(None, d.note, d.note_preview, js="(v) => v", api_visibility="private")  # preview in the page

    def save_system(cell_id, value, request: gr.Request):
        if cell_id:
            ctx.store.update_cell(owner_of(request, ctx.secret), cell_id, system_prompt=value)

    listen(d.system.input, save_system, [d.open_id, d.system], None, **QUIET)

    def save_grading(cell_id, expected_v, kind_v, tol_v, request: gr.Request):
        if not cell_id:
            return gr.skip(), gr.skip()
        try:
            spec = grader_spec(kind_v, tol_v, expected_v)
        except InvalidInput as exc:  # half-typed: say what to fix, keep the old one
            return f"⚠️ {html.escape(str(exc), quote=False)}", gr.skip()
        info = ctx.store.update_cell(owner_of(request, ctx.secret), cell_id,
                                     expected=(expected_v or None) if spec else None, grader=spec)
        note = "" if spec else "No expected answer: this cell is not graded."
        return note, rows.patch(ctx.gates.of(request).next_seq(), [{"id": cell_id, "graded": has_grader(info)}])

    grading = [d.expected, d.grader_kind, d.tolerance]
    listen([x.input for x in grading], save_grading, [d.open_id, *grading], [d.grading_note, ui.cells], **QUIET)

    # Explicit parameters: gradio injects gr.Request only into a named positional parameter.
    def save_settings(cell_id, s_max, s_temp, s_top_p, s_top_k, s_seed, r_max, r_temp, r_top_p, r_top_k, r_seed,
                      r_budget, request: gr.Request):
        try:
            lanes = form_lanes((s_max, s_temp, s_top_p, s_top_k, s_seed), (r_max, r_temp, r_top_p, r_top_k, r_seed),
                               r_budget)
        except InvalidInput:
            return  # half-typed: the run itself reports what is wrong
        if cell_id:
            ctx.store.update_cell(owner_of(request, ctx.secret), cell_id,
                                  settings={lane: v.to_dict() for lane, v in lanes.items()})

    listen([f.input for f in d.settings], save_settings, [d.open_id, *d.settings], None, **QUIET)
