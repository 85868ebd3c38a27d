"""A follow-up in the notebook page, in the real Chromium against the real server and the real embedded model:
the next turn streams into both lanes of the open cell, the earlier turn stays above it in each lane, the
store links the turns, and a hostile follow-up reads as the text it is."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.common import wait_status
from bench.store import session_record
from playground.store import open_store
from playground.web.identity import COOKIE_NAME, load_secret, new_owner_id, sign

pytestmark = pytest.mark.timeout(600)  # the first test also waits for the shared server and its model

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
VIEW = "#open-cell"
HOSTILE = "And times ten? <img src=x onerror=\"window.__pwned=1\"> <script>window.__pwned=2</script>"
SHORT = {"standard": {"max_new_tokens": 12}, "reasoning": {"max_new_tokens": 24}}


@pytest.fixture(scope="module")
def store(server):
    with open_store(server.home / "playground.db") as s:  # the server's own file, next to it (WAL)
        yield s


def open_cell_page(browser, server, owner, session_id):
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    context.add_cookies([{"name": COOKIE_NAME, "value": sign(owner, load_secret(server.home)), "url": server.url}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/?session={session_id}")
    page.wait_for_function("() => window.pgNotebook && window.pgNotebook.state().open", timeout=120_000)
    return context, page, errors


def wait_stored(store, owner, cell_id, executions: int, timeout_s: float = 120):
    """The cell once it has `executions` executions, every lane of them finished."""
    deadline = time.monotonic() + timeout_s
    while True:
        cell = store.get_cell_full(owner, cell_id)
        if len(cell.executions) >= executions and all(r.finished_at for e in cell.executions for r in e.runs.values()):
            return cell
        assert time.monotonic() < deadline, f"{len(cell.executions)} executions after {timeout_s} s"
        time.sleep(0.5)


def test_a_follow_up_streams_the_next_turn_in_both_lanes_under_the_first(browser, server, store):
    owner = new_owner_id()
    session = store.create_session(owner, "conversation")
    cell = store.add_cell(owner, session.id, prompt="What is 2 + 2?", settings=SHORT)
    context, page, errors = open_cell_page(browser, server, owner, session.id)
    try:
        view = page.locator(VIEW)
        assert view.locator(".follow-up textarea").count() == 0  # nothing to follow up before the cell has run
        view.locator(".run-btn").click()
        first = wait_stored(store, owner, cell.id, 1)
        box = view.locator(".follow-up textarea")
        box.wait_for(state="visible", timeout=60_000)  # the run's end shows the follow-up box
        for lane in ("standard", "reasoning"):
            wait_status(view, lane, "done")
        assert view.locator(".lane-turns .turn").count() == 0  # one turn: no earlier turns above it

        box.fill(HOSTILE)
        view.locator(".send-btn").click()
        # While turn 2 runs, each lane already shows turn 1 above it and the new prompt as text.
        page.wait_for_function("() => document.querySelectorAll('#open-cell .lane-turns .turn').length == 2",
                               timeout=120_000)
        stored = wait_stored(store, owner, cell.id, 2)
        page.wait_for_function("() => /2 turns/.test(document.querySelector(\".cell-row[data-index='0']\")"
                               ".textContent)", timeout=60_000)  # the turn's end reached its row
        for lane in ("standard", "reasoning"):
            wait_status(view, lane, "done")

        turns = stored.turns
        assert [(e.turn, e.parent) for e in turns] == [(1, None), (2, first.latest.number)]
        assert turns[1].prompt(stored.prompt) == HOSTILE
        assert {r.status for e in turns for r in e.runs.values()} == {"done"}
        for lane in ("standard", "reasoning"):
            part = view.locator(f".lane-{lane} .lane-turns")
            earlier = part.locator(".turn")
            assert earlier.count() == 1
            assert earlier.locator(".turn-prompt").inner_text() == "What is 2 + 2?"
            assert (earlier.locator(".turn-answer").inner_text().strip()
                    == turns[0].runs[lane].answer_text.strip())
            assert "tok" in earlier.locator(".turn-head").inner_text()  # the turn's own metrics
            # The shown turn: what was asked, as written, and this lane's new answer below it.
            assert part.locator(".turn-now .turn-prompt").inner_text() == HOSTILE
            shown = view.locator(f".lane-{lane} .prose.lane-answer").inner_text().strip()
            assert shown == turns[1].runs[lane].answer_text.strip()
        if turns[0].runs["reasoning"].reasoning_text.strip():  # turn 1's thinking, folded in its block
            assert view.locator(".lane-reasoning .turn details.turn-reasoning").count() == 1
        # Nothing of the hostile prompt became an element or ran.
        assert page.evaluate("() => typeof window.__pwned") == "undefined"
        assert view.locator(".lane-turns img, .lane-turns script").count() == 0
        assert view.locator(".cell-version input").input_value() == f"run {turns[1].number} · turn 2"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "conversation.png"), full_page=True)

        # Bad input shows its named error, as Run's does, and saves nothing.
        view.locator(".send-btn").click()  # the box was emptied when turn 2 started
        page.wait_for_selector("[data-testid='toast-body']:has-text('The prompt is empty')", timeout=30_000)
        assert len(store.get_cell_full(owner, cell.id).executions) == 2
        assert errors == []
    finally:
        context.close()


def test_stop_ends_a_follow_up_in_both_lanes_and_keeps_what_it_streamed(browser, server, store):
    """Stop during turn 2 stops both lanes of that turn (not turn 1, stored before), stores what streamed,
    and leaves the cell ready for another turn."""
    owner = new_owner_id()
    # Turn 1 comes from the store (a finished run, imported with only some of the metrics a run records):
    # the test is about the follow-up, not the first run.
    session = store.import_sessions(owner, [session_record(random.Random(7), "stop", 1, 20, datetime.now(UTC))])[0]
    cell_id = store.get_session(owner, session.id).cells[0].id
    context, page, errors = open_cell_page(browser, server, owner, session.id)
    try:
        view = page.locator(VIEW)
        box = view.locator(".follow-up textarea")
        box.wait_for(state="visible", timeout=60_000)
        box.fill("Now write a long story about the sea, in many chapters.")
        view.locator(".send-btn").click()
        wait_status(view, "reasoning", "running")
        view.locator(".stop-btn").click()
        stored = wait_stored(store, owner, cell_id, 2)
        turn1, turn2 = stored.turns
        assert turn2.turn == 2 and {r.status for r in turn1.runs.values()} == {"done"}
        assert turn2.runs["reasoning"].status == "stopped"
        assert {r.status for r in turn2.runs.values()} <= {"stopped", "done"}
        # The lanes' default budgets (128 and 256 new tokens) were not reached: the run ended at the Stop.
        assert turn2.runs["reasoning"].generated_tokens < 256
        wait_status(view, "reasoning", "stopped")
        assert view.locator(".cell-version input").input_value() == f"run {turn2.number} · turn 2"
        box.wait_for(state="visible")  # another turn can be asked
        assert errors == []
    finally:
        context.close()
