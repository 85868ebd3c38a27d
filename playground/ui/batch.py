"""The "Did reasoning pay?" panel: import a file of prompts, run every cell (progress, stop, resume),
sweep thinking budgets, and the session's verdict (numbers and three charts).

Handlers are thin: parsing, running and judging live in playground.app.batch_files,
playground.app.batch_jobs and playground.evaluation.verdict.
A batch run holds the model like a cell run (concurrency_id "gpu"); its progress reaches the page
after every finished cell, and the Stop button sets the batch's stop event, which ends the current
generate within a decode step (a closed tab does the same through the generator's close).
"""

from __future__ import annotations

import html
import threading
import time

import gradio as gr

from playground.app.batch_files import import_rows, parse_batch_file
from playground.app.batch_jobs import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BUDGETS,
    batch_engine,
    check_budgets,
    plan_jobs,
    run_jobs,
)
from playground.evaluation.datasets import DATASET_FORMATS, mapping_from_text
from playground.evaluation.verdict import session_verdict

from ..errors import InvalidInput
from . import rows
from .common import GPU_POOL, listen, owner_of
from .gate import Gates
from .insights import verdict_figures, verdict_md

MAX_ERRORS_SHOWN = 20  # bad rows listed on the page; the rest are counted
ROWS_EVERY_S = 1.0  # a batch re-reads its session's rows at most this often (and at its end)
BUDGETS_TEXT = ", ".join("unlimited" if b is None else str(b) for b in DEFAULT_BUDGETS)


def _stop_key(request: gr.Request, session_id: str) -> str:
    return f"{getattr(request, 'session_hash', '') or ''}:{session_id}"


BAR_CELLS = 20  # characters of the text progress bar


def progress_md(p) -> str:
    filled = round(p.fraction * BAR_CELLS)
    bar = "█" * filled + "░" * (BAR_CELLS - filled)
    eta = f" · about {p.eta_s:,.0f} s left" if p.eta_s is not None and not p.finished else ""
    skipped = f" ({p.skipped} skipped: already run with these settings)" if p.skipped else ""
    return (f"`{bar}` **{p.done}/{p.total}** cell runs{skipped} · {p.tokens:,} tokens · {p.elapsed_s:,.1f} s{eta}"
            f" · {html.escape(p.message, quote=False)}")


def import_report(rows, errors) -> str:
    lines = [f"Imported **{len(rows)}** cell(s)."]
    if errors:
        lines.append(f"**{len(errors)}** row(s) not imported:")
        lines += [f"- {html.escape(str(e), quote=False)}" for e in errors[:MAX_ERRORS_SHOWN]]
        if len(errors) > MAX_ERRORS_SHOWN:
            lines.append(f"- … and {len(errors) - MAX_ERRORS_SHOWN} more")
    return "\n".join(lines)


def chosen_cells(session, text: str | None) -> list[str] | None:
    """Cell ids from "1, 3" (cell numbers as the page shows them); None for all cells."""
    if not (text or "").strip():
        return None
    ids = []
    for part in text.split(","):
        try:
            n = int(part.strip())
        except ValueError:
            raise InvalidInput(f"{part.strip()!r} is not a cell number: write numbers like 1, 3.") from None
        if not 1 <= n <= len(session.cells):
            raise InvalidInput(f"There is no cell {n}: this session has cells 1–{len(session.cells)}.")
        ids.append(session.cells[n - 1].id)
    return ids


def render_verdict(session) -> None:
    """A session's verdict as a panel of its own, drawn at once (the page keeps one in insights.py,
    refreshed from the store and drawn only while open)."""
    v = session_verdict(session)
    with gr.Accordion("Did reasoning pay?", open=True):
        gr.Markdown(verdict_md(v))
        with gr.Row():
            for fig in verdict_figures(v):
                gr.Plot(fig)


class RowWatch:
    """The rows of a session as the page last got them, so a batch sends only the rows that changed, at
    most every ROWS_EVERY_S (reading the session costs ~0.1 s at 1,000 run cells)."""

    def __init__(self, store, owner: str, session_id: str):
        self.store, self.owner, self.session_id = store, owner, session_id
        self.sent: dict[str, dict] = {}
        self.last = 0.0
        self.changed()

    def changed(self, force: bool = False) -> list[dict] | None:
        now = time.monotonic()
        if not force and now - self.last < ROWS_EVERY_S:
            return None
        self.last = now
        fresh = {c.id: rows.row_of(c) for c in self.store.get_session(self.owner, self.session_id).cells}
        out = [r for cid, r in fresh.items() if self.sent.get(cid) != r]
        self.sent = fresh
        return out


