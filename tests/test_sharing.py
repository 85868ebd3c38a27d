"""Sharing, end to end: share links, the read-only page, exports, import, fork, on a real SQLite store
and the real app (build_server: the share routes next to the mounted gradio UI) served by uvicorn on
127.0.0.1, plus the page in the real Chromium with hostile content in every field."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import socket
import threading
import time
from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest

from playground.errors import InvalidInput
from playground.evaluation.metrics import lane_metrics
from playground.sharing.markdown import export_markdown, render_markdown
from playground.sharing.page import PLOTLY_JS, standalone_html
from playground.sharing.schema import MAX_IMPORT_BYTES, export_document, parse_import
from playground.store import open_store
from playground.web.identity import COOKIE_NAME, new_owner_id, sign

SECRET = b"test-secret-for-sharing"
PAYLOADS = ['<script>window.__pwned=1</script>', '<img src=x onerror="window.__pwned=1">',
            '[x](javascript:window.__pwned=1)', '![t](http://203.0.113.9/x.png)',
            '</think><script>window.__pwned=1</script>', '<svg onload="window.__pwned=1">',
            '</script><script>window.__pwned=1</script>', '<a href="javascript:window.__pwned=1">a</a>']
HOSTILE = "\n\n".join(PAYLOADS)


def add_run(store, owner, cell_id, answer="The answer is **4**.", reasoning="2 plus 2 is 4.", tokens=6,
            parent=None, prompt=None):
    """One finished execution of a prompt cell, both lanes, with small token arrays and real metrics
    (`parent`, `prompt`: a follow-up turn after that execution)."""
    run_ids = store.start_execution(owner, cell_id, {"standard": {"temperature": 0}, "reasoning": {"temperature": 0}},
                                    {"model_id": "test/model", "versions": {"playground": "0"}}, parent=parent,
                                    prompt=prompt)
    for lane, run_id in run_ids.items():
        kinds = (["reasoning"] * (tokens // 2) if lane == "reasoning" else []) + ["answer"] * (tokens // 2)
        times = [0.05 + 0.02 * i for i in range(len(kinds))]
        first_answer = times[kinds.index("answer")]
        m = lane_metrics(9, 0.0, times, kinds, [False] * len(kinds), first_answer, times[-1], "eos")
        store.finish_run(run_id, status="done", raw_text=f"<think>{reasoning}</think>{answer}",
                         reasoning_text=reasoning if lane == "reasoning" else "", answer_text=answer,
                         token_ids=list(range(100, 100 + len(kinds))), token_times=times, token_kinds=kinds,
                         forced=[False] * len(kinds), prompt_tokens=9, metrics=m.to_dict(), finish_reason="eos",
                         error=None)


def make_session(store, owner, title="Arithmetic & more", hostile=False) -> str:
    text = HOSTILE if hostile else ""
    s = store.create_session(owner, f"{title} <script>window.__pwned=1</script>" if hostile else title)
    store.add_cell(owner, s.id, kind="note", note=f"# Notes\nSome *context*. {text}")
    c = store.add_cell(owner, s.id, prompt=f"What is 2+2? {text}", system_prompt=f"Be brief. {text}")
    add_run(store, owner, c.id)
    add_run(store, owner, c.id, answer=f"Four. {text}", reasoning=f"Let me think. {text}")
    store.add_cell(owner, s.id, prompt="Not run yet")
    return s.id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Live:
    def __init__(self, url: str, store):
        self.url, self.store = url, store

    def client(self, owner: str | None = None) -> httpx.Client:
        cookies = {COOKIE_NAME: sign(owner, SECRET)} if owner else {}
        return httpx.Client(base_url=self.url, cookies=cookies, timeout=30)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    import uvicorn

    from playground.app.service import Playground
    from playground.config import Settings
    from playground.web.server import build_server

    home = tmp_path_factory.mktemp("share-home")
    store = open_store(home / "pg.db")
    app = build_server(Playground(Settings(home=home)), store, SECRET)  # no model: sharing needs none
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield Live(f"http://127.0.0.1:{port}", store)
    server.should_exit = True
    thread.join(10)
    store.close()


@pytest.fixture
def alice(live):
    owner = new_owner_id()
    return owner, live.client(owner)


def share(client, session_id) -> str:
    r = client.post(f"/api/sessions/{session_id}/share")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["url"] == f"/s/{body['token']}" and len(body["token"]) >= 43
    return body["token"]


def assert_csp(r: httpx.Response) -> None:
    csp = r.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self' 'nonce-", "img-src 'self' data:", "connect-src 'none'",
                      "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"):
        assert directive in csp, (directive, csp)
    assert "unsafe-eval" not in csp and "*" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"


# --- share links -------------------------------------------------------------------------------
def test_share_create_read_revoke(live, alice):
    owner, client = alice
    sid = make_session(live.store, owner)
    token = share(client, sid)
    r = httpx.get(f"{live.url}/s/{token}")  # anyone with the link, no cookie
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert_csp(r)
    page = r.text
    assert "<h1>Arithmetic &amp; more</h1>" in page
    assert page.index("Notes") < page.index("What is 2+2?") < page.index("Not run yet")  # cells in order
    assert "<details class=\"reasoning\"><summary>Reasoning</summary>" in page
    assert "<strong>4</strong>" in page  # the answer rendered as Markdown
    assert "1 earlier run(s)" in page and 'id="chart-summary"' in page and 'id="chart-2-tokens"' in page
    assert '<script src="/static/plotly.min.js"' in page and "cdn" not in page.lower()
    nonce = re.search(r"'nonce-([^']+)'", r.headers["content-security-policy"]).group(1)
    assert f'nonce="{nonce}"' in page
    assert re.search(r"'nonce-([^']+)'", httpx.get(f"{live.url}/s/{token}").headers["content-security-policy"]) \
        .group(1) != nonce  # a fresh nonce per response
    # The page follows edits at once (rendered pages are cached per session version).
    cell = live.store.get_session(owner, sid).cells[2]
    live.store.update_cell(owner, cell.id, prompt="Edited after sharing")
    assert "Edited after sharing" in httpx.get(f"{live.url}/s/{token}").text
    add_run(live.store, owner, cell.id, answer="A *fresh* answer")
    assert "A <em>fresh</em> answer" in httpx.get(f"{live.url}/s/{token}").text
    listed = client.get(f"/api/sessions/{sid}/shares").json()
    assert [s["token"] for s in listed] == [token] and listed[0]["revoked_at"] is None

    assert client.delete(f"/api/shares/{token}").json() == {"revoked": True}
    gone = httpx.get(f"{live.url}/s/{token}")
    assert gone.status_code == 404 and "Arithmetic" not in gone.text
    assert_csp(gone)
    assert httpx.get(f"{live.url}/s/{token}/export").status_code == 404


def test_static_files_are_served_locally(live):
    r = httpx.get(f"{live.url}/static/plotly.min.js")
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    assert r.content == PLOTLY_JS.read_bytes()
    assert httpx.get(f"{live.url}/static/share.js").status_code == 200
    assert httpx.get(f"{live.url}/static/share.css").headers["content-type"].startswith("text/css")


def test_another_owner_gets_404_everywhere(live, alice):
    owner, client = alice
    sid = make_session(live.store, owner)
    token = share(client, sid)
    mallory = live.client(new_owner_id())
    anonymous = live.client()
    for c in (mallory, anonymous):
        assert c.post(f"/api/sessions/{sid}/share").status_code == 404
        assert c.get(f"/api/sessions/{sid}/shares").status_code == 404
        assert c.get(f"/api/sessions/{sid}/export?format=json").status_code == 404
        assert c.delete(f"/api/shares/{token}").status_code == 404
    assert live.client().get(f"/s/{token}").status_code == 200  # the link itself still works
    forged = httpx.get(f"{live.url}/api/sessions/{sid}/export", cookies={COOKIE_NAME: f"{owner}.{'0' * 32}"})
    assert forged.status_code == 404


@pytest.mark.parametrize("path", [
    "/s/" + "A" * 43,  # well-formed, unknown
    "/s/short", "/s/" + "a" * 500, "/s/..%2F..%2Fetc%2Fpasswd", "/s/%2e%2e/%2e%2e/etc/passwd", "/s/..",
    "/s/abc%00def" + "x" * 40, "/s/" + "A" * 43 + "/../../static/share.js", "/s/" + "A" * 43 + "/extra/segment",
    "/s/%3Cscript%3E" + "a" * 40, "/s/",
])
def test_unknown_and_weird_tokens_are_plain_404(live, path):
    # http.client sends the path as written: httpx would resolve the ".." segments itself.
    split = urlsplit(live.url)
    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body, headers = r.read().decode(), {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()
    assert r.status == 404, path
    assert "passwd" not in body and "root:" not in body and "<script>" not in body and "Plotly" not in body
    assert "default-src 'none'" in headers["content-security-policy"]


def test_cross_site_posts_are_refused(live, alice):
    owner, client = alice
    sid = make_session(live.store, owner)
    for evil in ({"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                 {"Origin": "http://evil.example"}):
        assert client.post(f"/api/sessions/{sid}/share", headers=evil).status_code == 403
        assert client.post("/api/import", content=b"{}", headers=evil).status_code == 403
    assert client.post(f"/api/sessions/{sid}/share", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert client.post(f"/api/sessions/{sid}/share", headers={"Origin": live.url}).status_code == 200
    assert len(live.store.list_shares(owner, sid)) == 2  # only the two same-origin requests made one


# --- exports -----------------------------------------------------------------------------------
def test_exports_json_md_html(live, alice):
    owner, client = alice
    sid = make_session(live.store, owner, title="Über / ../../etc \"quoted\"")
    token = share(client, sid)
    for base in (f"/api/sessions/{sid}/export", f"/s/{token}/export"):
        r = client.get(base, params={"format": "json"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        disposition = r.headers["content-disposition"]
        assert disposition == 'attachment; filename="ber-etc-quoted.json"', disposition
        doc = r.json()
        assert doc["schema"] == "reasoning-playground/session" and doc["version"] == 2
        cells = doc["session"]["cells"]
        assert [c["kind"] for c in cells] == ["note", "prompt", "prompt"]
        run = cells[1]["executions"][1]["runs"]["reasoning"]
        assert run["token_kinds"] == "rrraaa" and len(run["token_times"]) == 6 and run["metrics"]["ttfat_s"] > 0
        assert [e["number"] for e in cells[1]["executions"]] == [1, 2]

        md = client.get(base, params={"format": "md"})
        assert md.headers["content-type"].startswith("text/markdown")
        assert "<details><summary>Reasoning</summary>" in md.text and "## Cell 2" in md.text

        page = client.get(base, params={"format": "html"})
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-disposition"].endswith('.html"')
        text = page.text
        assert "/static/plotly.min.js" not in text and "plotly.js v" in text  # inlined, works offline
        meta_csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', text).group(1)
        assert "default-src 'none'" in meta_csp and "connect-src 'none'" in meta_csp
        inline = re.findall(r"<script>(.*?)</script>", text, flags=re.S)
        assert len(inline) == 2
        for script in inline:  # each inline script is allowed by exactly its hash
            digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in meta_csp
        for body in (r.text, md.text, text):
            assert owner not in body and token not in body and sid not in body
    assert client.get(f"/api/sessions/{sid}/export", params={"format": "pdf"}).status_code == 400


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.seen: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.seen.append((tag, dict(attrs)))


def test_render_markdown_strips_everything_active():
    out = render_markdown(HOSTILE + "\n\n[ok](https://example.com) <http://203.0.113.9/>")
    parser = _Tags()
    parser.feed(out)
    tags = {tag for tag, _ in parser.seen}
    assert tags <= {"p", "a"}, tags  # the payloads survive only as text
    links = [attrs for tag, attrs in parser.seen if tag == "a"]
    assert [a["href"] for a in links] == ["https://example.com", "http://203.0.113.9/"]
    assert all(a["rel"] == "noopener noreferrer nofollow" and set(a) == {"href", "rel"} for a in links)
    assert "[image: t]" in out


# --- import ------------------------------------------------------------------------------------
def exported(live, client, sid) -> dict:
    return client.get(f"/api/sessions/{sid}/export").json()


def test_import_round_trip_and_multipart(live, alice):
    owner, client = alice
    sid = make_session(live.store, owner)
    first = exported(live, client, sid)
    bob = new_owner_id()
    bob_client = live.client(bob)
    r = bob_client.post("/api/import", files={"file": ("s.json", json.dumps(first).encode(), "application/json")})
    assert r.status_code == 200, r.text
    new_id = r.json()["id"]
    assert new_id != sid and [s.id for s in live.store.list_sessions(bob)] == [new_id]
    second = exported(live, bob_client, new_id)
    first.pop("exported_at"), second.pop("exported_at")
    assert second == first
    raw = bob_client.post("/api/import", content=json.dumps(first | {"exported_at": "2024-01-01T00:00:00Z"}),
                          headers={"Content-Type": "application/json"})
    assert raw.status_code == 200 and len(live.store.list_sessions(bob)) == 2


def test_import_without_cookie_gets_an_identity(live, alice):
    owner, client = alice
    doc = exported(live, client, make_session(live.store, owner))
    r = httpx.post(f"{live.url}/api/import", json=doc)
    assert r.status_code == 200
    cookie = r.cookies[COOKIE_NAME]
    mine = live.client()
    mine.cookies.set(COOKIE_NAME, cookie)
    assert mine.get(f"/api/sessions/{r.json()['id']}/export").status_code == 200


def _deep(n: int):
    value: object = 1
    for _ in range(n):
        value = {"x": value}
    return value


def _bad_imports(doc: dict) -> dict[str, tuple[bytes, int, str]]:
    def with_(path, value) -> bytes:
        d = json.loads(json.dumps(doc))
        target = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return json.dumps(d).encode()

    good = json.dumps(doc).encode()
    run = ["session", "cells", 1, "executions", 0, "runs", "standard"]
    return {
        "future version": (with_(["version"], 7), 400, "version 7; this playground reads versions 1, 2"),
        "other schema": (with_(["schema"], "something/else"), 400, "not a session export"),
        "not an object": (b"[1, 2, 3]", 400, "not a session export"),
        "malformed": (b'{"schema": "reasoning-playground/session", "version": 1,', 400, "not valid JSON"),
        "truncated": (good[: len(good) // 2], 400, "not valid JSON"),
        "not utf-8": (b'{"schema": "\xff\xfe"}', 400, "UTF-8"),
        "too deep": (with_(run + ["record"], _deep(40)), 400, "MAX_JSON_DEPTH"),
        "very deep": (b"[" * 200_000 + b"]" * 200_000, 400, "too deeply"),
        "too large": (good + b" " * (MAX_IMPORT_BYTES + 1 - len(good)), 413, "MAX_IMPORT_BYTES"),
        "unknown key": (with_(["session", "owner"], "someone"), 400, "session.owner"),
        "arrays disagree": (with_(run + ["token_times"], [0.1]), 400, "token arrays differ"),
        "counts disagree": (with_(run + ["generated_tokens"], 99), 400, "do not match"),
        "bad status": (with_(run + ["status"], "exploded"), 400, "status"),
        "naive time": (with_(run + ["started_at"], "2024-01-01T00:00:00"), 400, "started_at"),
        "empty title": (with_(["session", "title"], ""), 400, "title"),
        "lane": (with_(["session", "cells", 1, "executions", 0, "runs"], {"third": {}}), 400, "third"),
        "execution order": (with_(["session", "cells", 1, "executions", 1, "number"], 1), 400, "must increase"),
    }


def test_import_validation_is_clear_and_changes_nothing(live, alice):
    owner, client = alice
    doc = exported(live, client, make_session(live.store, owner))
    bob = new_owner_id()
    bob_client = live.client(bob)
    for name, (body, status, message) in _bad_imports(doc).items():
        for kwargs in ({"content": body}, {"files": {"file": ("x.json", body, "application/json")}}):
            r = bob_client.post("/api/import", **kwargs)
            assert r.status_code == status, (name, r.status_code, r.text[:300])
            assert message in r.json()["error"], (name, r.json()["error"][:300])
        with pytest.raises(InvalidInput, match=re.escape(message)):
            parse_import(body)
    empty_form = bob_client.post("/api/import", content=b"--b--\r\n",
                                 headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert empty_form.status_code == 400 and "field 'file'" in empty_form.json()["error"]
    assert live.store.list_sessions(bob) == []


def test_oversized_upload_is_refused_from_its_declared_length(live):
    # The server must answer before the body arrives; httpx will not send a lying Content-Length,
    # so speak HTTP on a socket.
    host, port = urlsplit(live.url).hostname, urlsplit(live.url).port
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(f"POST /api/import HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {MAX_IMPORT_BYTES + 1}\r\nConnection: close\r\n\r\n{{}}".encode())
        chunks = []
        while chunk := s.recv(65536):  # the server closes the connection after its answer
            chunks.append(chunk)
    reply = b"".join(chunks).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413"), reply[:200]
    assert "MAX_IMPORT_BYTES" in reply


# --- fork --------------------------------------------------------------------------------------
def test_fork_copies_the_shared_session(live, alice):
    owner, client = alice
    sid = make_session(live.store, owner)
    token = share(client, sid)
    bob = new_owner_id()
    r = live.client(bob).post(f"/s/{token}/fork")
    assert r.status_code == 200, r.text
    fork = live.store.get_session(bob, r.json()["id"])
    source = live.store.get_session(owner, sid)
    assert fork.forked_from == sid and fork.title == source.title
    assert [c.prompt for c in fork.cells] == [c.prompt for c in source.cells]
    assert fork.cells[1].latest.runs["reasoning"].token_times == source.cells[1].latest.runs["reasoning"].token_times
    stranger = httpx.post(f"{live.url}/s/{token}/fork")  # no cookie yet: gets one, and the copy is theirs
    assert stranger.status_code == 200 and COOKIE_NAME in stranger.cookies
    client.delete(f"/api/shares/{token}")
    assert live.client(bob).post(f"/s/{token}/fork").status_code == 404
    assert live.client(bob).post("/s/not-a-token/fork").status_code == 404


# --- the page in a real browser ----------------------------------------------------------------
def open_watched(browser, url: str):
    """A page at `url` with every request and console message recorded."""
    context = browser.new_context()
    page = context.new_page()
    requests, console = [], []
    page.on("request", lambda req: requests.append(req.url))
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
    page.goto(url)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 4",
                           timeout=30_000)
    page.wait_for_timeout(300)  # let a late onerror/onload fire if anything slipped through
    return context, page, requests, console


def assert_not_pwned(page, requests, console, allowed) -> None:
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    foreign = [u for u in requests if not allowed(u)]
    assert not foreign, foreign
    assert not [c for c in console if "Content Security Policy" in c or "pageerror" in c], console
    assert page.locator("details.reasoning").count() >= 1
    assert page.locator(".js-plotly-plot").count() == 4  # three for the run cell, one session summary
    assert page.locator(".js-plotly-plot .scatterlayer .trace").count() >= 2  # lines were drawn


def test_hostile_session_in_chromium(live, alice, browser, tmp_path):
    owner, client = alice
    sid = make_session(live.store, owner, hostile=True)
    token = share(client, sid)
    context, page, requests, console = open_watched(browser, f"{live.url}/s/{token}")
    try:
        assert_not_pwned(page, requests, console, lambda u: urlsplit(u).hostname == "127.0.0.1")
        assert "<script>window.__pwned=1</script>" in page.locator("header h1").inner_text()  # shown, not run
        assert page.locator("a[href^='javascript']").count() == 0 and page.locator("main img").count() == 0
    finally:
        context.close()

    # The self-contained export, opened from disk: the same, with nothing but the file itself.
    path = tmp_path / "export.html"
    path.write_bytes(client.get(f"/api/sessions/{sid}/export", params={"format": "html"}).content)
    context, page, requests, console = open_watched(browser, path.as_uri())
    try:
        assert_not_pwned(page, requests, console, lambda u: u == path.as_uri() or u.startswith("data:"))
    finally:
        context.close()


# --- "did reasoning pay?" in exports and on the share page -----------------------------------------
def graded_session(store, owner="grader"):
    s = store.create_session(owner, "Graded")
    right = store.add_cell(owner, s.id, prompt="2+2?", expected="4", grader={"kind": "numeric", "tolerance": 0})
    add_run(store, owner, right.id, answer="It is 4.")
    hostile = store.add_cell(owner, s.id, prompt="tag?", expected="<.*>", grader={"kind": "regex"})
    add_run(store, owner, hostile.id, answer="<script>window.__pwned=1</script>")
    return s.id


def test_exports_carry_expected_graders_grades_and_the_verdict(tmp_path):
    with open_store(tmp_path / "g.db") as store:
        sid = graded_session(store)
        session = store.get_session("grader", sid)
        doc = export_document(session)
        cell = doc["session"]["cells"][0]
        assert (cell["expected"], cell["grader"]) == ("4", {"kind": "numeric", "tolerance": 0})
        v = doc["session"]["verdict"]
        assert v["cells_compared"] == 2 and v["lanes"]["standard"]["passed"] == 2 and v["gain"] == 0
        back = parse_import(json.dumps(doc))
        assert [(c.expected, c.grader) for c in back.cells] == [(c.expected, c.grader) for c in session.cells]
        # A file from before grading existed (no expected, grader, grade or verdict) still imports.
        for c in doc["session"]["cells"]:
            del c["expected"], c["grader"]
            for e in c["executions"]:
                for r in e["runs"].values():
                    del r["grade"]
        del doc["session"]["verdict"]
        old = parse_import(json.dumps(doc))
        assert all(c.expected is None and c.grader is None for c in old.cells)
        # A bad grader in a file is refused by the store with the reason.
        doc["session"]["cells"][0]["expected"], doc["session"]["cells"][0]["grader"] = "4", {"kind": "fuzzy"}
        with pytest.raises(InvalidInput, match="grader"):
            store.import_sessions("grader", [parse_import(json.dumps(doc))])
        md = export_markdown(session)
        assert "## Did reasoning pay?" in md and "Grade: ✅ pass (read '4')" in md and "| Standard | 100% |" in md


def test_the_share_page_shows_the_verdict_and_escapes_what_graders_read(tmp_path):
    with open_store(tmp_path / "g.db") as store:
        session = store.get_session("grader", graded_session(store))
        page = standalone_html(session)
        assert "Did reasoning pay?" in page and 'id="chart-verdict-scatter"' in page
        assert 'class="grade grade-pass"' in page and "Expected (numeric grader)" in page
        assert "<script>window.__pwned" not in page
        assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page  # the regex grader's read, escaped
        charts_json = re.search(r'<script type="application/json" id="share-charts">(.*?)</script>', page, re.S)
        assert charts_json and "chart-verdict-budget" in json.loads(charts_json.group(1))


# --- conversation turns ----------------------------------------------------------------------------
def two_turn_session(store, owner, text=""):
    """A session whose run cell has a follow-up: turn 1 (execution 2, a re-run of 1) and turn 2."""
    sid = make_session(store, owner, hostile=bool(text))
    cell = store.get_session(owner, sid).cells[1]
    add_run(store, owner, cell.id, answer=f"Forty. {text}", reasoning="Ten fours.", parent=2,
            prompt=f"And times ten? {text}")
    return sid


def test_turns_travel_through_exports_import_and_fork(tmp_path):
    with open_store(tmp_path / "t.db") as store:
        session = store.get_session("me", two_turn_session(store, "me"))
        doc = export_document(session)
        executions = doc["session"]["cells"][1]["executions"]
        assert [(e["number"], e["turn"], e["parent"], e["prompt"]) for e in executions] == [
            (1, 1, None, None), (2, 1, None, None), (3, 2, 2, "And times ten? ")]
        [back] = store.import_sessions("me", [parse_import(json.dumps(doc))])
        cell = store.get_session("me", back.id).cells[1]
        assert [(e.number, e.turn, e.prompt(cell.prompt)) for e in cell.turns] == [
            (2, 1, cell.prompt), (3, 2, "And times ten? ")]
        assert cell.turns[-1].runs["reasoning"].answer_text == "Forty. "
        fork = store.fork_session("you", session_id=None, share_token=store.create_share("me", back.id, "t" * 43))
        assert [e.turn for e in store.get_session("you", fork.id).cells[1].turns] == [1, 2]
        # A version-1 file (before turns) imports with every execution a first turn.
        old = json.loads(json.dumps(doc))
        old["version"] = 1
        for c in old["session"]["cells"]:
            for e in c["executions"]:
                del e["turn"], e["parent"], e["prompt"]
        assert [e.turn for e in parse_import(json.dumps(old)).cells[1].executions] == [1, 1, 1]
        # A turn that continues nothing earlier is refused, naming the execution.
        executions[2]["parent"] = 3
        with pytest.raises(InvalidInput, match="execution 3: turn 2 must continue an earlier execution"):
            parse_import(json.dumps(doc))
        md = export_markdown(session)
        assert "**Turn 2**" in md and "And times ten?" in md and "### Reasoning · turn 2 — done" in md
        assert md.index("Four.") < md.index("**Turn 2**") < md.index("Forty.")
        page = standalone_html(session)
        assert page.index("Turn 1") < page.index("Four.") < page.index("And times ten?") < page.index("Forty.")
        assert "1 earlier run(s)" in page and "4 turns" not in page and "2 turns" in page


def test_a_hostile_follow_up_on_the_share_page_and_the_html_export_in_chromium(live, alice, browser, tmp_path):
    owner, client = alice
    sid = two_turn_session(live.store, owner, HOSTILE)
    token = share(client, sid)
    path = tmp_path / "turns.html"
    path.write_bytes(client.get(f"/api/sessions/{sid}/export", params={"format": "html"}).content)
    for url, allowed in ((f"{live.url}/s/{token}", lambda u: urlsplit(u).hostname == "127.0.0.1"),
                         (path.as_uri(), lambda u: u == path.as_uri() or u.startswith("data:"))):
        context, page, requests, console = open_watched(browser, url)
        try:
            assert_not_pwned(page, requests, console, allowed)
            turns = page.locator(".turns .turn h4").all_inner_texts()
            assert turns == ["Turn 1", "Turn 2"]
            assert "And times ten? <script>window.__pwned=1</script>" in page.locator(".turns").inner_text()
            assert "Forty." in page.locator(".turns + .lanes").inner_text()  # the latest turn, in full
        finally:
            context.close()
