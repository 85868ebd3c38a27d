"""Pure functions from domain records to what the page shows (strings and figures).

Model output and prompts are untrusted: everything here escapes or sanitizes before it reaches
HTML, and <think> tags never reach gr.Markdown (which would silently drop them).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from playground.evaluation.charts import LaneSeries, inter_token_latency, token_split, tokens_over_time
from playground.evaluation.metrics import metrics_line
from playground.lanes import LANE_TITLES, LaneSettings

STATUS_ICONS = {"queued": "…", "running": "▸", "done": "✓", "stopped": "■", "error": "✗", "interrupted": "✗",
                "empty": ""}
SETTING_FIELDS = ("max_new_tokens", "temperature", "top_p", "top_k", "seed")

EXAMPLES = {
    "Arithmetic": "A shop sells pencils at 3 for 45 cents. How much do 14 pencils cost?",
    "Logic puzzle": "Alice is older than Bob. Carol is younger than Bob. Dave is older than Alice. "
                    "Who is the youngest, and who is the oldest?",
    "Coding task": "Write a Python function that returns the n-th Fibonacci number iteratively.",
}


@dataclass(frozen=True)
class LaneShown:
    """One lane as the page shows it, live or from the store."""

    status: str
    reasoning: str
    answer: str
    metrics: dict | None
    error: str | None = None


def status_line(lane: str, shown: LaneShown) -> str:
    title = LANE_TITLES.get(lane, lane)
    line = f"**{title}** {STATUS_ICONS.get(shown.status, '')} {shown.status}"
    if metrics := metrics_line(shown.metrics):
        line += " · " + html.escape(metrics, quote=False)
    if shown.error:
        line += f"\n\n⚠️ {inert_md(shown.error)}"
    return line


def reasoning_html(text: str) -> str:
    """The thinking trace, verbatim and escaped (gr.Markdown would drop <think> and render HTML).

    Only the escaped text, laid out by the component's CSS (.reasoning-trace): a value that grows only
    at its end reaches the browser as appends, since gradio sends each streamed update as a diff
    against the last. A closing tag after the text made every update re-send the whole trace."""
    if not text:
        return "<div class='trace-empty'>no reasoning</div>"
    return html.escape(text)


# Fenced code blocks and inline code spans, which the Markdown renderer already shows as text. Only
# display depends on finding them exactly: gr.Markdown's sanitizer and the page's CSP (server.py) stay
# the guards when this regex and the renderer disagree.
_CODE = re.compile(r"^ {0,3}(?P<fence>(?P<fc>[`~])(?P=fc){2,})[^\n`]*\n.*?(?:^ {0,3}(?P=fence)(?P=fc)*[ \t]*$|\Z)"
                   r"|(?<![\\`])(?P<ticks>`+)(?!`).+?(?<!`)(?P=ticks)(?!`)", re.S | re.M)


def inert_md(text: str) -> str:
    """Untrusted text (model output) as Markdown whose HTML shows as text: outside code, "<" becomes
    an entity (so <script>, <img onerror> and think tags read as written instead of being dropped by
    the sanitizer) and "![" is escaped (an image would make the browser call the image's host)."""
    out, pos = [], 0
    for m in _CODE.finditer(text):
        out += [_inert(text[pos:m.start()]), m.group(0)]
        pos = m.end()
    out.append(_inert(text[pos:]))
    return "".join(out)


def _inert(text: str) -> str:
    return text.replace("<", "&lt;").replace("![", "!\\[")


def answer_md(text: str) -> str:
    """Answers render as Markdown, with any HTML in them shown as text (inert_md)."""
    return inert_md(text)


def shown_from_run(run) -> LaneShown:
    """A stored RunInfo as shown."""
    return LaneShown(run.status, run.reasoning_text, run.answer_text, run.metrics, run.error)


def series_from_run(run) -> LaneSeries:
    return LaneSeries.from_stored(run.lane, list(run.token_times), run.token_kinds, run.forced)


def figures(series: list[LaneSeries], key: str):
    """The three per-cell charts, keyed so a re-render keeps the user's zoom."""
    return (tokens_over_time(series, uirevision=key), inter_token_latency(series, uirevision=key),
            token_split(series, uirevision=key))


def settings_values(saved: dict | None, default: LaneSettings) -> dict:
    """A lane's settings for the form: the cell's saved ones, else the model's recommendation."""
    base = default.to_dict()
    if saved:
        base.update({k: v for k, v in saved.items() if k in base})
    return base
