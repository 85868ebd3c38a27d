"""Sharing sessions: share tokens, the versioned JSON export and its import, Markdown, and the
read-only HTML page (served at /s/<token>, or self-contained as a download). No gradio, no I/O
beyond reading the page's static files: routes.py and cli.py call these.

Everything rendered is untrusted (prompts, notes, model output): Markdown goes through
markdown-it-py with raw HTML off and then the nh3 allowlist; reasoning traces, prompts and
titles are escaped text. No image is ever fetched from elsewhere: Markdown images become their
alt text. Exports carry no owner, no id and no share token.

## JSON export schema (`reasoning-playground/session`, version 1)

    {"schema": "reasoning-playground/session", "version": 1,
     "exported_at": "<ISO 8601 with offset>",
     "session": {"title": str (1–200 chars), "created_at": ISO, "updated_at": ISO,
       "cells": [ in notebook order
         {"kind": "prompt" | "note", "prompt": str, "system_prompt": str | null, "note": str,
          "settings": {"standard": {...}, "reasoning": {...}},   # the cell's lane settings
          "executions": [ oldest first, numbers strictly increasing
            {"number": int ≥ 1, "runs": {"standard" | "reasoning": {
               "status": "running" | "done" | "stopped" | "error" | "interrupted",
               "raw_text", "reasoning_text", "answer_text": str,
               "prompt_tokens", "generated_tokens", "reasoning_tokens", "answer_tokens": int ≥ 0,
               "token_ids": [int], "token_times": [float, seconds since the run started],
               "token_kinds": "r"/"a" per token, "forced": "0"/"1" per token,
               "metrics": {name: number | str | null} | null, "finish_reason": str | null,
               "error": str | null, "record": {reproducibility record}, "started_at": ISO,
               "finished_at": ISO | null,
               "grade": {"status", "extracted", "detail", "key"} | null}}}],   # optional
          "expected": str | null, "grader": {"kind": ..., options} | null}],      # optional
       "verdict": {...} | null}}   # optional, written by export, ignored by import (recomputed)

The optional keys arrived after the first files were written: a file without them imports as
ungraded cells, so every older export still reads.

Unknown keys are refused at every level. The four token arrays have one entry per generated
token, and the token counts must agree with them. Limits (named constants below):
MAX_IMPORT_BYTES per file, MAX_TEXT_CHARS per text, MAX_CELLS, MAX_EXECUTIONS per cell,
MAX_TOKENS_PER_RUN, MAX_JSON_DEPTH of nesting. A file of another schema or version is refused
with a message naming both versions; a future version will add a converter here.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import string
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Literal

import nh3
import plotly
import plotly.io as pio
from markdown_it import MarkdownIt
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from playground.errors import InvalidInput
from playground.evaluation import charts
from playground.evaluation.graders import GRADE_ICONS
from playground.evaluation.metrics import LaneMetrics, format_metrics
from playground.evaluation.verdict import Verdict, lane_grade, session_verdict
from playground.lanes import LANE_TITLES, LANES, RUN_STATUSES
from playground.store import CellFull, Execution, RunInfo, SessionFull
from playground.store.checks import MAX_TITLE_CHARS
from playground.store.models import CELL_KINDS

SCHEMA = "reasoning-playground/session"
VERSION = 1
MAX_IMPORT_BYTES = 20 * 1024 * 1024
MAX_TEXT_CHARS = 2_000_000
MAX_CELLS = 5_000
MAX_EXECUTIONS = 1_000
MAX_TOKENS_PER_RUN = 1_000_000
MAX_JSON_DEPTH = 32  # the schema itself nests 8 deep; the rest is room for records and settings
MAX_SETTINGS_KEYS = 100
SHARE_TOKEN_BYTES = 32  # 256 bits: a share URL is a bearer credential
# What a share token looks like: token_urlsafe output, checked before any lookup.
SHARE_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32,200}")

ROOT = Path(__file__).resolve().parents[2]  # the repository: static/ sits beside playground/
STATIC_DIR = ROOT / "static"
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
STATUS_ICONS = {"running": "▶️", "done": "✅", "stopped": "⏹️", "error": "⚠️", "interrupted": "💥"}
PAGE_CACHE_SIZE = 8  # rendered pages kept (a few MB each for long sessions)
EXPORT_FORMATS = {"json": ("application/json", "json"), "md": ("text/markdown; charset=utf-8", "md"),
                  "html": ("text/html; charset=utf-8", "html")}


_PAGE_CACHE: OrderedDict[tuple, tuple[str, dict[str, str]]] = OrderedDict()
_PAGE_CACHE_LOCK = threading.Lock()


class ImportTooLarge(InvalidInput):
    """The import is over MAX_IMPORT_BYTES (HTTP 413)."""


def new_share_token() -> str:
    return secrets.token_urlsafe(SHARE_TOKEN_BYTES)


def is_share_token(token: str) -> bool:
    return SHARE_TOKEN_RE.fullmatch(token) is not None


# --- the schema --------------------------------------------------------------------------------
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]
Scalar = int | float | str | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunDoc(_Strict):
    status: Literal[RUN_STATUSES]
    raw_text: Text
    reasoning_text: Text
    answer_text: Text
    prompt_tokens: Count
    generated_tokens: Count
    reasoning_tokens: Count
    answer_tokens: Count
    token_ids: list[Annotated[int, Field(ge=-2**31, lt=2**31)]] = Field(max_length=MAX_TOKENS_PER_RUN)
    token_times: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(max_length=MAX_TOKENS_PER_RUN)
    token_kinds: str = Field(max_length=MAX_TOKENS_PER_RUN, pattern=r"^[ra]*$")
    forced: str = Field(max_length=MAX_TOKENS_PER_RUN, pattern=r"^[01]*$")
    metrics: dict[str, Scalar] | None = Field(max_length=MAX_SETTINGS_KEYS)
    finish_reason: str | None = Field(max_length=64)
    error: Text | None
    record: dict[str, Any]
    started_at: AwareDatetime
    finished_at: AwareDatetime | None
    grade: dict[str, Scalar] | None = Field(None, max_length=MAX_SETTINGS_KEYS)

    @model_validator(mode="after")
    def _tokens_agree(self) -> RunDoc:
        n = len(self.token_ids)
        if not len(self.token_times) == len(self.token_kinds) == len(self.forced) == n:
            raise ValueError(f"token arrays differ in length: {n} token_ids, {len(self.token_times)} token_times, "
                             f"{len(self.token_kinds)} token_kinds, {len(self.forced)} forced")
        counts = (self.generated_tokens, self.reasoning_tokens, self.answer_tokens)
        if counts != (n, self.token_kinds.count("r"), self.token_kinds.count("a")):
            raise ValueError("generated/reasoning/answer_tokens do not match the token arrays")
        return self


class ExecutionDoc(_Strict):
    number: int = Field(ge=1, le=2**31 - 1)
    runs: dict[Literal[LANES], RunDoc]


class CellDoc(_Strict):
    kind: Literal[CELL_KINDS]
    prompt: Text
    system_prompt: Text | None
    note: Text
    settings: dict[str, Any] = Field(max_length=MAX_SETTINGS_KEYS)
    executions: list[ExecutionDoc] = Field(max_length=MAX_EXECUTIONS)
    expected: Text | None = None
    grader: dict[str, Scalar] | None = Field(None, max_length=MAX_SETTINGS_KEYS)

    @field_validator("executions")
    @classmethod
    def _increasing(cls, value: list[ExecutionDoc]) -> list[ExecutionDoc]:
        numbers = [e.number for e in value]
        if any(a >= b for a, b in zip(numbers, numbers[1:])):
            raise ValueError(f"execution numbers must increase: {numbers[:20]}")
        return value


class SessionDoc(_Strict):
    title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS)
    created_at: AwareDatetime
    updated_at: AwareDatetime
    cells: list[CellDoc] = Field(max_length=MAX_CELLS)
    verdict: dict[str, Any] | None = None


class ExportDoc(_Strict):
    schema_: Literal[SCHEMA] = Field(alias="schema")
    version: Literal[VERSION]
    exported_at: AwareDatetime
    session: SessionDoc


# --- export ------------------------------------------------------------------------------------
def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat()


def _run_doc(r: RunInfo) -> dict:
    return {"status": r.status, "raw_text": r.raw_text, "reasoning_text": r.reasoning_text,
            "answer_text": r.answer_text, "prompt_tokens": r.prompt_tokens, "generated_tokens": r.generated_tokens,
            "reasoning_tokens": r.reasoning_tokens, "answer_tokens": r.answer_tokens,
            "token_ids": list(r.token_ids), "token_times": list(r.token_times), "token_kinds": r.token_kinds,
            "forced": r.forced, "metrics": r.metrics, "finish_reason": r.finish_reason, "error": r.error,
            "record": r.record, "started_at": _iso(r.started_at), "finished_at": _iso(r.finished_at),
            "grade": r.grade}


def export_document(session: SessionFull, exported_at: datetime | None = None) -> dict:
    """The session as a version-1 export (see the module docstring): plain JSON values."""
    cells = [{"kind": c.kind, "prompt": c.prompt, "system_prompt": c.system_prompt, "note": c.note,
              "settings": c.settings,
              "executions": [{"number": e.number, "runs": {lane: _run_doc(r) for lane, r in e.runs.items()}}
                             for e in c.executions], "expected": c.expected, "grader": c.grader}
             for c in session.cells]
    return {"schema": SCHEMA, "version": VERSION, "exported_at": _iso(exported_at or datetime.now(UTC)),
            "session": {"title": session.title, "created_at": _iso(session.created_at),
                        "updated_at": _iso(session.updated_at), "cells": cells,
                        "verdict": session_verdict(session).to_dict()}}


def export_json(session: SessionFull) -> str:
    return json.dumps(export_document(session), ensure_ascii=False, separators=(",", ":"))


def export_filename(title: str, fmt: str) -> str:
    """An ASCII file name from the title, safe in a Content-Disposition header and on any disk."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-")[:60].strip("-").lower() or "session"
    return f"{slug}.{EXPORT_FORMATS[fmt][1]}"


