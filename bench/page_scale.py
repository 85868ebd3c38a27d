"""python -m bench.page_scale: does the notebook page stay fast at 1,000 cells, and at GPU speed?

The app runs on 127.0.0.1 with its runs going to a local token stub (bench/token_stub.py, through the
remote backend: no model to load), and the page opens in headless Chromium (Debian's chromium).

Scale: sessions of 10, 100 and 1,000 cells (one in ten run, 200 tokens a lane), built through the store;
medians of --repeats, each measured where the page is (Playwright polls every frame):
  ready_ms   from the navigation until the page answers input: every row known, the first cell open,
             and a key press (↓) handled
  add_ms     "+ Prompt cell" until the new row shows and the new cell is open
  move_ms    ↑ on the open cell until its row moved and the view says its new number
  delete_ms  ✕ (confirmed) until the row is gone and its neighbour is open
  heap_mb    the page's JS heap after all of that (after a garbage collection)
and the growth exponent of each time: the slope of log(time) over log(cells).
Goals: at 1,000 cells ready ≤ 2 s, add / move / delete ≤ 300 ms; 1,000-cell / 10-cell ≤ 2 each; heap ≤ 300 MB.

GPU speed: one cell whose reasoning lane streams 16,000 tokens (the standard lane 2,000) at 150 tokens/s a
lane from the stub. From Run until the page shows the end: the bytes the page received (Chrome's
network events), the longest main-thread task (PerformanceObserver "longtask"), and how far the page's
reasoning trace fell behind the stub (sampled in the page every 50 ms: for how long had the stub sent a
token the page did not show yet). Goals: bytes ≤ 3 × text + 2 MB; no task > 200 ms; never > 1 s behind.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bench.common import CHROMIUM, CHROMIUM_ARGS, ServerProcess, emit, machine, table
from bench.store import run_record
from bench.token_stub import MODEL, TOKEN_TEXT, TokenStub
from playground.evaluation.metrics import LaneMetrics
from playground.store import CellFull, Execution, SessionFull, open_store
from playground.web.identity import COOKIE_NAME, load_secret, new_owner_id, sign

SIZES = (10, 100, 1000)
RUN_EVERY = 10  # one cell in ten has a stored run
RUN_TOKENS = 200
GOALS = {"ready_ms": 2000, "add_ms": 300, "move_ms": 300, "delete_ms": 300, "ratio": 2.0, "heap_mb": 300,
         "bytes_over_budget": 1.0, "longest_task_ms": 200, "max_behind_s": 1.0}
LONG_TOKENS, LONG_STD_TOKENS, TOKENS_PER_S = 16_000, 2_000, 150.0

STATE = "window.pgNotebook && window.pgNotebook.state()"
# Samples the page's reasoning trace and records long tasks, from the moment Run is pressed.
WATCH_JS = """() => {
  window.__samples = []; window.__tasks = [];
  new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__tasks.push(e.duration); })
    .observe({entryTypes: ['longtask']});
  window.__sampler = setInterval(() => {
    const t = document.querySelector('#open-cell .lane-reasoning .reasoning-trace');
    window.__samples.push([Date.now() / 1000, t ? t.textContent.length : 0]);
  }, 50);
}"""


def stored_run(rng: random.Random, lane: str, now: datetime):
    """A finished run as the app stores one: bench.store's, with every metric the page shows."""
    run = run_record(rng, lane, RUN_TOKENS, now)
    m = run.metrics
    metrics = LaneMetrics(prompt_tokens=40, generated_tokens=RUN_TOKENS, reasoning_tokens=run.reasoning_tokens,
                          answer_tokens=run.answer_tokens, forced_tokens=0, ttft_s=m["ttft_s"], ttfat_s=m["ttft_s"],
                          total_s=m["total_s"], decode_tok_s=m["decode_tok_s"], itl_p50_ms=m["itl_p50_ms"],
                          itl_p95_ms=m["itl_p95_ms"], finish_reason="stop")
    return replace(run, metrics=metrics.to_dict())


def session_of(n: int, rng: random.Random) -> SessionFull:
    now = datetime.now(UTC)
    cells = []
    for i in range(n):
        runs = {lane: stored_run(rng, lane, now) for lane in ("standard", "reasoning")}
        cells.append(CellFull(id="", session_id="", position=i, kind="prompt", prompt=f"Question {i + 1}: what is "
                              f"{i} + {i * 7 % 13}? Show the steps.", system_prompt=None, note="",
                              settings={"standard": {}, "reasoning": {}}, created_at=now, updated_at=now,
                              executions=(Execution(1, runs),) if i % RUN_EVERY == 0 else ()))
    return SessionFull(id="", owner="", title=f"{n} cells", created_at=now, updated_at=now, cells=tuple(cells))


