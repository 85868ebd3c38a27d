"""Running notebook cells: everything generated is saved, as it happens and at the end."""

from __future__ import annotations

import pytest

from playground.app.notebook import Notebook
from playground.app.service import Playground
from playground.errors import InvalidInput
from playground.lanes import LaneSettings
from playground.store import NotFound, open_store

OWNER = "owner-a"


@pytest.fixture(scope="module")
def pg(loaded_nf4):
    p = Playground()
    from playground.backends.local.engine import Engine

    p.loaded, p.backend = loaded_nf4, Engine(loaded_nf4)
    return p


@pytest.fixture
def nb(pg, tmp_path):
    store = open_store(tmp_path / "nb.db")
    yield Notebook(pg, store)
    store.close()


def lanes(n=16, **rsn):
    return {"standard": LaneSettings(max_new_tokens=n), "reasoning": LaneSettings(max_new_tokens=n, **rsn)}


def new_cell(nb, prompt="What is 2 + 2?"):
    s = nb.store.create_session(OWNER, "t")
    return s, nb.store.add_cell(OWNER, s.id, prompt=prompt)


def test_a_run_is_saved_with_text_timings_and_metrics(nb):
    session, cell = new_cell(nb)
    items = list(nb.run_cell(OWNER, cell.id, "k", "What is 2 + 2?", "Be brief.", lanes()))
    _views, run = items[-1]
    saved = nb.store.get_session(OWNER, session.id).cells[0]
    assert saved.prompt == "What is 2 + 2?" and saved.system_prompt == "Be brief."
    assert saved.settings["reasoning"]["max_new_tokens"] == 16
    ex = saved.latest
    assert ex.number == 1 and set(ex.runs) == {"standard", "reasoning"}
    for lane, stored in ex.runs.items():
        live = run.results[lane]
        assert stored.status == "done" and stored.raw_text == live.text
        assert list(stored.token_ids) == live.token_ids
        assert stored.token_times == pytest.approx([t - live.t_start for t in live.token_times], abs=1e-5)
        assert stored.metrics["generated_tokens"] == len(live.token_ids)
        assert stored.record["model_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_rerun_keeps_earlier_versions(nb):
    session, cell = new_cell(nb)
    list(nb.run_cell(OWNER, cell.id, "k", "Name a colour.", None, lanes(8)))
    list(nb.run_cell(OWNER, cell.id, "k", "Name an animal.", None, lanes(8)))
    saved = nb.store.get_session(OWNER, session.id).cells[0]
    assert [e.number for e in saved.executions] == [1, 2]
    assert saved.prompt == "Name an animal."


def test_consumer_leaving_mid_run_saves_a_stopped_run(nb):
    session, cell = new_cell(nb, "Write a long story.")
    gen = nb.run_cell(OWNER, cell.id, "k", "Write a long story.", None,
                      {"standard": LaneSettings(max_new_tokens=300, min_new_tokens=300),
                       "reasoning": LaneSettings(max_new_tokens=300, min_new_tokens=300)})
    for _views, run in gen:
        if len(run.results["standard"].token_ids) >= 4:
            break
    gen.close()  # what gradio does when the tab closes or the event is cancelled
    ex = nb.store.get_session(OWNER, session.id).cells[0].latest
    assert ex.runs["standard"].generated_tokens >= 4
    for stored in ex.runs.values():
        assert stored.status == "stopped" and 1 <= stored.generated_tokens < 300 and stored.raw_text


def test_invalid_input_writes_nothing(nb):
    session, cell = new_cell(nb)
    with pytest.raises(InvalidInput):
        next(nb.run_cell(OWNER, cell.id, "k", "   ", None, lanes()))
    saved = nb.store.get_session(OWNER, session.id).cells[0]
    assert saved.executions == () and saved.prompt == "What is 2 + 2?"


def test_another_owner_cannot_run_my_cell(nb):
    _session, cell = new_cell(nb)
    with pytest.raises(NotFound):
        next(nb.run_cell("intruder", cell.id, "k", "hi", None, lanes()))


def test_generation_error_is_saved_as_error(nb, pg):
    session, cell = new_cell(nb)
    layer = pg.backend.loaded.model.model.layers[0]
    handle = layer.register_forward_hook(lambda *a: (_ for _ in ()).throw(RuntimeError("injected failure")))
    try:
        list(nb.run_cell(OWNER, cell.id, "k", "hi", None, lanes()))
    finally:
        handle.remove()
    ex = nb.store.get_session(OWNER, session.id).cells[0].latest
    assert {r.status for r in ex.runs.values()} == {"error"}
    assert "injected failure" in ex.runs["standard"].error