def render_export(session: SessionFull, fmt: str) -> tuple[str, str, str]:
    """(body, media type, file name) of the session in `fmt` (json, md or html)."""
    if fmt not in EXPORT_FORMATS:
        raise InvalidInput(f"format={fmt!r}: export as one of {', '.join(EXPORT_FORMATS)}.")
    body = {"json": export_json, "md": export_markdown, "html": standalone_html}[fmt](session)
    return body, EXPORT_FORMATS[fmt][0], export_filename(session.title, fmt)


# --- import ------------------------------------------------------------------------------------
def _depth(value: Any) -> int:
    """How deep lists and objects nest (iteratively: a hostile file must not exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, d = stack.pop()
        if d > deepest:
            deepest = d
            if d > MAX_JSON_DEPTH:
                break
        children = item.values() if isinstance(item, dict) else item
        stack.extend((v, d + 1) for v in children if isinstance(v, dict | list))
    return deepest


def parse_import(data: bytes | str) -> SessionFull:
    """Validate an export and return it as a record for store.import_sessions (ids blank).
    Raises ImportTooLarge or InvalidInput saying what is wrong; nothing is written."""
    if len(data) > MAX_IMPORT_BYTES:
        raise ImportTooLarge(f"The file has {len(data):,} bytes, over the limit of {MAX_IMPORT_BYTES:,} "
                             "(MAX_IMPORT_BYTES): export fewer cells.")
    try:
        doc = json.loads(data)
    except RecursionError:
        raise InvalidInput(f"The file nests lists or objects too deeply (limit {MAX_JSON_DEPTH}, "
                           "MAX_JSON_DEPTH): it is not a session export.") from None
    except UnicodeDecodeError:
        raise InvalidInput("The file is not UTF-8 text: import a .json session export.") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"The file is not valid JSON ({exc}); it may be truncated: export it again.") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise InvalidInput(f"This is not a session export: schema is {found!r}, expected {SCHEMA!r}.")
    if doc.get("version") != VERSION:
        raise InvalidInput(f"This file is version {doc.get('version')!r}; this playground reads version {VERSION}.")
    if _depth(doc) > MAX_JSON_DEPTH:
        raise InvalidInput(f"The file nests lists or objects more than {MAX_JSON_DEPTH} deep (MAX_JSON_DEPTH).")
    try:
        parsed = ExportDoc.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidInput(f"The export is malformed ({exc.error_count()} problem(s)): {problems}"[:2000]) from None
    return _session_record(parsed.session)


def _session_record(s: SessionDoc) -> SessionFull:
    def run(r: RunDoc, lane: str, number: int) -> RunInfo:
        return RunInfo(id="", cell_id="", execution=number, lane=lane, updated_at=r.finished_at or r.started_at,
                       **r.model_dump())

    cells = tuple(CellFull(
        id="", session_id="", position=i, kind=c.kind, prompt=c.prompt, system_prompt=c.system_prompt, note=c.note,
        settings=c.settings, created_at=s.created_at, updated_at=s.updated_at, expected=c.expected, grader=c.grader,
        executions=tuple(Execution(e.number, {lane: run(r, lane, e.number) for lane, r in e.runs.items()})
                         for e in c.executions)) for i, c in enumerate(s.cells))
    return SessionFull(id="", owner="", title=s.title, created_at=s.created_at, updated_at=s.updated_at,
                       forked_from=None, cells=cells)


# --- Markdown ----------------------------------------------------------------------------------
def _fence(text: str, info: str = "text") -> str:
    # A fence longer than any backtick run inside, so the text cannot close it early.
    ticks = "`" * max(3, max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    return f"{ticks}{info}\n{text}\n{ticks}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _metrics_line(metrics: dict | None) -> str | None:
    if not metrics:
        return None
    try:
        names = LaneMetrics.__dataclass_fields__
        return format_metrics(LaneMetrics(**{k: metrics.get(k) for k in names}))
    except (TypeError, ValueError):  # an imported file may carry odd values: show none rather than fail
        return None


def export_markdown(session: SessionFull) -> str:
    """The session as Markdown: notes and answers as written, prompts fenced, reasoning folded; each
    cell's latest run (the JSON export has them all)."""
    out = [f"# {_one_line(session.title)}", "", f"_{len(session.cells)} cells, exported from the reasoning playground "
                                      f"on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC._"]
    v = session_verdict(session)
    if v.compared or v.budget_curve:
        out += ["", "## Did reasoning pay?", "", _one_line(v.headline()), "", *_verdict_table(v)]
    for i, c in enumerate(session.cells, 1):
        out += ["", f"## Cell {i}" + (" · note" if c.kind == "note" else ""), ""]
        if c.kind == "note":
            out.append(c.note)
            continue
        if c.system_prompt:
            out += ["**System prompt**", "", _fence(c.system_prompt), ""]
        out += ["**Prompt**", "", _fence(c.prompt)]
        if c.expected:
            out += ["", f"**Expected** ({(c.grader or {}).get('kind', 'exact')} grader)", "", _fence(c.expected)]
        for lane, r in (c.latest.runs.items() if c.latest else ()):
            out += ["", f"### {LANE_TITLES.get(lane, lane)} — {r.status}", ""]
            if line := _metrics_line(r.metrics):
                out += [line, ""]
            if c.expected and c.grader:
                out += [_grade_line(lane_grade(c, r)), ""]
            if r.error:
                out += [f"> ⚠️ {_one_line(r.error)}", ""]
            if r.reasoning_text:
                out += ["<details><summary>Reasoning</summary>", "", _fence(r.reasoning_text), "", "</details>", ""]
            out.append(r.answer_text)
    return "\n".join(out).rstrip() + "\n"