def render_batch_panel(pg, store, secret, sid, cells, gates: Gates | None = None) -> list:
    """Import, Run all, Stop and Sweep for the open session; their rows reach `cells` (the notebook's
    list) as they change. Returns the events that end with the session changed (to chain refreshes)."""
    gates = gates or Gates()
    stops: dict[str, threading.Event] = {}
    with gr.Accordion("Batch: import prompts, run all, sweep budgets", open=False, elem_id="batch-panel"):
        gr.Markdown("A JSONL, CSV or Parquet file, one prompt per row, with optional `system`, `expected` and "
                    "`grader` (exact, numeric, regex, choice, math, gym, python; `tolerance` for numeric); GSM8K and "
                    "MATH rows are recognised, any other table needs a column mapping. Try "
                    "`samples/arithmetic-word-logic.jsonl` or a generated suite, `samples/gym-arithmetic.jsonl`.")
        with gr.Row():
            with gr.Column():
                batch_file = gr.File(label="Import prompts (.jsonl, .csv, .parquet)",
                                     file_types=[".jsonl", ".csv", ".json", ".parquet"], type="binary",
                                     elem_id="batch-file")
                fmt_box = gr.Dropdown(list(DATASET_FORMATS), value="auto", label="File format", elem_id="batch-format")
                mapping_box = gr.Textbox("", label="Column mapping (e.g. prompt=input, expected=target, grader=math)",
                                         elem_id="batch-mapping")
            with gr.Column():
                batch_size = gr.Slider(1, 8, value=DEFAULT_BATCH_SIZE, step=1, label="cells in flight")
                budgets_box = gr.Textbox(BUDGETS_TEXT, label="Thinking budgets for a sweep")
                only_box = gr.Textbox("", label="Only these cells (e.g. 1, 3; empty: all)", elem_id="batch-only")
        with gr.Row():
            run_all_btn = gr.Button("Run all cells", variant="primary", size="sm", elem_id="run-all")
            sweep_btn = gr.Button("Sweep thinking budgets", size="sm", elem_id="sweep")
            stop_btn = gr.Button("Stop", variant="stop", size="sm", elem_id="batch-stop")
        batch_md = gr.Markdown(elem_id="batch-progress")

    def do_import(data, fmt, mapping_text, session_id, request: gr.Request):
        if data is None:
            return gr.skip(), gr.skip()
        gate, owner = gates.of(request), owner_of(request, secret)
        found, errors = parse_batch_file(data, "", pg.settings.max_prompt_chars, fmt=fmt or "auto",
                                         mapping=mapping_from_text(mapping_text))
        import_rows(store, owner, session_id, found)
        seq = gate.next_seq()
        return import_report(found, errors), rows.reset(seq, session_id, store.get_session(owner, session_id).cells,
                                                          gate.cell_id)

    done = [listen(batch_file.upload, do_import, [batch_file, fmt_box, mapping_box, sid], [batch_md, cells],
                   api_name="batch_import")]

    def runner(sweep: bool):
        def go(session_id, size, budgets_text, only_text, request: gr.Request):
            owner, gate = owner_of(request, secret), gates.of(request)
            stop = threading.Event()
            key = _stop_key(request, session_id)
            stops[key] = stop
            try:
                budgets = check_budgets([b for b in (budgets_text or "").split(",")]) if sweep else None
                session = store.get_session(owner, session_id)
                jobs = plan_jobs(session, batch_engine(pg), pg.recommended(), pg.settings.max_new_tokens,
                                 budgets=budgets, cell_ids=chosen_cells(session, only_text))
                if not jobs:
                    raise InvalidInput("No prompt cells to run: add cells or import a file first.")
                watch = RowWatch(store, owner, session_id)
                steps = run_jobs(pg, store, owner, jobs, batch_size=int(size), stop=stop, run_code=_run_code(pg))
                try:
                    for p in steps:
                        changed = watch.changed(force=p.finished)
                        yield progress_md(p), _rows_message(gate, changed)
                finally:
                    steps.close()  # a cancelled event or closed tab stops the generate now, not at GC
            finally:
                stops.pop(key, None)
        return go

    for btn, sweep in ((run_all_btn, False), (sweep_btn, True)):
        done.append(listen(btn.click, runner(sweep), [sid, batch_size, budgets_box, only_box], [batch_md, cells],
                           concurrency_id=GPU_POOL, api_name="batch_sweep" if sweep else "batch_run_all"))

    def stop_batch(session_id, request: gr.Request):
        event = stops.get(_stop_key(request, session_id))
        if event is not None:
            event.set()

    # Explicit names: a handler named after a public endpoint (/stop, /run) would push it to /stop_1.
    listen(stop_btn.click, stop_batch, sid, None, api_name="batch_stop")
    return done


def _rows_message(gate, changed: list[dict] | None):
    """The rows a batch step changed, and which of them the page should reload if open."""
    if not changed:
        return gr.skip()
    return rows.message(gate.next_seq(), "rows", rows=changed, refresh=[r["id"] for r in changed])


def _run_code(pg):
    if not pg.settings.code_grading_on:
        return None
    from playground.evaluation.sandbox import run_code_test

    return run_code_test