def visitor_page(browser, server, cookie: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1400})
    context.add_cookies([{"name": COOKIE_NAME, "value": cookie, "url": server.url}])
    page = context.new_page()
    page.on("dialog", lambda d: d.accept())
    return context, page


# From the click's own timestamp (when the browser got it, so a busy page's wait counts) until `cond` holds,
# checked every frame in the page: Playwright's own round trips are not in the figure.
ARM_JS = """(cond) => { const done = new Function('return (' + cond + ')()');
  window.__took = new Promise((resolve) => document.addEventListener('click', (e) => {
    const poll = () => done() ? resolve(performance.now() - e.timeStamp) : requestAnimationFrame(poll);
    poll(); }, {capture: true, once: true})); }"""
TITLE = "document.querySelector('#open-cell .prose.open-cell-title').innerText"


def clicked_ms(page, selector: str, cond: str) -> float:
    page.evaluate(ARM_JS, cond)
    page.click(selector)
    return page.evaluate("() => window.__took")


def scale_once(page, url: str, n: int) -> dict:
    """One round on an n-cell session: reload, add, move, delete (the session ends as it began)."""
    page.goto(url)
    page.wait_for_function(f"() => {STATE} && {STATE}.rows == {n} && document.querySelector('#open-cell .prompt-cell')",
                           timeout=120_000, polling="raf")
    page.keyboard.press("ArrowDown")  # answered when the cursor moves: from the navigation's start
    ready = page.evaluate(f"() => new Promise((ok) => {{ const poll = () => {STATE}.cursor == 1 ? "
                          "ok(performance.now()) : requestAnimationFrame(poll); poll(); })")
    page.evaluate("() => { window.confirm = () => true; }")  # the delete's question, answered at once
    ids = "window.pgNotebook.ids()"
    add = clicked_ms(page, "#add-prompt", f"() => {STATE}.rows == {n + 1} && {STATE}.open == {ids}[{n}] && "
                                          f"/Cell {n + 1}\\b/.test({TITLE})")
    new_id = page.evaluate(f"{ids}[{n}]")
    move = clicked_ms(page, "#open-cell .cell-up", f"() => {ids}[{n - 1}] == '{new_id}' && /Cell {n}\\b/.test({TITLE})")
    delete = clicked_ms(page, "#open-cell .cell-delete", f"() => {STATE}.rows == {n} && !{ids}.includes('{new_id}') "
                                                         f"&& {STATE}.open && {STATE}.open != '{new_id}'")
    return {"ready_ms": ready, "add_ms": add, "move_ms": move, "delete_ms": delete}


def heap_mb(page) -> float:
    cdp = page.context.new_cdp_session(page)
    cdp.send("HeapProfiler.collectGarbage")
    return cdp.send("Runtime.getHeapUsage")["usedSize"] / 2**20


def exponent(sizes, values) -> float:
    xs, ys = [math.log(s) for s in sizes], [math.log(max(v, 1e-6)) for v in values]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def scale(browser, server, store, repeats: int) -> list[dict]:
    """Every size in turn within each repeat, so the machine's drift (this box is shared) falls on all
    sizes alike and the ratios compare like with like."""
    pages = []
    for n in SIZES:
        owner = new_owner_id()
        session = store.import_sessions(owner, [session_of(n, random.Random(n))])[0]
        context, page = visitor_page(browser, server, sign(owner, load_secret(server.home)))
        url = f"{server.url}/?session={session.id}"
        scale_once(page, url, n)  # warm-up: the page's assets into the cache, the server's first calls
        pages.append((n, context, page, url))
    rounds: dict[int, list[dict]] = {n: [] for n in SIZES}
    for _ in range(repeats):
        for n, _context, page, url in pages:
            rounds[n].append(scale_once(page, url, n))
    rows = []
    for n, context, page, _url in pages:
        row = {"cells": n, **{k: statistics.median(r[k] for r in rounds[n]) for k in rounds[n][0]}}
        row["heap_mb"] = heap_mb(page)
        rows.append(row)
        context.close()
        print(f"  {n:>5} cells: " + ", ".join(f"{k} {v:,.0f}" for k, v in row.items() if k != "cells"), flush=True)
    return rows


def lag_s(samples: list, timeline: list) -> float:
    """The longest time the page went without showing a token the stub had sent (tokens from chars)."""
    worst, k = 0.0, 0
    sent_at = [t for t, _ in timeline]
    for t, chars in samples:
        shown = round(chars / len(TOKEN_TEXT))
        while k < len(sent_at) and sent_at[k] <= t:
            k += 1
        if shown < k:  # the stub had sent token shown+1 by now: since when?
            worst = max(worst, t - sent_at[min(shown, len(sent_at) - 1)])
    return worst