def _grade_line(g) -> str:
    seen = f" (read {_one_line(g.extracted)[:80]!r})" if g.extracted is not None else ""
    return f"Grade: {GRADE_ICONS.get(g.status, '')} {g.status}{seen}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


def _verdict_rows(v: Verdict) -> list[tuple[str, ...]]:
    rows = []
    for lane, t in v.lanes.items():
        per_1k = t.accuracy_per_1k_tokens
        rows.append((LANE_TITLES.get(lane, lane), _pct(t.accuracy), f"{t.passed}/{t.graded}", f"{t.tokens:,}",
                     "–" if per_1k is None else f"{per_1k:.2f}"))
    return rows


def _verdict_table(v: Verdict) -> list[str]:
    head = ("lane", "accuracy", "passed", "tokens", "correct per 1k tokens")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in _verdict_rows(v)]
    if v.budget_curve:
        lines += ["", "Thinking budget sweep (reasoning lane):", "", "| budget | accuracy | mean tokens |",
                  "|---|---|---|"]
        lines += [f"| {p.label} | {_pct(p.accuracy)} | {p.mean_tokens:,.0f} |" for p in v.budget_curve]
    return lines


# --- HTML --------------------------------------------------------------------------------------
_MD = MarkdownIt("commonmark", {"html": False})
# Images are never loaded (a foreign host would learn who reads the page): show the alt text.
_MD.add_render_rule("image", lambda self, tokens, idx, options, env: html.escape(
    f"[image: {self.renderInlineAsText(tokens[idx].children or [], options, env)}]"))
