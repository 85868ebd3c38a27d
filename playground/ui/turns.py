"""A cell's conversation as the open-cell view shows it, as plain functions (no gradio).

Each lane shows its earlier turns above the live one as ONE HTML value (a block per turn: what the
user asked, that lane's answer, its metrics; the reasoning lane's thinking folded in a <details>),
so a conversation of any length costs the page one component per lane. Prompts and model output are
untrusted: every piece of text here is escaped, none of it is ever read as HTML or Markdown.
"""

from __future__ import annotations

import html

from .rows import lane_row

TURN_PREVIEW_CHARS = 20_000  # of one earlier turn's answer or trace: the live turn below shows its own in full


def _text(text: str | None) -> str:
    """Untrusted text as inert HTML (quotes too: nothing can leave the element it sits in)."""
    text = text or ""
    if len(text) > TURN_PREVIEW_CHARS:
        text = text[:TURN_PREVIEW_CHARS] + "…"
    return html.escape(text, quote=True)


def turn_metrics(cell, run) -> str:
    """A lane's numbers for one turn: status, tokens, seconds (and grade), as the row shows them."""
    r = lane_row(cell, run)
    parts = [r["st"], f"{r['tok']} tok"]
    if r["s"] is not None:
        parts.append(f"{r['s']:.1f} s")
    if r["g"]:
        parts.append(r["g"])
    return " · ".join(html.escape(str(p)) for p in parts)


def turn_block(cell, ex, lane: str) -> str:
    """One earlier turn of one lane: the prompt, the lane's metrics, its folded thinking, its answer."""
    run = ex.runs.get(lane)
    head = f"<div class='turn-head'>Turn {int(ex.turn)}"
    if run is None:
        return f"<div class='turn'>{head} · this lane did not run</div><div class='turn-prompt'>" \
               f"{_text(ex.prompt(cell.prompt))}</div></div>"
    head += f" · {turn_metrics(cell, run)}</div>"
    thinking = ""
    if run.reasoning_text:
        thinking = (f"<details class='turn-reasoning'><summary>Reasoning · {int(run.reasoning_tokens)} tok</summary>"
                    f"<div class='turn-trace'>{_text(run.reasoning_text)}</div></details>")
    return (f"<div class='turn'>{head}<div class='turn-prompt'>{_text(ex.prompt(cell.prompt))}</div>{thinking}"
            f"<div class='turn-answer'>{_text(run.answer_text)}</div></div>")


def lane_history(cell, earlier, lane: str, asking: str | None) -> str:
    """The turns before the shown one (`earlier`: executions, turn 1 first) and, when there are any, what
    the user asked at the shown turn (`asking`): "" for a single-turn cell."""
    if not earlier:
        return ""
    blocks = "".join(turn_block(cell, ex, lane) for ex in earlier)
    now = f"<div class='turn-now'><div class='turn-head'>Turn {len(earlier) + 1}</div>" \
          f"<div class='turn-prompt'>{_text(asking)}</div></div>" if asking is not None else ""
    return f"<div class='turns'>{blocks}{now}</div>"


def shown_chain(cell, number: int | None):
    """(the turns before execution `number` (default the latest), the prompt asked at it); ((), None) when
    the cell never ran."""
    chain = cell.conversation(number)
    if not chain:
        return (), None
    return chain[:-1], chain[-1].prompt(cell.prompt)


def version_label(ex) -> str:
    """The version picker's name of an execution: its number, and its turn when it continues one."""
    return f"run {ex.number}" + (f" · turn {ex.turn}" if ex.turn > 1 else "")
