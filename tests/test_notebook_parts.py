"""The notebook page's plain parts, without a browser: the rows the page draws (from a real store), the
gate that keeps writes to the open-cell view in order, and the charts' decimation for drawing."""

from __future__ import annotations

import json
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from playground.evaluation.charts import LaneSeries, decimate, inter_token_latency, tokens_over_time
from playground.store import open_store
from playground.ui import rows
from playground.ui.gate import Gate, Gates

OWNER = "rows-owner"


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "rows.db") as s:
        yield s


def finish(store, run_id: str, answer: str, tokens: int, status: str = "done") -> None:
    store.finish_run(run_id, status=status, raw_text=answer, reasoning_text="", answer_text=answer,
                     token_ids=list(range(tokens)), token_times=[0.1 * (i + 1) for i in range(tokens)],
                     token_kinds="a" * tokens, forced="0" * tokens, prompt_tokens=3,
                     metrics={"total_s": 0.1 * tokens, "generated_tokens": tokens}, finish_reason="stop", error=None)


# --- rows -------------------------------------------------------------------------------------------
def test_a_row_is_the_first_line_and_each_lanes_latest_status_tokens_seconds_and_grade(store):
    sid = store.create_session(OWNER).id
    cell = store.add_cell(OWNER, sid, prompt="\n  What is 2+2?  \nShow your work.", expected="4",
                          grader={"kind": "numeric"})
    assert rows.row_of(store.get_cell_full(OWNER, cell.id)) == {
        "id": cell.id, "kind": "prompt", "text": "What is 2+2?", "graded": True, "lanes": None}
    ids = store.start_execution(OWNER, cell.id, {"standard": {}, "reasoning": {}}, {})
    finish(store, ids["standard"], "It is 4.", 3)
    finish(store, ids["reasoning"], "It is 5.", 7, status="stopped")
    row = rows.row_of(store.get_cell_full(OWNER, cell.id))
    assert row["lanes"] == [{"st": "done", "tok": 3, "s": 0.3, "g": "pass"},
                            {"st": "stopped", "tok": 7, "s": 0.7, "g": "ungraded"}]


def test_a_note_row_shows_its_first_line_and_no_lanes(store):
    sid = store.create_session(OWNER).id
    note = store.add_cell(OWNER, sid, kind="note", note="# Findings\nmore")
    assert rows.row_of(store.get_cell_full(OWNER, note.id))["text"] == "# Findings"


@given(st.text(max_size=400))
def test_a_first_line_is_one_line_of_at_most_row_text_chars(text):
    line = rows.first_line(text)
    assert "\n" not in line and "\r" not in line and len(line) <= rows.ROW_TEXT_CHARS
    assert line == "" or line.rstrip("…") in text


def test_messages_carry_their_seq_and_untrusted_text_as_data():
    hostile = {"id": "c1", "kind": "prompt", "text": "<img src=x onerror=alert(1)>", "graded": False, "lanes": None}
    m = json.loads(rows.insert(7, 3, hostile, "c1"))
    assert m == {"seq": 7, "op": "insert", "at": 3, "row": hostile, "open": "c1"}
    assert json.loads(rows.move(8, "c1", 0)) == {"seq": 8, "op": "move", "id": "c1", "to": 0}
    assert json.loads(rows.delete(9, "c1", None)) == {"seq": 9, "op": "delete", "id": "c1", "open": None}
    assert json.loads(rows.patch(10, [{"id": "c1", "text": "x"}]))["rows"] == [{"id": "c1", "text": "x"}]


def test_the_store_reads_one_cell_with_its_executions_as_the_session_does(store):
    sid = store.create_session(OWNER).id
    cells = [store.add_cell(OWNER, sid, prompt=f"p{i}") for i in range(3)]
    for _ in range(2):
        finish(store, store.start_execution(OWNER, cells[1].id, {"standard": {}}, {})["standard"], "a", 2)
    assert store.get_cell_full(OWNER, cells[1].id) == store.get_session(OWNER, sid).cells[1]
    with pytest.raises(Exception, match="No such cell"):
        store.get_cell_full("someone-else", cells[1].id)


# --- the gate -----------------------------------------------------------------------------------------
def test_opening_waits_for_a_write_in_progress_and_then_that_cell_no_longer_writes():
    gate = Gate()
    with gate.opening("a"):
        pass
    entered, released = [], []

    def slow_write():
        with gate.writing("a") as ok:
            assert ok
            time.sleep(0.3)
            released.append(time.monotonic())

    writer = threading.Thread(target=slow_write)
    writer.start()
    time.sleep(0.05)
    with gate.opening("b"):
        entered.append(time.monotonic())
    writer.join()
    assert entered[0] >= released[0]
    with gate.writing("a") as ok:
        assert not ok  # the view shows b now
    with gate.writing("b") as ok:
        assert ok


def test_a_stream_never_waits_for_the_page():
    gate = Gate()
    hold, done = threading.Event(), threading.Event()

    def opener():
        with gate.opening("x"):
            hold.set()
            done.wait(5)

    t = threading.Thread(target=opener)
    t.start()
    hold.wait(5)
    started = time.monotonic()
    with gate.writing("x") as ok:
        assert not ok
    assert time.monotonic() - started < 0.1
    done.set()
    t.join()


