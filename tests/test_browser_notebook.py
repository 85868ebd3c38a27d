"""The notebook page at scale, in the real Chromium against the real server: a list of rows drawn for what is
on screen, and one open cell in full.

Runs go to a fast local token source (bench/token_stub.py, an OpenAI-compatible server on 127.0.0.1,
through the app's remote backend): the thing under test is the page, and the stub stands in for a
GPU-speed engine. Sessions are built through the store, the way an import would bring them.
"""

from __future__ import annotations

import random

import pytest

from bench.common import ServerProcess
from bench.page_scale import session_of
from bench.token_stub import MODEL, TokenStub
from playground.sharing.schema import new_share_token
from playground.store import open_store
from playground.web.identity import COOKIE_NAME, load_secret, new_owner_id, sign

pytestmark = pytest.mark.timeout(600)

STATE = "window.pgNotebook.state()"
VIEW = "#open-cell"
TITLE = "#open-cell .prose.open-cell-title"
PROMPT = "#open-cell .cell-prompt textarea"


@pytest.fixture(scope="module")
def stub():
    with TokenStub(tokens_per_s=400) as s:
        yield s


@pytest.fixture(scope="module")
def app(stub, tmp_path_factory):
    home = tmp_path_factory.mktemp("notebook-page")
    srv = ServerProcess(home, env={"PLAYGROUND_REMOTE_URL": stub.url, "PLAYGROUND_REMOTE_MODEL": MODEL,
                                   "PLAYGROUND_FETCH_EMBEDDED": "0"})
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def store(app):
    with open_store(app.home / "playground.db") as s:  # the server's own file, next to it (WAL)
        yield s


@pytest.fixture
def owner(app):
    return new_owner_id()