def gpu_speed(browser, server, store, stub: TokenStub) -> dict:
    owner = new_owner_id()
    session = store.create_session(owner, "GPU speed")
    settings = {"standard": {"max_new_tokens": LONG_STD_TOKENS}, "reasoning": {"max_new_tokens": LONG_TOKENS}}
    store.add_cell(owner, session.id, prompt="Think for a very long time.", settings=settings)
    context, page = visitor_page(browser, server, sign(owner, load_secret(server.home)))
    try:
        page.goto(f"{server.url}/?session={session.id}")
        page.wait_for_selector("#open-cell .prompt-cell .run-btn", timeout=120_000)
        page.wait_for_timeout(1000)
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        received: dict[str, int] = {}  # bytes by request: the app's stream, and assets fetched meanwhile
        urls: dict[str, str] = {}
        cdp.on("Network.requestWillBeSent", lambda e: urls.__setitem__(e["requestId"], e["request"]["url"]))
        cdp.on("Network.dataReceived", lambda e: received.__setitem__(
            e["requestId"], received.get(e["requestId"], 0) + e["dataLength"]))
        stub.sent.clear()
        page.evaluate(WATCH_JS)
        t0 = time.perf_counter()
        page.click("#open-cell .run-btn")
        page.wait_for_function("() => /done|stopped|error/.test(document.querySelector("
                               "'#open-cell .lane-reasoning .prose.lane-status').innerText)", timeout=600_000)
        page.wait_for_timeout(3000)  # the final charts and row
        wall = time.perf_counter() - t0
        samples, tasks = page.evaluate("[window.__samples, window.__tasks]")
        status = page.locator("#open-cell .lane-reasoning .prose.lane-status").inner_text()
    finally:
        context.close()
    text = sum(stub.sent.values())
    # The data the page got: everything but static files (a chart panel's plotly.js, once, then cached).
    data = sum(n for rid, n in received.items() if "/assets/" not in urls.get(rid, ""))
    assets = sum(received.values()) - data
    return {"status": status.split(" · ")[0], "wall_s": wall, "text_kb": text / 1e3, "mb_received": data / 1e6,
            "asset_mb": assets / 1e6, "bytes_over_budget": data / (3 * text + 2e6),
            "longest_task_ms": max(tasks, default=0.0), "long_tasks": len(tasks),
            # Against the tokens the trace shows: the answer after </think> goes to the answer box, and counting
            # it here read the trace as falling behind from the moment the reasoning ended.
            "max_behind_s": lag_s(samples, stub.timeline.get("reasoning", [])[:stub.trace_entries.get("reasoning")])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=("scale", "gpu-speed"), help="run one part only")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-page-scale-"))
    from playwright.sync_api import sync_playwright

    with TokenStub(TOKENS_PER_S) as stub:
        server = ServerProcess(home, env={"PLAYGROUND_REMOTE_URL": stub.url, "PLAYGROUND_REMOTE_MODEL": MODEL,
                                          "PLAYGROUND_FETCH_EMBEDDED": "0",
                                          "PLAYGROUND_MAX_NEW_TOKENS": str(LONG_TOKENS + 1000)})
        try:
            server.wait_ready(timeout=300)
            with open_store(home / "playground.db") as store, sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                rows = scale(browser, server, store, args.repeats) if args.only != "gpu-speed" else []
                gpu = gpu_speed(browser, server, store, stub) if args.only != "scale" else None
                browser.close()
        finally:
            server.stop()
    report(rows, gpu, args.repeats)


def report(rows: list[dict], gpu: dict | None, repeats: int) -> None:
    figures, met = {}, []
    if rows:
        print(table(rows))
        big, small = rows[-1], rows[0]
        times = ("ready_ms", "add_ms", "move_ms", "delete_ms")
        figures = {**{k: round(big[k], 1) for k in times}, "heap_mb": round(big["heap_mb"], 1)}
        figures.update({f"{k.removesuffix('_ms')}_ratio": round(big[k] / small[k], 2) for k in times})
        figures.update({f"{k.removesuffix('_ms')}_exponent": round(exponent([r["cells"] for r in rows],
                                                                            [r[k] for r in rows]), 3) for k in times})
        met = [big[k] <= GOALS[k] for k in times] + [big["heap_mb"] <= GOALS["heap_mb"]]
        met += [figures[f"{k.removesuffix('_ms')}_ratio"] <= GOALS["ratio"] for k in times]
    if gpu is not None:
        print(table([gpu]))
        figures.update({f"gpu_{k}": round(v, 3) if isinstance(v, float) else v for k, v in gpu.items()})
        met += [gpu["bytes_over_budget"] <= 1, gpu["longest_task_ms"] <= GOALS["longest_task_ms"],
                gpu["max_behind_s"] <= GOALS["max_behind_s"]]
    emit({**figures, "meets_goals": all(met), "goals": GOALS, "sizes": list(SIZES), "repeats": repeats,
          "machine": machine()})


if __name__ == "__main__":
    main()
