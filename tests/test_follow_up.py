"""A follow-up turn through the app on the real embedded model: both lanes in one pass, each with its
own history, the exact prompts stored; bad input refused before anything is saved."""

from __future__ import annotations

import pytest

from playground.app.notebook import Notebook
from playground.app.service import Playground
from playground.errors import InvalidInput
from playground.lanes import LaneSettings
from playground.prompting.conversation import Turn
from playground.prompting.prompts import build_prompt
from playground.store import NotFound, open_store

OWNER = "owner-a"
FIRST, SECOND = "What is 2 + 2?", "And times ten?"


@pytest.fixture(scope="module")
def pg(loaded_nf4):
    from playground.backends.local.engine import Engine

    p = Playground()
    p.loaded, p.backend = loaded_nf4, Engine(loaded_nf4)
    return p


@pytest.fixture
def nb(pg, tmp_path):
    store = open_store(tmp_path / "nb.db")
    yield Notebook(pg, store)
    store.close()


def lanes(n=12):
    return {"standard": LaneSettings(max_new_tokens=n, seed=1), "reasoning": LaneSettings(max_new_tokens=n, seed=2)}


def ran_cell(nb):
    s = nb.store.create_session(OWNER, "t")
    cell = nb.store.add_cell(OWNER, s.id, prompt=FIRST)
    list(nb.run_cell(OWNER, cell.id, "k", FIRST, "Be brief.", lanes()))
    return s, cell


def executions(nb, session_id):
    return nb.store.get_session(OWNER, session_id).cells[0].executions


def test_two_turns_each_lane_continuing_its_own_history(nb, pg):
    session, cell = ran_cell(nb)
    [first] = executions(nb, session.id)
    items = list(nb.follow_up(OWNER, cell.id, "k", SECOND, lanes()))
    _views, run = items[-1]
    assert len(run.prompts) == 2  # both lanes in one run: one batched pass
    full = nb.store.get_session(OWNER, session.id).cells[0]
    assert [(e.number, e.turn, e.parent) for e in full.turns] == [(1, 1, None), (2, 2, 1)]
    assert [e.prompt(full.prompt) for e in full.turns] == [FIRST, SECOND]
    second = full.turns[-1]
    tok = pg.backend.tokenizer
    for lane, stored in second.runs.items():
        own = first.runs[lane]
        other = first.runs["reasoning" if lane == "standard" else "standard"]
        # The stored record holds the exact text this lane was given, and it is what the app renders
        # for this lane's own history (its own earlier answer, with the cell's system prompt).
        given = stored.record["prompts"][lane]["text"]
        expected = build_prompt(tok, pg.backend.style, lane, SECOND, "Be brief.",
                                (Turn(FIRST, own.answer_text, own.reasoning_text),))
        assert given == expected.text
        assert stored.prompt_tokens == len(expected.input_ids) > first.runs[lane].prompt_tokens
        if own.answer_text.strip() and other.answer_text.strip() not in own.answer_text:
            assert other.answer_text.strip() not in given
        assert stored.status == "done" and stored.turn == 2 and stored.record["keep_reasoning"] is False
    # A second follow-up continues the first one.
    list(nb.follow_up(OWNER, cell.id, "k", "Thanks.", lanes()))
    full = nb.store.get_session(OWNER, session.id).cells[0]
    assert [e.turn for e in full.turns] == [1, 2, 3]


def test_bad_follow_ups_are_refused_and_nothing_is_saved(nb, pg, monkeypatch):
    s = nb.store.create_session(OWNER, "t")
    never = nb.store.add_cell(OWNER, s.id, prompt=FIRST)
    with pytest.raises(InvalidInput, match="not run yet"):
        list(nb.follow_up(OWNER, never.id, "k", SECOND, lanes()))
    session, cell = ran_cell(nb)
    with pytest.raises(NotFound, match="No such cell"):
        list(nb.follow_up("someone-else", cell.id, "k", SECOND, lanes()))
    with pytest.raises(InvalidInput, match="empty"):
        list(nb.follow_up(OWNER, cell.id, "k", "   ", lanes()))
    with pytest.raises(InvalidInput, match="max_prompt_chars"):
        list(nb.follow_up(OWNER, cell.id, "k", "x" * (pg.settings.max_prompt_chars + 1), lanes()))
    # Over the context: PLAYGROUND_MAX_CONTEXT_TOKENS lower than the model's max positions.
    monkeypatch.setattr(pg.settings, "max_context_tokens", 40)
    with pytest.raises(InvalidInput, match=r"prompt has \d+ tokens.*context limit of 40 tokens "
                                           r"\(PLAYGROUND_MAX_CONTEXT_TOKENS\)"):
        list(nb.follow_up(OWNER, cell.id, "k", SECOND, lanes()))
    monkeypatch.setattr(pg.settings, "max_context_tokens", 0)
    # The model's own max positions, when nothing lower is set.
    positions = pg.backend.loaded.model.config.max_position_embeddings
    with pytest.raises(InvalidInput, match=f"{positions:,} tokens \\(the model's max positions\\)"):
        list(nb.follow_up(OWNER, cell.id, "k", SECOND, {
            lane: LaneSettings(max_new_tokens=positions) for lane in ("standard", "reasoning")}))
    assert len(executions(nb, session.id)) == 1 and executions(nb, s.id) == ()
