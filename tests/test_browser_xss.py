"""Hostile prompts and model output in the notebook page, in the real Chromium against the real server.

The model is real and will not echo a payload on request, so a run with a hostile answer is written
straight into the server's database (untrusted data arriving, as an import or a fork would bring it);
the page then loads it like any session. A second cell with a hostile prompt is run live in the page.
Nothing may execute, no element may come from the payloads, the browser may call no other host, and
the payloads must read as the text they are.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from playground.store import open_store
from playground.web.identity import COOKIE_NAME, load_secret, new_owner_id, sign

pytestmark = pytest.mark.timeout(600)  # the first test also waits for the shared server and its model

EVIL = "evil.example"
PAYLOADS = [
    "<script>window.__pwned=1;alert('script')</script>",
    "<img src=x onerror=\"window.__pwned=1;alert('img')\">",
    f"![x](http://{EVIL}/a.png)",
    f"<img src=\"http://{EVIL}/b.png\">",
    "[click](javascript:window.__pwned=1)",
    "<a href=\"javascript:alert('a')\">a link</a>",
    "<svg onload=\"alert('svg')\"></svg>",
    f"<iframe src=\"http://{EVIL}/frame\"></iframe>",
    "</think><script>alert('think')</script>",
    f"<div style=\"background:url(http://{EVIL}/c.png)\">styled</div>",
]
HOSTILE = "\n\n".join(PAYLOADS)
# Payloads that must read literally in a Markdown answer (a Markdown link keeps its text only).
LITERAL = [p for p in PAYLOADS if not p.startswith("[click]")]

# Everything the payloads could have turned into, looked for across the whole page.
INJECTED_JS = """() => {
  const found = [];
  for (const el of document.querySelectorAll('*')) {
    for (const attr of el.getAttributeNames()) {
      if (attr.startsWith('on')) found.push(el.tagName + '[' + attr + ']');
    }
  }
  for (const s of document.scripts) if (/__pwned|alert\\(/.test(s.textContent)) found.push('script');
  for (const a of document.querySelectorAll('a[href]')) {
    if (/^\\s*javascript:/i.test(a.getAttribute('href'))) found.push('a[javascript]');
  }
  for (const f of document.querySelectorAll('iframe, object, embed')) found.push(f.tagName);
  for (const i of document.images) {
    if (!i.src.startsWith(location.origin) && !i.src.startsWith('data:')) found.push('img ' + i.src);
  }
  // What a sanitizer leaves of a payload: an <img src=x> without its handler, a style with a url().
  for (const el of document.querySelectorAll('.cell img, .lane [style*="url("]')) found.push('payload ' + el.outerHTML);
  return found;
}"""


@pytest.fixture(scope="module")
def store(server):
    with open_store(server.home / "playground.db") as s:  # the server's own file, next to it (WAL)
        yield s


@pytest.fixture
def visitor(server):
    """A fresh visitor: an owner id and the signed cookie the server would have given them."""
    owner = new_owner_id()
    return owner, sign(owner, load_secret(server.home))


def hostile_run(store, owner, cell_id) -> None:
    run_ids = store.start_execution(owner, cell_id, {"standard": {}, "reasoning": {}}, {"model_id": "hostile/import"})
    for lane, run_id in run_ids.items():
        n = 4
        store.finish_run(run_id, status="error", raw_text=HOSTILE,
                         reasoning_text=f"Thinking. {HOSTILE}" if lane == "reasoning" else "",
                         answer_text=f"Answer. {HOSTILE}", token_ids=list(range(n)),
                         token_times=[0.05 * (i + 1) for i in range(n)], token_kinds="a" * n, forced=[False] * n,
                         prompt_tokens=5, metrics=None, finish_reason="error", error=f"Failed. {HOSTILE}")


def open_page(browser, server, cookie: str, session_id: str, rows: int):
    """The notebook at ?session=…, as the visitor, with every request, dialog and page error recorded,
    once its `rows` rows are there and its first cell is open."""
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    context.add_cookies([{"name": COOKIE_NAME, "value": cookie, "url": server.url}])
    page = context.new_page()
    seen = {"requests": [], "failed": {}, "dialogs": [], "errors": []}
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.on("requestfailed", lambda r: seen["failed"].__setitem__(r.url, r.failure))
    page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
    page.on("pageerror", lambda exc: seen["errors"].append(str(exc)))
    page.goto(f"{server.url}/?session={session_id}")
    page.wait_for_function(f"() => window.pgNotebook && window.pgNotebook.state().rows == {rows} "
                           "&& window.pgNotebook.state().open", timeout=60_000)
    page.wait_for_timeout(500)  # let a late onerror/onload fire if anything slipped through
    return context, page, seen


def assert_nothing_ran(page, seen) -> None:
    assert seen["dialogs"] == []
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    assert page.evaluate(INJECTED_JS) == []
    assert not [e for e in seen["errors"] if "pwned" in e or "alert" in e], seen["errors"]


def foreign(seen) -> list[str]:
    return [u for u in seen["requests"] if urlsplit(u).hostname != "127.0.0.1" and not u.startswith("data:")]


def test_hostile_prompts_and_model_output_show_as_inert_text(browser, server, store, visitor):
    owner, cookie = visitor
    session = store.create_session(owner, f"Session {PAYLOADS[0]}")
    loaded = store.add_cell(owner, session.id, prompt=f"Loaded. {HOSTILE}", system_prompt=f"System. {HOSTILE}")
    hostile_run(store, owner, loaded.id)
    short = {"standard": {"max_new_tokens": 12}, "reasoning": {"max_new_tokens": 16}}
    live = store.add_cell(owner, session.id, prompt=f"Repeat this exactly: {HOSTILE}", settings=short)

    context, page, seen = open_page(browser, server, cookie, session.id, 2)
    try:
        view = page.locator("#open-cell")  # the one open cell: the first, on opening the session
        assert_nothing_ran(page, seen)
        # The rows show each prompt's first line as text.
        row_text = page.locator(".cell-row .row-text")
        assert row_text.nth(0).inner_text() == f"Loaded. {PAYLOADS[0]}"
        assert row_text.nth(1).inner_text() == f"Repeat this exactly: {PAYLOADS[0]}"
        # The payloads read as written: prompt and system prompt in their boxes, the title, the
        # reasoning trace verbatim, the answers and the error with their HTML as text.
        assert view.locator(".cell-prompt textarea").input_value() == f"Loaded. {HOSTILE}"
        assert view.locator(".cell-system textarea").input_value() == f"System. {HOSTILE}"
        assert page.locator("#session-title textarea, #session-title input").first.input_value() == session.title
        assert view.locator(".lane-reasoning .prose.reasoning-trace").inner_text() == f"Thinking. {HOSTILE}"
        for lane in ("standard", "reasoning"):
            answer = view.locator(f".lane-{lane} .prose.lane-answer").inner_text()
            status = view.locator(f".lane-{lane} .prose.lane-status").inner_text()
            for payload in LITERAL:
                assert payload in answer, (lane, payload, answer)
                assert payload in status, (lane, payload, status)

        # The hostile prompt through the real model, streamed into the open cell and saved.
        page.locator(".cell-row[data-index='1']").click()
        page.wait_for_function("() => /Cell 2\\b/.test(document.querySelector('#open-cell .open-cell-title')"
                               ".innerText)", timeout=30_000)
        view.locator(".run-btn").click()
        for lane in ("standard", "reasoning"):
            page.wait_for_function(
                "el => /done|stopped|error/.test(el.innerText)",
                arg=view.locator(f".lane-{lane} .prose.lane-status").element_handle(), timeout=120_000)
        page.wait_for_function("() => /done/.test(document.querySelector(\".cell-row[data-index='1'] .row-reasoning\")"
                               ".textContent)", timeout=30_000)  # the run's end reached its row
        assert_nothing_ran(page, seen)
        assert view.locator(".cell-prompt textarea").input_value() == live.prompt
        saved = store.get_session(owner, session.id).cells[1]
        assert saved.latest is not None and {r.status for r in saved.latest.runs.values()} == {"done"}
        assert foreign(seen) == []  # the browser called no host but the playground
        # The page's Content-Security-Policy leaves the page itself working: the cell's charts are drawn.
        page.wait_for_function("() => document.querySelectorAll('#open-cell .js-plotly-plot .main-svg').length >= 3",
                               timeout=30_000)
    finally:
        context.close()


def test_an_imported_note_with_images_cannot_call_another_host(browser, server, store, visitor):
    """Notes render as the owner's Markdown; one that arrived by import or fork may point images
    anywhere. The page's Content-Security-Policy keeps the browser from ever sending those requests."""
    owner, cookie = visitor
    session = store.create_session(owner, "Imported notes")
    store.add_cell(owner, session.id, kind="note", note=f"# Imported\n\n{HOSTILE}")
    store.add_cell(owner, session.id, prompt="A harmless prompt.")
    context, page, seen = open_page(browser, server, cookie, session.id, 2)
    try:
        assert seen["dialogs"] == [] and page.evaluate("() => typeof window.__pwned") == "undefined"
        outside = foreign(seen)
        assert outside, "the note's images were not even attempted: this test no longer tests the policy"
        assert all(urlsplit(u).hostname == EVIL for u in outside), outside
        # Every one refused by the browser before it left the machine.
        assert {seen["failed"].get(u) for u in outside} == {"csp"}, seen["failed"]
    finally:
        context.close()
