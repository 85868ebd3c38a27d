"""A cell's conversation as the open-cell view shows it (playground/ui/turns.py), its row and the session
summary: plain functions over a real store's records, hostile text included."""

from __future__ import annotations

import dataclasses
import html
from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from playground.store import open_store
from playground.ui import rows, turns
from playground.ui.insights import session_turns, summary_cells, summary_text

OWNER = "turns-owner"
LANES = {"standard": {}, "reasoning": {}}
ALLOWED = {"div": {"class"}, "details": {"class"}, "summary": set()}


def finish(store, run_id: str, answer: str, reasoning: str = "", tokens: int = 4) -> None:
    store.finish_run(run_id, status="done", raw_text=reasoning + answer, reasoning_text=reasoning, answer_text=answer,
                     token_ids=list(range(tokens)), token_times=[0.5 * (i + 1) for i in range(tokens)],
                     token_kinds="a" * tokens, forced="0" * tokens, prompt_tokens=3,
                     metrics={"total_s": 0.5 * tokens, "generated_tokens": tokens}, finish_reason="stop", error=None)


def turn(store, cell_id: str, n: int, parent: int | None, prompt: str | None) -> None:
    ids = store.start_execution(OWNER, cell_id, LANES, {}, parent=parent, prompt=prompt)
    finish(store, ids["standard"], f"standard answer {n}", tokens=n + 2)
    finish(store, ids["reasoning"], f"reasoning answer {n}", reasoning=f"thinking {n}", tokens=2 * n + 2)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with open_store(tmp_path_factory.mktemp("turns") / "turns.db") as s:
        yield s


@pytest.fixture(scope="module")
def conversation(store):
    """A cell of three turns (executions 1 → 2 → 3), and a branch off turn 1 (execution 4), the latest."""
    sid = store.create_session(OWNER, "turns").id
    cell = store.add_cell(OWNER, sid, prompt="First question?")
    turn(store, cell.id, 1, None, "First question?")
    turn(store, cell.id, 2, 1, "Second question?")
    turn(store, cell.id, 3, 2, "Third question?")
    turn(store, cell.id, 4, 1, "Another second question?")
    return store.get_cell_full(OWNER, cell.id)


class Tags(HTMLParser):
    """Every element and attribute a string of HTML makes, and its text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parsed(markup: str) -> Tags:
    p = Tags()
    p.feed(markup)
    p.close()
    return p


def test_a_single_turn_cell_has_no_earlier_turns(store):
    sid = store.create_session(OWNER, "one").id
    cell = store.add_cell(OWNER, sid, prompt="Only once?")
    assert turns.shown_chain(store.get_cell_full(OWNER, cell.id), None) == ((), None)  # never ran
    turn(store, cell.id, 1, None, "Only once?")
    full = store.get_cell_full(OWNER, cell.id)
    earlier, asking = turns.shown_chain(full, None)
    assert earlier == () and asking == "Only once?"
    assert turns.lane_history(full, earlier, "standard", asking) == ""
    assert turns.version_label(full.latest) == "run 1"
    assert rows.row_of(full)["turns"] == 1


def test_each_lane_shows_its_own_earlier_turns_with_their_metrics_and_folded_thinking(conversation):
    earlier, asking = turns.shown_chain(conversation, 3)
    assert [e.number for e in earlier] == [1, 2] and asking == "Third question?"
    std = turns.lane_history(conversation, earlier, "standard", asking)
    rsn = turns.lane_history(conversation, earlier, "reasoning", asking)
    for lane, markup in (("standard", std), ("reasoning", rsn)):
        p = parsed(markup)
        assert [a["class"] for t, a in p.tags if t == "div" and a.get("class") in ("turn", "turn-now")] == \
            ["turn", "turn", "turn-now"]
        text = "".join(p.text)
        assert text.index("First question?") < text.index(f"{lane} answer 1") < text.index("Second question?") \
            < text.index(f"{lane} answer 2") < text.index("Third question?")
        assert "answer 3" not in text  # the shown turn's own answer is the live lanes', below
    assert "reasoning answer" not in std and "thinking" not in std  # never the other lane's
    assert "standard answer" not in rsn
    # Metrics per turn and lane: tokens and seconds, as the row shows them.
    assert "Turn 1 · done · 3 tok · 1.5 s" in std and "Turn 2 · done · 6 tok · 3.0 s" in rsn
    folded = [t for t, a in parsed(rsn).tags if t == "details"]
    assert len(folded) == 2 and "<summary>Reasoning" in rsn and "thinking 2" in rsn


def test_a_branch_shows_the_turns_it_continues_and_the_latest_is_the_default(conversation):
    earlier, asking = turns.shown_chain(conversation, None)  # execution 4, a second turn off turn 1
    assert [e.number for e in earlier] == [1] and asking == "Another second question?"
    assert [turns.version_label(e) for e in conversation.executions] == [
        "run 1", "run 2 · turn 2", "run 3 · turn 3", "run 4 · turn 2"]
    assert rows.row_of(conversation)["turns"] == 2


def test_the_session_summary_counts_turns_beside_cells(store, conversation):
    session = store.get_session(OWNER, conversation.session_id)
    assert session_turns(session) == 2  # the latest run's conversation: turn 1, then the branch's turn 2
    line = summary_text(summary_cells(session), session_turns(session))
    assert line.startswith("1 cell · 2 turns run")
    assert "turns" not in summary_text(summary_cells(session), 1)  # no follow-up: cells only


def test_a_long_earlier_answer_is_cut_in_its_block(conversation):
    ex = conversation.executions[0]
    long = dataclasses.replace(ex, runs={lane: dataclasses.replace(r, answer_text="y" * (turns.TURN_PREVIEW_CHARS + 50))
                                         for lane, r in ex.runs.items()})
    text = "".join(parsed(turns.turn_block(conversation, long, "standard")).text)
    assert "y" * turns.TURN_PREVIEW_CHARS + "…" in text and "y" * (turns.TURN_PREVIEW_CHARS + 1) not in text


@given(st.text(max_size=200), st.text(max_size=200), st.text(max_size=200))
def test_untrusted_text_makes_no_element_and_reads_as_written(conversation, prompt, answer, thinking):
    hostile = [p for p in (prompt, answer, thinking) if p]
    ex = conversation.executions[0]
    runs = {lane: dataclasses.replace(r, turn_prompt=prompt, answer_text=answer,
                                      reasoning_text=thinking if lane == "reasoning" else "")
            for lane, r in ex.runs.items()}
    earlier = (dataclasses.replace(ex, runs=runs),)
    markup = turns.lane_history(conversation, earlier, "reasoning", prompt)
    p = parsed(markup)
    for tag, attrs in p.tags:  # only the blocks' own elements, with their own attributes
        assert tag in ALLOWED and set(attrs) <= ALLOWED[tag], (tag, attrs)
    text = "".join(p.text)
    for piece in hostile:
        # The parser reads "\r" as a line break, as a browser would; the text is otherwise intact.
        assert piece.replace("\r\n", "\n").replace("\r", "\n") in text.replace("\r\n", "\n").replace("\r", "\n")
    assert markup.count("<div") == markup.count("</div>")


def test_the_row_and_label_of_a_follow_up_read_its_turn(conversation):
    third = conversation.conversation(3)[-1]
    assert third.turn == 3 and turns.version_label(third) == "run 3 · turn 3"
    assert html.escape("<b>") in turns.lane_history(
        conversation, conversation.conversation(2), "standard", "<b>")
