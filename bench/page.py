"""python -m bench.page: does the notebook page hold generation back at long outputs?

bench.stream measures the API a script uses; this measures the page people use. It starts the app
on 127.0.0.1, opens the notebook in headless Chromium (Debian's chromium, through Playwright), runs
one cell whose reasoning lane makes 1,500 tokens, and reads:
- the engine's tokens/s in the server during the streamed run, against the same engine alone in this
  process (efficiency; runs alternate, --repeats, and the figures are medians);
- the bytes the page received per second in the first and the last fifth of the run (Chrome's
  DevTools network events): growing text that is sent as appends keeps the late rate near the early
  one, where re-sending whole texts makes it grow with the text;
- the server's time per UI update early and late (its "stream stats" log line).
Charts are redrawn every few seconds and at the end with every token, so some growth of the late
byte rate is expected from them.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ServerProcess,
    emit,
    lane_status,
    machine,
    set_setting,
    table,
    wait_status,
)
from bench.stream import PROMPT, as_client, as_engine, engine_once, last_stream_stats


def page_once(browser, url: str, tokens: int) -> dict:
    """One run of a fresh cell in a fresh page: the page's figures and the reasoning lane's status line."""
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    try:
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        received: list[tuple[float, int]] = []
        cdp.on("Network.dataReceived", lambda e: received.append((time.perf_counter(), e["dataLength"])))
        page.goto(url + "/")
        # Loaded: the list has its rows and the first cell is open (the view is in the page, empty, before).
        page.wait_for_function("() => window.pgNotebook && window.pgNotebook.state().open", timeout=120_000)
        page.wait_for_selector(".prompt-cell .run-btn", timeout=120_000)
        cell = page.locator(".prompt-cell").first
        cell.locator(".cell-prompt textarea").fill(PROMPT)
        set_setting(cell, 0, "max_new_tokens", "32")
        set_setting(cell, 1, "max_new_tokens", str(tokens))
        received.clear()
        t0 = time.perf_counter()
        cell.locator(".run-btn").click()
        wait_status(cell, "reasoning", "running", 300)
        wait_status(cell, "reasoning", "done|stopped|error", 900)
        wall = time.perf_counter() - t0
        status = lane_status(cell, "reasoning")
        fifth = wall / 5
        early = sum(n for t, n in received if t < t0 + fifth) / fifth
        late = sum(n for t, n in received if t > t0 + 4 * fifth) / fifth
        m = re.search(r"([\d.]+) tok/s", status)
        return {"status": status, "tok_s": float(m.group(1)) if m else None, "wall_s": wall,
                "bytes": sum(n for _, n in received), "early_kb_s": early / 1000, "late_kb_s": late / 1000}
    finally:
        context.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=1500, help="reasoning-lane max tokens")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    std = {"max_new_tokens": 32, "min_new_tokens": 32}
    rsn = {"max_new_tokens": args.tokens, "min_new_tokens": args.tokens}
    home = Path(tempfile.mkdtemp(prefix="bench-page-"))
    server = ServerProcess(home, env={"PLAYGROUND_MAX_NEW_TOKENS": str(max(args.tokens, 8192))})
    pinned = hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2
    rows = []
    try:
        server.wait_ready(timeout=300)
        from playwright.sync_api import sync_playwright

        from playground.backends.local.engine import Engine
        from playground.models.loading import load_model

        engine = Engine(load_model("embedded", "nf4", models_dir=home / "models"))
        engine_once(engine, {"max_new_tokens": 64}, {"max_new_tokens": 64})  # warm-up
        # The browser stands in for a visitor's machine: started while this process keeps to the client's
        # core, its processes stay there when this process later runs the engine-alone runs on every core.
        as_client(pinned)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page_once(browser, server.url, 64)  # warm-up: the server's first generate and the page's assets
            for i in range(args.repeats):
                as_client(pinned)
                got = page_once(browser, server.url, args.tokens)
                time.sleep(1.0)
                updates, early_ms, late_ms = last_stream_stats(server)
                as_engine(pinned)
                alone = engine_once(engine, std, rsn)
                rows.append({"run": i + 1, "engine_alone_tok_s": alone, "page_tok_s": got["tok_s"],
                             "efficiency": got["tok_s"] / alone, "updates": updates,
                             "early_ms": early_ms, "late_ms": late_ms,
                             "early_kb_s": got["early_kb_s"], "late_kb_s": got["late_kb_s"],
                             "mb": got["bytes"] / 1e6})
            browser.close()
    finally:
        server.stop()

    med = statistics.median

    def m(key):
        return med(r[key] for r in rows)

    print(table(rows))
    emit({"efficiency": round(m("efficiency"), 3), "engine_tok_s": round(m("engine_alone_tok_s"), 2),
          "page_tok_s": round(m("page_tok_s"), 2), "early_update_ms": round(m("early_ms"), 3),
          "late_update_ms": round(m("late_ms"), 3), "late_over_early": round(m("late_ms") / m("early_ms"), 3),
          "early_kb_s": round(m("early_kb_s"), 1), "late_kb_s": round(m("late_kb_s"), 1),
          "late_over_early_bytes": round(m("late_kb_s") / m("early_kb_s"), 2), "mb_received": round(m("mb"), 2),
          "updates": rows[-1]["updates"], "reasoning_tokens": args.tokens, "repeats": args.repeats,
          "machine": machine()})


if __name__ == "__main__":
    main()
