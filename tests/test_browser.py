"""The notebook in a real browser: Debian's chromium driven by Playwright against the real server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.common import lane_status, set_setting, wait_status

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


# The page has loaded its session once its list has every row and the first cell is open in the view (the
# view's components are in the page before that, empty).
OPEN_JS = ("() => window.pgNotebook && window.pgNotebook.state().open && "
           "/Cell \\d/.test(document.querySelector('#open-cell .open-cell-title')?.innerText || '')")


def wait_open(pg) -> None:
    pg.wait_for_function(OPEN_JS, timeout=60_000)


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    pg = context.new_page()
    pg.goto(server.url + "/")
    wait_open(pg)
    yield pg
    context.close()


def test_run_a_cell_and_see_both_lanes_charts_and_folding(page):
    cell = page.locator(".prompt-cell").first
    cell.locator(".cell-prompt textarea").fill("What is 12 + 30? Answer briefly.")
    set_setting(cell, 0, "max_new_tokens", "48")
    set_setting(cell, 1, "max_new_tokens", "64")
    cell.locator(".run-btn").click()
    wait_status(cell, "standard", r"running|done")
    wait_status(cell, "standard", r"done")
    wait_status(cell, "reasoning", r"done")
    # the run's end refreshes the session summary from the store: it then counts this cell
    page.wait_for_function("() => /cells? run/.test(document.querySelector('#summary-text')?.innerText || '')",
                           timeout=30_000)
    page.wait_for_timeout(500)
    assert cell.locator(".lane-standard .prose.lane-answer").inner_text().strip()
    assert re.search(r"TTFT \d", lane_status(cell, "standard"))
    trace = cell.locator(".lane-reasoning .prose.reasoning-trace")
    assert trace.inner_text().strip()
    # charts: the three per-cell plots are drawn by plotly in the page
    page.wait_for_function("() => document.querySelectorAll('.prompt-cell .js-plotly-plot').length >= 3",
                           timeout=30_000)
    # fold and unfold the reasoning trace
    header = cell.locator(".reasoning-acc .label-wrap").first
    was_visible = trace.is_visible()
    header.click()
    page.wait_for_timeout(400)
    assert trace.is_visible() != was_visible
    header.click()
    page.wait_for_timeout(400)
    assert trace.is_visible() == was_visible
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "notebook.png"), full_page=True)


def test_stop_a_long_run(page):
    cell = page.locator(".prompt-cell").first
    cell.locator(".cell-prompt textarea").fill("Write a very long story about the sea.")
    set_setting(cell, 0, "max_new_tokens", "2000")
    set_setting(cell, 1, "max_new_tokens", "2000")
    cell.locator(".cell-prompt textarea").press("Control+Enter")  # Ctrl+Enter runs the focused cell
    wait_status(cell, "standard", r"running")
    page.wait_for_timeout(1500)
    cell.locator(".stop-btn").click()
    wait_status(cell, "standard", r"stopped", timeout_s=60)
    wait_status(cell, "reasoning", r"stopped", timeout_s=60)
    tokens = re.search(r"answer (\d+) tokens", lane_status(cell, "standard"))
    assert tokens and int(tokens.group(1)) < 2000


def test_add_a_cell_from_an_example_and_the_notebook_keeps_it(page):
    rows = "window.pgNotebook.state().rows"
    before = page.evaluate(rows)
    page.get_by_role("button", name="Logic puzzle").click()
    page.wait_for_function(f"() => {rows} == {before + 1}", timeout=30_000)
    prompt = page.locator("#open-cell .cell-prompt textarea")  # the new cell opens at once
    page.wait_for_function("() => /Alice is older than Bob/.test(document.querySelector("
                           "'#open-cell .cell-prompt textarea').value)", timeout=30_000)
    assert page.locator(f".cell-row[data-index='{before}'] .row-text").inner_text().startswith("Alice is older")
    page.reload()
    wait_open(page)
    page.wait_for_function(f"() => {rows} == {before + 1}", timeout=30_000)
    page.locator(f".cell-row[data-index='{before}']").click()
    page.wait_for_function(f"() => /Cell {before + 1}\\b/.test(document.querySelector('#open-cell .open-cell-title')"
                           ".innerText)", timeout=30_000)
    assert "Alice is older than Bob" in prompt.input_value()


def test_share_a_session_as_a_read_only_link(page, browser):
    cell = page.locator(".prompt-cell").first
    prompt = cell.locator(".cell-prompt textarea").input_value()
    page.locator("#share-panel .label-wrap").first.click()
    page.locator("#share-btn").click()
    link = page.locator("#share-link a")
    link.wait_for(timeout=30_000)
    url = link.get_attribute("href")
    assert "/s/" in url
    visitor = browser.new_context()  # another browser: no owner cookie of ours
    shared = visitor.new_page()
    response = shared.goto(url)
    assert response.status == 200
    assert prompt.split()[0] in shared.content()
    assert shared.locator("textarea, .run-btn, [contenteditable=true]").count() == 0  # nothing to edit or run
    visitor.close()


def test_export_downloads_the_session_as_markdown(page):
    prompt = page.locator(".cell-prompt textarea").first.input_value()
    panel = page.locator("#share-panel .label-wrap").first
    if not page.locator("#export-btn").is_visible():
        panel.click()
    page.get_by_label("md", exact=True).check()
    page.locator("#export-btn").click()
    link = page.locator("#export-file a").first
    link.wait_for(timeout=30_000)
    with page.expect_download() as info:
        link.click()
    text = open(info.value.path(), encoding="utf-8").read()
    assert prompt.split()[0] in text and text.startswith("#")
