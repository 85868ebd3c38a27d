"""The notebook's rows: one compact line per cell, and the messages that keep the page's list in step.

The page draws the rows itself (static/notebook.js, only those on screen); the server sends it
messages, each a JSON object with an "op" and the tab's next "seq" (Gate.next_seq):
- "reset": the whole list of a session (on opening it), and which cell is open;
- "insert" (a row at a position), "move" (a cell to a position), "delete" (a cell): one structural
  change, stated absolutely so that applying it twice changes nothing;
- "rows": partial rows merged by id (a status, a grade, a prompt's first line);
- "open": which cell the open-cell view shows (None: none).
A gap in "seq" (a message the page never saw: a tab in the background can drop some) makes the page
ask for a reset. Plain Python: prompts and answers never become HTML here (the page sets them as text).
"""

from __future__ import annotations

import json

from playground.evaluation.verdict import has_grader, lane_grade
from playground.lanes import LANES

ROW_TEXT_CHARS = 160  # of a prompt's (or note's) first line: a row is one line on screen


def first_line(text: str | None) -> str:
    """The first line with text in it, cut to ROW_TEXT_CHARS."""
    line = next((x.strip() for x in (text or "").splitlines() if x.strip()), "")
    return line if len(line) <= ROW_TEXT_CHARS else line[: ROW_TEXT_CHARS - 1] + "…"


def _seconds(metrics) -> float | None:
    v = (metrics or {}).get("total_s") if isinstance(metrics, dict) else None
    return round(float(v), 2) if isinstance(v, int | float) and not isinstance(v, bool) else None


def lane_row(cell, run) -> dict:
    """One lane of a stored run as its row shows it: status, tokens, seconds, grade."""
    g = lane_grade(cell, run).status if has_grader(cell) else None
    return {"st": run.status, "tok": run.generated_tokens, "s": _seconds(run.metrics), "g": g}


def live_lane(result) -> dict:
    """One lane of a run in flight (an engine LaneResult): what the row shows while it streams."""
    n = len(result.token_times)
    s = round(result.token_times[-1] - result.t_start, 2) if n else None
    return {"st": result.status, "tok": n, "s": s, "g": None}


def row_of(cell) -> dict:
    """A cell's row from the store (a CellFull): its latest execution, as the open cell shows it."""
    row = {"id": cell.id, "kind": cell.kind, "text": first_line(cell.note if cell.kind == "note" else cell.prompt),
           "graded": has_grader(cell), "lanes": None}
    ex = cell.latest if cell.kind == "prompt" else None
    if ex is not None:
        row["lanes"] = [lane_row(cell, ex.runs[lane]) if lane in ex.runs else None for lane in LANES]
        row["turns"] = ex.turn  # of the conversation the latest run belongs to (the page shows it past 1)
    return row


def queued_lanes() -> list[dict]:
    return [{"st": "queued", "tok": 0, "s": None, "g": None} for _ in LANES]


def message(seq: int, op: str, **fields) -> str:
    return json.dumps({"seq": seq, "op": op, **fields}, ensure_ascii=False, separators=(",", ":"))


def reset(seq: int, session_id: str | None, cells, open_id: str | None) -> str:
    return message(seq, "reset", session=session_id, rows=[row_of(c) for c in cells], open=open_id)


def insert(seq: int, position: int, row: dict, open_id: str | None = None) -> str:
    return message(seq, "insert", at=position, row=row, open=open_id)


def move(seq: int, cell_id: str, position: int) -> str:
    return message(seq, "move", id=cell_id, to=position)


def delete(seq: int, cell_id: str, open_id: str | None) -> str:
    return message(seq, "delete", id=cell_id, open=open_id)


def patch(seq: int, rows: list[dict]) -> str:
    return message(seq, "rows", rows=rows)


def opened(seq: int, cell_id: str | None) -> str:
    return message(seq, "open", open=cell_id)