def test_a_run_asked_for_is_followed_until_settled_even_when_it_never_starts():
    gate = Gate()
    gate.asked("c")
    assert gate.following()
    gate.ended("c")  # refused before it started: its row must still be settled
    assert gate.take_finished() == ["c"] and not gate.following()
    gate.asked("d")
    gate.started("d", object())
    assert gate.live_runs().keys() == {"d"} and not gate.pending
    gate.ended("d")
    assert not gate.live_runs() and gate.take_finished() == ["d"]


def test_unchanged_read_only_values_are_dropped_until_someone_else_writes():
    gate, title, prompt = Gate(), object(), object()
    with gate.opening("a"):
        assert gate.unchanged_dropped({title: "**Cell 1**", prompt: "p"}, {title}) == {title: "**Cell 1**", prompt: "p"}
    with gate.opening("b"):
        assert gate.unchanged_dropped({title: "**Cell 1**", prompt: "p"}, {title}) == {prompt: "p"}
    with gate.writing("b") as ok:
        assert ok  # a stream wrote into the view: what it shows is no longer known
    with gate.opening("c"):
        assert gate.unchanged_dropped({title: "**Cell 1**"}, {title}) == {title: "**Cell 1**"}


def test_gates_are_per_tab_and_bounded():
    gates = Gates(max_tabs=2)
    tab = type("Request", (), {})
    a, b, c = tab(), tab(), tab()
    a.session_hash, b.session_hash, c.session_hash = "a", "b", "c"
    first = gates.of(a)
    assert gates.of(a) is first and gates.of(b) is not first
    gates.of(c)  # the oldest tab's gate is forgotten
    assert gates.of(a) is not first


# --- charts drawn with bounded points -------------------------------------------------------------------
@given(st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), min_size=1, max_size=3000), st.integers(20, 400))
def test_decimate_keeps_the_ends_the_extremes_and_the_breaks_within_the_limit(ys, limit):
    xs = [None if y is None else i for i, y in enumerate(ys)]
    ys = [None if x is None else y for x, y in zip(xs, ys)]
    dx, dy = decimate(xs, ys, limit)
    runs = [r for r in " ".join("x" if x is not None else "|" for x in xs).split("|") if r.strip()]
    assert len(dx) == len(dy) <= max(len(xs), limit + 3 * (len(runs) + 1))
    assert dx.count(None) == xs.count(None)  # every break in the line stays a break
    values = [y for y in ys if y is not None]
    if values:
        assert max(y for y in dy if y is not None) == max(values)
        assert min(y for y in dy if y is not None) == min(values)
        assert next(x for x in dx if x is not None) == next(x for x in xs if x is not None)
        assert next(x for x in reversed(dx) if x is not None) == next(x for x in reversed(xs) if x is not None)


def test_a_16000_token_lane_is_drawn_with_bounded_points_and_counted_whole():
    n = 16_000
    s = LaneSeries("reasoning", tuple(0.006 * i for i in range(n)), ("reasoning",) * 15_000 + ("answer",) * 1_000)
    for fig in (tokens_over_time([s], max_points=150), inter_token_latency([s], max_points=150)):
        assert sum(len(t.x) for t in fig.data) <= 2 * 160 + 4
    tokens = tokens_over_time([s], max_points=150)
    assert max(y for t in tokens.data for y in t.y if y is not None) == n


# --- the page's handlers and the public API ---------------------------------------------------------
def test_the_page_leaves_the_public_endpoint_names_alone(store):
    """A private page handler still takes its function's name: one called `run` would push /run to /run_1
    (test_server checks the same through a served page; this one needs no model)."""
    import re

    from playground.app.service import Playground
    from playground.config import Settings
    from playground.ui.app import create_app

    names = set(create_app(Playground(Settings()), store, b"k" * 32).get_api_info()["named_endpoints"])
    assert {"/run", "/stop", "/sessions", "/new_session", "/get_session", "/add_cell", "/run_cell", "/stop_cell",
            "/plan", "/load"} <= names
    assert not [n for n in names if re.search(r"_\d+$", n)], names


def test_no_event_writes_the_open_cell_view_as_a_whole(store):
    """On every status message of every event, gradio's page re-reads every component that any event ever
    wrote, a layout's whole subtree included: an event writing the view's Column made each click walk its
    forty components four times. What the view shows is a class the list's script sets (notebook.js)."""
    from gradio.blocks import BlockContext

    from playground.app.service import Playground
    from playground.config import Settings
    from playground.ui.app import create_app

    demo = create_app(Playground(Settings()), store, b"k" * 32)

    def size(block) -> int:
        return 1 + sum(size(c) for c in getattr(block, "children", []))

    written = {o._id: o for fn in demo.fns.values() for o in fn.outputs}
    assert "open-cell" not in {o.elem_id for o in written.values()}
    layouts = {getattr(o, "elem_id", None) or type(o).__name__: size(o) for o in written.values()
               if isinstance(o, BlockContext) and size(o) > 1}
    assert layouts and max(layouts.values()) <= 16, layouts  # the model panel's local/remote groups are the largest
