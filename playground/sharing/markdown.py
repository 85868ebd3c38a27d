"""The Markdown export, and the one renderer of untrusted Markdown into HTML.

Everything here is untrusted (prompts, notes, model output). The renderer is markdown-it-py with
raw HTML off, then the nh3 allowlist: no script, no attribute but a safe link's, no image ever
fetched from elsewhere (an image becomes its alt text). page.py shows answers and notes through
it; nothing else turns Markdown into HTML. The export fences prompts and reasoning so their text
cannot open or close anything.

The two words a session shares between its Markdown and its page, one metrics line per lane and
the verdict's table rows, live here too: page.py reads them.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import nh3
from markdown_it import MarkdownIt

from playground.evaluation.graders import GRADE_ICONS
from playground.evaluation.metrics import metrics_line
from playground.evaluation.verdict import Verdict, lane_grade, session_verdict
from playground.lanes import LANE_TITLES
from playground.store import SessionFull

VERDICT_COLUMNS = ("lane", "accuracy", "95% interval", "passed", "tokens", "tokens per correct",
                   "seconds per correct", "correct per 1k tokens")
BUDGET_COLUMNS = ("budget", "accuracy", "95% interval", "passed", "mean tokens")

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


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


def interval_text(interval: tuple[float, float] | None) -> str:
    return "–" if interval is None else f"{interval[0]:.0%}–{interval[1]:.0%}"


def _number(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def verdict_rows(v: Verdict) -> list[tuple[str, ...]]:
    """One row of plain text (not escaped) per lane, in VERDICT_COLUMNS order."""
    return [(LANE_TITLES.get(lane, lane), _pct(t.accuracy), interval_text(t.interval), f"{t.passed}/{t.graded}",
             f"{t.tokens:,}", _number(t.tokens_per_correct, ",.0f"), _number(t.seconds_per_correct, ",.2f"),
             _number(t.accuracy_per_1k_tokens, ".2f")) for lane, t in v.lanes.items()]


def budget_rows(v: Verdict) -> list[tuple[str, ...]]:
    """One row of plain text per thinking budget of the sweep, in BUDGET_COLUMNS order."""
    return [(p.label, _pct(p.accuracy), interval_text(p.interval), f"{p.passed}/{p.graded}", f"{p.mean_tokens:,.0f}")
            for p in v.budget_curve]


# --- the Markdown export -----------------------------------------------------------------------
def _fence(text: str, info: str = "text") -> str:
    # A fence longer than any backtick run inside, so the text cannot close it early.
    ticks = "`" * max(3, max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    return f"{ticks}{info}\n{text}\n{ticks}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def export_markdown(session: SessionFull) -> str:
    """The session as Markdown: notes and answers as written, prompts fenced, reasoning folded; each
    cell's latest run with the earlier turns of its conversation (the JSON export has every run)."""
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
        turns = c.turns
        for ex in turns:
            of_turn = f" · turn {ex.turn}" if len(turns) > 1 else ""
            if ex.turn > 1:
                out += ["", f"**Turn {ex.turn}**", "", _fence(ex.prompt(c.prompt))]
            out += _lanes_markdown(c, ex, of_turn, graded=ex is turns[-1])
    return "\n".join(out).rstrip() + "\n"


def _lanes_markdown(c, ex, of_turn: str, graded: bool) -> list[str]:
    out = []
    for lane, r in ex.runs.items():
        out += ["", f"### {LANE_TITLES.get(lane, lane)}{of_turn} — {r.status}", ""]
        if line := metrics_line(r.metrics):
            out += [line, ""]
        if graded and c.expected and c.grader:
            out += [_grade_line(lane_grade(c, r)), ""]
        if r.error:
            out += [f"> ⚠️ {_one_line(r.error)}", ""]
        if r.reasoning_text:
            out += ["<details><summary>Reasoning</summary>", "", _fence(r.reasoning_text), "", "</details>", ""]
        out.append(r.answer_text)
    return out


def _grade_line(g) -> str:
    seen = f" (read {_one_line(g.extracted)[:80]!r})" if g.extracted is not None else ""
    return f"Grade: {GRADE_ICONS.get(g.status, '')} {g.status}{seen}"


def _verdict_table(v: Verdict) -> list[str]:
    lines = ["| " + " | ".join(VERDICT_COLUMNS) + " |", "|" + "---|" * len(VERDICT_COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in verdict_rows(v)]
    if v.budget_curve:
        lines += ["", "Thinking budget sweep (reasoning lane):", "", "| " + " | ".join(BUDGET_COLUMNS) + " |",
                  "|" + "---|" * len(BUDGET_COLUMNS)]
        lines += ["| " + " | ".join(r) + " |" for r in budget_rows(v)]
    return lines