_CLEANER = nh3.Cleaner(
    tags={"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "code", "pre", "blockquote", "ul",
          "ol", "li", "a"},
    attributes={"a": {"href", "title"}, "ol": {"start"}}, url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow")


def render_markdown(text: str) -> str:
    """Untrusted Markdown to safe HTML: no raw HTML, no scripts, no images, safe links only."""
    return _CLEANER.clean(_MD.render(text))


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _grade_html(g) -> str:
    seen = f" · read <code>{_esc(g.extracted[:80])}</code>" if g.extracted is not None else ""
    return (f'<p class="grade grade-{_esc(g.status)}" title="{_esc(g.detail[:300])}">'
            f"{GRADE_ICONS.get(g.status, '')} {_esc(g.status)}{seen}</p>")


def _lane_html(lane: str, r: RunInfo, cell: CellFull | None = None) -> str:
    parts = [f'<article class="lane lane-{_esc(lane)}"><h3>{_esc(LANE_TITLES.get(lane, lane))} '
             f'<span class="status status-{_esc(r.status)}">{STATUS_ICONS.get(r.status, "")} {_esc(r.status)}</span>'
             "</h3>"]
    if cell is not None and cell.expected and cell.grader:
        parts.append(_grade_html(lane_grade(cell, r)))
    if line := _metrics_line(r.metrics):
        parts.append(f'<p class="metrics">{_esc(line)}</p>')
    if r.error:
        parts.append(f'<p class="error">⚠️ {_esc(r.error)}</p>')
    if r.reasoning_text:
        parts.append(f'<details class="reasoning"><summary>Reasoning</summary><pre class="trace">'
                     f"{_esc(r.reasoning_text)}</pre></details>")
    parts.append(f'<div class="answer markdown">{render_markdown(r.answer_text)}</div></article>')
    return "".join(parts)


def _lanes_html(e: Execution, cell: CellFull | None = None) -> str:
    return '<div class="lanes">' + "".join(_lane_html(lane, r, cell) for lane, r in e.runs.items()) + "</div>"


def _series(e: Execution) -> list[charts.LaneSeries]:
    return [charts.LaneSeries.from_stored(lane, list(r.token_times), r.token_kinds, r.forced)
            for lane, r in e.runs.items()]


def _lane_numbers(run: RunInfo | None):
    # The summary chart does arithmetic on these: only numbers get through.
    if run is None or not run.metrics:
        return None
    return SimpleNamespace(**{k: v for k, v in run.metrics.items()
                              if isinstance(v, int | float) and not isinstance(v, bool)})


def _shown_version(session: SessionFull) -> tuple:
    # Every edit of a cell and every finished run touches the session; a checkpoint of a running
    # run touches only the run: together they change whenever anything on the page would.
    runs = (r.updated_at for c in session.cells for e in c.executions for r in e.runs.values())
    return session.id, session.updated_at, session.title, len(session.cells), max(runs, default=None)


def _body(session: SessionFull) -> tuple[str, dict[str, str]]:
    """_render_body, remembered for the last PAGE_CACHE_SIZE session versions: building a figure
    costs ~15 ms (mostly plotly applying its template), so a 50-cell page takes seconds, and a
    shared link may be opened by many people."""
    if not session.id:  # a record not from the store (e.g. a parsed import) has no version
        return _render_body(session)
    key = _shown_version(session)
    with _PAGE_CACHE_LOCK:
        if key in _PAGE_CACHE:
            _PAGE_CACHE.move_to_end(key)
            return _PAGE_CACHE[key]
    rendered = _render_body(session)
    with _PAGE_CACHE_LOCK:
        _PAGE_CACHE[key] = rendered
        while len(_PAGE_CACHE) > PAGE_CACHE_SIZE:
            _PAGE_CACHE.popitem(last=False)
    return rendered


def _render_body(session: SessionFull) -> tuple[str, dict[str, str]]:
    """The page's main content and its charts' figure JSON by element id."""
    figs: dict[str, str] = {}
    cells_html, summaries = [], []
    for i, c in enumerate(session.cells, 1):
        if c.kind == "note":
            cells_html.append(f'<section class="cell cell-note"><div class="markdown">{render_markdown(c.note)}'
                              "</div></section>")
            continue
        parts = [f'<section class="cell cell-prompt"><h2>Cell {i}</h2>']
        if c.system_prompt:
            parts.append(f'<div class="field"><div class="label">System prompt</div><pre class="text">'
                         f"{_esc(c.system_prompt)}</pre></div>")
        parts.append(f'<div class="field"><div class="label">Prompt</div><pre class="text">{_esc(c.prompt)}</pre>'
                     "</div>")
        if c.expected:
            kind = (c.grader or {}).get("kind", "exact")
            parts.append(f'<div class="field"><div class="label">Expected ({_esc(str(kind))} grader)</div>'
                         f'<pre class="text">{_esc(c.expected)}</pre></div>')
        if c.latest is None:
            parts.append('<p class="not-run">Not run yet.</p>')
        else:
            parts.append(_lanes_html(c.latest, c))
            series = _series(c.latest)
            parts.append('<div class="charts">')
            for name, make in (("tokens", charts.tokens_over_time), ("itl", charts.inter_token_latency),
                               ("split", charts.token_split)):
                figs[f"chart-{i}-{name}"] = pio.to_json(make(series), validate=False)
                parts.append(f'<div class="chart" id="chart-{i}-{name}"></div>')
            parts.append("</div>")
            earlier = c.executions[:-1]
            if earlier:
                parts.append(f'<details class="earlier"><summary>{len(earlier)} earlier run(s)</summary>'
                             + "".join(f"<h4>Run {e.number}</h4>{_lanes_html(e, c)}" for e in reversed(earlier))
                             + "</details>")
            runs = c.latest.runs
            summaries.append(charts.CellSummary(f"Cell {i}", _lane_numbers(runs.get("standard")),
                                         _lane_numbers(runs.get("reasoning"))))
        cells_html.append("".join(parts) + "</section>")
    nums = charts.summary_numbers(summaries)
    mult = nums["median_latency_multiple"]
    headline = (f"{nums['cells']} cell(s) run · reasoning spent {nums['total_extra_tokens']:+,} extra tokens"
                + (f" · median latency multiple {mult:.2f}×" if mult is not None else ""))
    figs["chart-summary"] = pio.to_json(charts.session_summary(summaries), validate=False)
    summary = (f'<section class="summary"><h2>Session summary</h2><p>{_esc(headline)}</p>'
               '<div class="chart chart-wide" id="chart-summary"></div></section>')
    return _verdict_html(session, figs) + summary + "".join(cells_html), figs


def _verdict_html(session: SessionFull, figs: dict[str, str]) -> str:
    """The "did reasoning pay?" section: headline, numbers per lane, three charts; "" when no cell
    is graded and no sweep was run."""
    v = session_verdict(session)
    if not v.compared and not v.budget_curve:
        return ""
    head = "".join(f"<th>{h}</th>" for h in ("lane", "accuracy", "passed", "tokens", "correct per 1k tokens"))
    body = "".join("<tr>" + "".join(f"<td>{_esc(x)}</td>" for x in row) + "</tr>" for row in _verdict_rows(v))
    figs["chart-verdict-scatter"] = pio.to_json(charts.verdict_scatter(v.cells), validate=False)
    figs["chart-verdict-accuracy"] = pio.to_json(charts.accuracy_bars(v.lanes), validate=False)
    figs["chart-verdict-budget"] = pio.to_json(
        charts.budget_curve(v.budget_curve, v.lanes["standard"].accuracy), validate=False)
    return (f'<section class="summary verdict"><h2>Did reasoning pay?</h2><p>{_esc(v.headline())}</p>'
            f'<table class="verdict-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            '<div class="charts"><div class="chart" id="chart-verdict-scatter"></div>'
            '<div class="chart" id="chart-verdict-accuracy"></div>'
            '<div class="chart" id="chart-verdict-budget"></div></div></section>')


def _charts_json(figs: dict[str, str]) -> str:
    # Inside <script type="application/json">: "<" must never appear, or "</script>" in model
    # output would end the block. JSON allows \u003c escapes anywhere a "<" can be (in strings).
    text = "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in figs.items()) + "}"
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@cache
def _static(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8")


@cache
def _plotly_inline() -> str:
    # The HTML parser turns CR LF into LF before a CSP hash is taken: hash what the browser sees.
    return PLOTLY_JS.read_text(encoding="utf-8").replace("\r\n", "\n").replace("</script", "<\\/script")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def share_csp(nonce: str) -> str:
    """The Content-Security-Policy of every served share page (and of the 404 page)."""
    return (f"default-src 'none'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _page(session: SessionFull, head: str, scripts: str) -> str:
    body, figs = _body(session)
    meta = f"{len(session.cells)} cell(s) · created {session.created_at:%Y-%m-%d %H:%M} UTC · read-only"
    return string.Template(_static("share.html")).substitute(
        head=head, title=_esc(session.title), meta=_esc(meta), body=body, charts=_charts_json(figs),
        scripts=scripts)


def share_page(session: SessionFull, nonce: str) -> str:
    """The served page: plotly.js, share.js and share.css come from this app's /static."""
    return _page(session, '<link rel="stylesheet" href="/static/share.css">',
                 f'<script src="/static/plotly.min.js" nonce="{nonce}"></script>'
                 f'<script src="/static/share.js" nonce="{nonce}"></script>')


def standalone_html(session: SessionFull) -> str:
    """The share page as one file that works offline: CSS and scripts inlined, the CSP in a
    <meta> that allows exactly those two scripts by hash."""
    plotly_js, share_js = _plotly_inline(), _static("share.js")
    csp = (f"default-src 'none'; script-src {_sha256(plotly_js)} {_sha256(share_js)}; style-src 'unsafe-inline'; "
           "img-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'")
    head = f'<meta http-equiv="Content-Security-Policy" content="{csp}"><style>{_static("share.css")}</style>'
    return _page(session, head, f"<script>{plotly_js}</script><script>{share_js}</script>")


def not_found_page() -> str:
    return ('<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Not found</title></head>'
            "<body><h1>Not found</h1><p>This link does not exist or was revoked.</p></body></html>")