def open_page(browser, app, owner: str, session_id: str, rows: int):
    context = browser.new_context(viewport={"width": 1400, "height": 1400})
    context.add_cookies([{"name": COOKIE_NAME, "value": sign(owner, load_secret(app.home)), "url": app.url}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda d: d.accept())
    page.goto(f"{app.url}/?session={session_id}")
    page.wait_for_function(f"() => window.pgNotebook && {STATE}.rows == {rows} && {STATE}.open", timeout=120_000)
    page.wait_for_selector(f"{VIEW} .prompt-cell .run-btn")
    return context, page, errors


def row(page, n: int):
    """The row of cell n (1-based), once it is drawn."""
    return page.locator(f".cell-row[data-index='{n - 1}']")


def wait_title(page, n: int, timeout_s: float = 30) -> None:
    page.wait_for_function(f"() => /Cell {n}\\b/.test(document.querySelector('{TITLE}').innerText)",
                           timeout=timeout_s * 1000)


def wait_row_status(page, n: int, lane: str, pattern: str, timeout_s: float = 60) -> None:
    page.wait_for_function("([n, lane, pat]) => { const el = document.querySelector("
                           "`.cell-row[data-index='${n - 1}'] .row-${lane} .row-st`); "
                           "return el && new RegExp(pat).test(el.textContent); }",
                           arg=[n, lane, pattern], timeout=timeout_s * 1000)


def test_a_300_cell_session_opens_with_a_screenful_of_rows_and_answers_at_once(browser, app, store, owner):
    session = store.import_sessions(owner, [session_of(300, random.Random(3))])[0]
    context, page, errors = open_page(browser, app, owner, session.id, 300)
    try:
        drawn = page.locator(".cell-row:not([hidden])").count()
        assert 5 <= drawn <= 60, drawn  # what is on screen (plus a little), not 300
        assert page.locator(".js-plotly-plot").count() == 0  # no chart is drawn until one is asked for
        assert "Question 1:" in page.locator(PROMPT).input_value()
        assert "done" in row(page, 1).locator(".row-standard").inner_text()  # cell 1 was run: its row says so
        page.locator("#cell-list .nb-list").evaluate("el => { el.scrollTop = el.scrollHeight; }")
        row(page, 300).click()
        wait_title(page, 300)
        assert page.locator(PROMPT).input_value().startswith("Question 300:")
        assert page.locator(".cell-row:not([hidden])").count() <= 60
        assert errors == []
    finally:
        context.close()


def test_a_click_right_after_add_lands_in_the_new_cell(browser, app, store, owner):
    session = store.create_session(owner, "quick hands")
    first = store.add_cell(owner, session.id, prompt="The first cell.")
    context, page, errors = open_page(browser, app, owner, session.id, 1)
    try:
        page.click("#add-prompt")
        page.click(PROMPT)  # at once: no waiting for the new cell to appear
        page.keyboard.type("Typed into the new cell")
        page.click(f"{VIEW} .run-btn")
        page.wait_for_function(f"() => {STATE}.rows == 2")
        wait_row_status(page, 2, "reasoning", "done")
        cells = store.get_session(owner, session.id).cells
        assert [c.prompt for c in cells] == ["The first cell.", "Typed into the new cell"]
        assert cells[0].id == first.id and not cells[0].executions
        assert {r.status for r in cells[1].latest.runs.values()} == {"done"}
        assert errors == []
    finally:
        context.close()


def test_add_move_delete_and_run_while_another_cell_streams(browser, app, store, owner):
    session = store.create_session(owner, "busy")
    # Long enough that it still streams after the clicks below, however busy the box (20 s at 400 tokens/s).
    long = {"standard": {"max_new_tokens": 4000}, "reasoning": {"max_new_tokens": 8000}}
    cells = [store.add_cell(owner, session.id, prompt=f"Cell number {i + 1}.", settings=long if i == 0 else
                            {"standard": {"max_new_tokens": 20}, "reasoning": {"max_new_tokens": 40}})
             for i in range(6)]
    context, page, errors = open_page(browser, app, owner, session.id, 6)
    try:
        page.click(f"{VIEW} .run-btn")  # cell 1: about twenty seconds of tokens
        wait_row_status(page, 1, "reasoning", "queued|running")
        row(page, 3).click()
        wait_title(page, 3)
        page.click("#add-prompt")
        page.wait_for_function(f"() => {STATE}.rows == 7")
        wait_title(page, 7)
        page.click(f"{VIEW} .cell-up")
        wait_title(page, 6)
        page.click(f"{VIEW} .cell-delete")
        page.wait_for_function(f"() => {STATE}.rows == 6")
        row(page, 3).click()
        wait_title(page, 3)
        page.click(f"{VIEW} .run-btn")  # waits for cell 1's run: one run at a time on the model
        wait_row_status(page, 1, "reasoning", "running")  # cell 1 still streams, in its row only
        assert "Cell number 3." == page.locator(PROMPT).input_value()
        wait_row_status(page, 1, "reasoning", "done", 120)
        wait_row_status(page, 3, "reasoning", "done", 120)
        stored = store.get_session(owner, session.id).cells
        assert [c.id for c in stored] == [c.id for c in cells]  # the added cell came and went; order kept
        for i in (0, 2):
            assert {r.status for r in stored[i].latest.runs.values()} == {"done"}
        assert all(not stored[i].executions for i in (1, 3, 4, 5))
        # The view shows cell 3's own run: cell 1's stream never wrote into it.
        page.wait_for_function(f"() => /done/.test(document.querySelector('{VIEW} .lane-reasoning "
                               ".prose.lane-status').innerText)", timeout=30_000)
        shown = page.locator(f"{VIEW} .lane-reasoning .prose.reasoning-trace").inner_text()
        assert shown.strip() == stored[2].latest.runs["reasoning"].reasoning_text.strip()
        assert "4000" not in row(page, 3).inner_text() and "tok" in row(page, 1).inner_text()
        assert errors == []
    finally:
        context.close()


def test_keyboard_moves_between_cells_opens_closes_and_runs(browser, app, store, owner):
    session = store.create_session(owner, "keys")
    small = {"standard": {"max_new_tokens": 12}, "reasoning": {"max_new_tokens": 24}}
    for i in range(12):
        store.add_cell(owner, session.id, prompt=f"Key cell {i + 1}.", settings=small)
    context, page, errors = open_page(browser, app, owner, session.id, 12)
    try:
        row(page, 1).click()  # the list has the focus now
        for _ in range(3):
            page.keyboard.press("ArrowDown")
        page.wait_for_function(f"() => {STATE}.cursor == 3")
        page.keyboard.press("Enter")
        wait_title(page, 4)
        page.keyboard.press("Escape")
        page.wait_for_function(f"() => !{STATE}.open && !document.querySelector('{VIEW} .run-btn').offsetParent")
        page.keyboard.press("ArrowDown")
        page.keyboard.press("Enter")
        wait_title(page, 5)
        assert page.locator(PROMPT).input_value() == "Key cell 5."
        page.click(PROMPT)
        page.keyboard.press("Control+Enter")
        wait_row_status(page, 5, "reasoning", "done")
        page.keyboard.press("Escape")  # closes even from inside the prompt
        page.wait_for_function(f"() => !{STATE}.open")
        assert len(store.get_session(owner, session.id).cells[4].executions) == 1
        assert errors == []
    finally:
        context.close()


def test_the_share_page_of_a_300_cell_session_has_every_cell_and_lane(browser, app, store, owner):
    session = store.import_sessions(owner, [session_of(300, random.Random(4))])[0]
    token = store.create_share(owner, session.id, new_share_token())
    context = browser.new_context()
    try:
        page = context.new_page()
        # Completeness, not speed, is the point here (the share page is playground/sharing's, drawing the
        # charts of every run cell): the document is enough, its charts need not have loaded.
        assert page.goto(f"{app.url}/s/{token}", wait_until="domcontentloaded", timeout=180_000).status == 200
        assert page.locator("section.cell-prompt").count() == 300
        assert page.locator("article.lane").count() == 2 * 30  # one cell in ten was run, in both lanes
        assert "Question 300:" in page.content()
    finally:
        context.close()


def test_the_view_shows_the_prompt_part_or_the_note_part_never_both(browser, app, store, owner):
    session = store.create_session(owner, "kinds")
    store.add_cell(owner, session.id, prompt="A prompt cell.")
    store.add_cell(owner, session.id, kind="note", note="A *note* cell.")
    context, page, errors = open_page(browser, app, owner, session.id, 2)

    def parts() -> tuple[bool, bool]:
        return (page.locator(f"{VIEW} .prompt-cell").is_visible(), page.locator(f"{VIEW} .note-cell").is_visible())

    try:
        assert parts() == (True, False)
        row(page, 1).click()
        page.keyboard.press("ArrowDown")
        page.keyboard.press("Enter")
        page.wait_for_function(f"() => /Note 2\\b/.test(document.querySelector('{TITLE}').innerText)", timeout=30_000)
        page.wait_for_function(f"() => !document.querySelector('{VIEW} .run-btn').offsetParent")
        assert parts() == (False, True)
        assert page.locator(f"{VIEW} .cell-note textarea").input_value() == "A *note* cell."
        page.keyboard.press("Escape")
        page.wait_for_function(f"() => !{STATE}.open")
        assert parts() == (False, False)
        row(page, 1).click()
        page.keyboard.press("Enter")
        wait_title(page, 1)
        page.wait_for_selector(f"{VIEW} .prompt-cell .run-btn")
        assert parts() == (True, False)
        assert errors == []
    finally:
        context.close()
