"""The read-only HTML page of a session: served at /s/<token>, or downloaded as one self-contained
file that works offline. No gradio; the only I/O is reading the page's static files.

Everything shown is untrusted (prompts, notes, model output): answers and notes go through the
one Markdown renderer (markdown.render_markdown), reasoning traces, prompts and titles are escaped
text, and the charts' JSON is escaped so no "<" reaches the page. Both pages run under a strict
Content-Security-Policy: the served one by header with a nonce per response, the self-contained
one by a <meta> that allows exactly its two inline scripts by hash. plotly.js comes from this app
(or is inlined), never from another host.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import string
import threading
from collections import OrderedDict
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import plotly
import plotly.io as pio

from playground.evaluation import charts
from playground.evaluation.graders import GRADE_ICONS
from playground.evaluation.metrics import metrics_line
from playground.evaluation.verdict import lane_grade, session_verdict
from playground.lanes import LANE_TITLES
from playground.sharing.markdown import (
    BUDGET_COLUMNS,
    VERDICT_COLUMNS,
    budget_rows,
    render_markdown,
    verdict_rows,
)
from playground.store import CellFull, Execution, RunInfo, SessionFull

ROOT = Path(__file__).resolve().parents[2]  # the repository: static/ sits beside playground/
STATIC_DIR = ROOT / "static"
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
STATUS_ICONS = {"running": "▶️", "done": "✅", "stopped": "⏹️", "error": "⚠️", "interrupted": "💥"}
PAGE_CACHE_SIZE = 8  # rendered pages kept (a few MB each for long sessions)

_PAGE_CACHE: OrderedDict[tuple, tuple[str, dict[str, str]]] = OrderedDict()
_PAGE_CACHE_LOCK = threading.Lock()


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
    if line := metrics_line(r.metrics):
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


def _turns_html(c: CellFull) -> str:
    """A follow-up conversation's earlier turns (each lane's own answers), then the prompt of the
    turn shown below in full; nothing for a cell of one turn."""
    turns = c.turns
    if len(turns) < 2:
        return ""
    earlier = "".join(f'<div class="turn"><h4>Turn {e.turn}</h4><pre class="text">{_esc(e.prompt(c.prompt))}</pre>'
                      f"{_lanes_html(e)}</div>" for e in turns[:-1])
    last = turns[-1]
    return (f'<div class="turns">{earlier}<div class="turn"><h4>Turn {last.turn}</h4>'
            f'<pre class="text">{_esc(last.prompt(c.prompt))}</pre></div></div>')


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
            parts.append(_turns_html(c) + _lanes_html(c.latest, c))
            series = _series(c.latest)
            parts.append('<div class="charts">')
            for name, make in (("tokens", charts.tokens_over_time), ("itl", charts.inter_token_latency),
                               ("split", charts.token_split)):
                figs[f"chart-{i}-{name}"] = pio.to_json(make(series), validate=False)
                parts.append(f'<div class="chart" id="chart-{i}-{name}"></div>')
            parts.append("</div>")
            in_turns = {e.number for e in c.turns}
            earlier = [e for e in c.executions if e.number not in in_turns]
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
    turns = sum(len(c.turns) for c in session.cells)
    headline = (f"{nums['cells']} cell(s) run"
                + (f" · {turns} turns" if turns > nums["cells"] else "")
                + f" · reasoning spent {nums['total_extra_tokens']:+,} extra tokens"
                + (f" · median latency multiple {mult:.2f}×" if mult is not None else ""))
    figs["chart-summary"] = pio.to_json(charts.session_summary(summaries), validate=False)
    summary = (f'<section class="summary"><h2>Session summary</h2><p>{_esc(headline)}</p>'
               '<div class="chart chart-wide" id="chart-summary"></div></section>')
    return _verdict_html(session, figs) + summary + "".join(cells_html), figs


def _table(columns, rows) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in columns)
    body = "".join("<tr>" + "".join(f"<td>{_esc(x)}</td>" for x in row) + "</tr>" for row in rows)
    return f'<table class="verdict-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _verdict_html(session: SessionFull, figs: dict[str, str]) -> str:
    """The "did reasoning pay?" section: headline (with its conclusion), numbers per lane with their
    intervals, the budget sweep, three charts; "" when no cell is graded and no sweep was run."""
    v = session_verdict(session)
    if not v.compared and not v.budget_curve:
        return ""
    figs["chart-verdict-scatter"] = pio.to_json(charts.verdict_scatter(v.cells), validate=False)
    figs["chart-verdict-accuracy"] = pio.to_json(charts.accuracy_bars(v.lanes), validate=False)
    figs["chart-verdict-budget"] = pio.to_json(
        charts.budget_curve(v.budget_curve, v.lanes["standard"].accuracy), validate=False)
    sweep = _table(BUDGET_COLUMNS, budget_rows(v)) if v.budget_curve else ""
    return (f'<section class="summary verdict"><h2>Did reasoning pay?</h2><p>{_esc(v.headline())}</p>'
            f"{_table(VERDICT_COLUMNS, verdict_rows(v))}{sweep}"
            '<div class="charts"><div class="chart" id="chart-verdict-scatter"></div>'
            '<div class="chart" id="chart-verdict-accuracy"></div>'
            '<div class="chart" id="chart-verdict-budget"></div></div></section>')


GRADED_COLUMNS = ("cell", "prompt", "expected", "standard", "read", "tokens", "reasoning", "read", "tokens",
                  "reasoning's effect")
CHANGE_WORDS = {1: "fixed", -1: "broke", 0: "same", None: "–"}
PROMPT_SHOWN_CHARS = 120


def _graded_rows(session: SessionFull) -> list[tuple[str, ...]]:
    rows = []
    for c in session_verdict(session).cells:
        if not c.grades:
            continue
        row = [c.label, c.prompt.strip().splitlines()[0][:PROMPT_SHOWN_CHARS] if c.prompt.strip() else "",
               (c.expected or "")[:PROMPT_SHOWN_CHARS]]
        for lane in ("standard", "reasoning"):
            g = c.grades.get(lane)
            row += ["–", "", ""] if g is None else [f"{GRADE_ICONS.get(g.status, '')} {g.status}",
                                                    (g.extracted or "")[:PROMPT_SHOWN_CHARS],
                                                    f"{c.tokens.get(lane, 0):,}"]
        rows.append((*row, CHANGE_WORDS[c.correctness_change]))
    return rows


def _report_body(session: SessionFull) -> tuple[str, dict[str, str]]:
    """The verdict and a table of every graded cell (what each lane's grader read, and whether
    reasoning fixed or broke the cell): what `python -m playground report` writes."""
    figs: dict[str, str] = {}
    verdict = _verdict_html(session, figs) or '<p class="not-run">No graded cells yet.</p>'
    rows = _graded_rows(session)
    table = _table(GRADED_COLUMNS, rows) if rows else ""
    return (f'{verdict}<section class="summary graded"><h2>Graded cells ({len(rows)})</h2>{table}</section>',
            figs)


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


def _page(session: SessionFull, head: str, scripts: str, rendered: tuple[str, dict[str, str]] | None = None) -> str:
    body, figs = rendered or _body(session)
    meta = f"{len(session.cells)} cell(s) · created {session.created_at:%Y-%m-%d %H:%M} UTC · read-only"
    return string.Template(_static("share.html")).substitute(
        head=head, title=_esc(session.title), meta=_esc(meta), body=body, charts=_charts_json(figs),
        scripts=scripts)


def share_page(session: SessionFull, nonce: str) -> str:
    """The served page: plotly.js, share.js and share.css come from this app's /static."""
    return _page(session, '<link rel="stylesheet" href="/static/share.css">',
                 f'<script src="/static/plotly.min.js" nonce="{nonce}"></script>'
                 f'<script src="/static/share.js" nonce="{nonce}"></script>')


def standalone_html(session: SessionFull, rendered: tuple[str, dict[str, str]] | None = None) -> str:
    """The share page as one file that works offline: CSS and scripts inlined, the CSP in a
    <meta> that allows exactly those two scripts by hash."""
    plotly_js, share_js = _plotly_inline(), _static("share.js")
    csp = (f"default-src 'none'; script-src {_sha256(plotly_js)} {_sha256(share_js)}; style-src 'unsafe-inline'; "
           "img-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'")
    head = f'<meta http-equiv="Content-Security-Policy" content="{csp}"><style>{_static("share.css")}</style>'
    return _page(session, head, f"<script>{plotly_js}</script><script>{share_js}</script>", rendered)


def report_html(session: SessionFull) -> str:
    """The session's report as one self-contained file: the HTML export's page, CSP and scripts,
    with the verdict, its charts and a table of every graded cell instead of the cells."""
    return standalone_html(session, _report_body(session))


def not_found_page() -> str:
    return ('<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Not found</title></head>'
            "<body><h1>Not found</h1><p>This link does not exist or was revoked.</p></body></html>")
