"""python -m bench.load: many visitors at once on the real app. Is every run kept, does anyone see
another's sessions, and does the server do much more work for sixteen visitors than for one?

Goals: runs_persisted = runs_requested (runs_lost = 0), runs_failed = 0, cross_owner_leaks = 0,
throughput_over_single ≥ 2.5 (the crowd's tokens/s over one visitor's), p95 wait reported.

Starts the app on 127.0.0.1 with the embedded model at the shipped defaults (max_concurrent_runs
"auto": as many runs as the memory plan has room for share the model's decode steps; --concurrency N
sets it instead), then the same crowd again on a server that runs one at a time
(max_concurrent_runs=1): batching_gain is the crowd's throughput shared over one at a time. Each
simulated visitor is a gradio_client connection carrying its own signed owner cookie, fetched from
the page as a browser gets it, so each is a distinct owner. A visitor makes a session of CELLS prompt
cells and runs them one after another, as someone clicking Run on each would. First one visitor runs
alone (single_visitor_tok_s), then the visitors run at once, one thread each (throughput_tok_s), then
the lone visitor again (single_visitor_after_tok_s: how far the machine itself drifted meanwhile; the
box is shared). Then every visitor lists its sessions, searches for the others' prompt text, and
asks for every other visitor's session by id: anything it gets back that is not its own is a leak.

wait_s, measured in the client: from submitting a run to the first streamed update that carries a
token. It is what a visitor waits before text appears: the time queued behind the others plus this
run's own prefill and first token (about a run's TTFT, which the single-visitor phase shows alone).
engine_busy is the sum of the runs' own generation times (the server's per-run time) over the wall
time: near 1 when runs take turns and the queue never leaves the model idle; above 1 when runs share
decode steps, by about the number of runs decoding together. Tokens are counted from each lane's final
metrics; both lanes generate exactly their max_new_tokens (min_new_tokens is set equal), so both
phases do the same work per run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from pathlib import Path

from bench.common import ServerProcess, converted_home, emit, follow, machine, table
from playground.evaluation.metrics import percentile

LANES = ("standard", "reasoning")
PROMPTS = ["What is {i} + {i}?", "Name a colour that starts with the letter {c}.",
           "Give one word that rhymes with cat.", "Is {i} an even number?", "Say hello in French."]


class Visitor:
    """One browser: its own owner cookie, session, cells; records each run's wait, tokens and outcome."""

    def __init__(self, url: str, name: str, cells: int):
        import httpx
        from gradio_client import Client

        # The page sets the signed owner cookie on the first GET / (server.py): take it as a browser does.
        page = httpx.get(url + "/", timeout=60)
        self.cookie = page.cookies.get("pg_owner")
        assert self.cookie, "the page did not set an owner cookie"
        self.client = Client(url, verbose=False, headers={"Cookie": f"pg_owner={self.cookie}"})
        self.name = name
        self.session = self.client.predict(f"load {name}", api_name="/new_session")["id"]
        self.prompts = [f"[{name}] " + PROMPTS[k % len(PROMPTS)].format(i=k + 2, c="ABCDE"[k % 5])
                        for k in range(cells)]
        self.cells = [self.client.predict(self.session, p, "", api_name="/add_cell")["id"] for p in self.prompts]
        self.waits: list[float] = []
        self.engine_s: list[float] = []  # per run: the server's generate time (both lanes run in one batch)
        self.tokens = 0
        self.failed: list[str] = []
        self.done = 0

    def run_all(self, lanes: dict[str, dict]) -> None:
        for cell, prompt in zip(self.cells, self.prompts, strict=True):
            try:
                t0 = time.perf_counter()
                job = self.client.submit(cell, prompt, "", lanes["standard"], lanes["reasoning"],
                                         api_name="/run_cell")
                first = None
                for now, update in follow(job):
                    if first is None and any((update.get(lane) or {}).get("text") for lane in LANES):
                        first = now - t0
                final = job.result()
                statuses = {final[lane]["status"] for lane in LANES}
                if statuses != {"done"}:
                    self.failed.append(f"{self.name}: run ended {statuses}")
                    continue
                self.tokens += sum(final[lane]["metrics"]["generated_tokens"] for lane in LANES)
                self.engine_s.append(max(final[lane]["metrics"]["total_s"] for lane in LANES))
                self.waits.append(first if first is not None else time.perf_counter() - t0)
                self.done += 1
            except Exception as exc:  # a failed run is a figure here, not the end of the benchmark
                self.failed.append(f"{self.name}: {type(exc).__name__}: {exc}")

    def leaks(self, others: list[Visitor]) -> list[str]:
        """Everything of someone else's this visitor can see: listed, found by search, or fetched by id."""
        from gradio_client.exceptions import AppError

        found = []
        for s in self.client.predict("", api_name="/sessions"):
            if s["id"] != self.session:
                found.append(f"{self.name} lists session {s['id']}")
        for other in others:
            for s in self.client.predict(f"[{other.name}]", api_name="/sessions"):
                found.append(f"{self.name} finds {other.name}'s session {s['id']} by its prompt text")
            try:
                got = self.client.predict(other.session, api_name="/get_session")
                runs = sum(c["executions"] for c in got["cells"])
                found.append(f"{self.name} reads {other.name}'s session ({runs} runs)")
            except AppError:
                pass  # NotFound: as it should be
        return found


def in_threads(fn, items) -> list:
    """fn over items, one thread each (setup and checks: each visitor is its own browser), in order."""
    items = list(items)
    out: list = [None] * len(items)
    errors: list[BaseException] = []

    def work(i, item):
        try:
            out[i] = fn(item)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, item)) for i, item in enumerate(items)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def crowd(url: str | list[str], args, lanes) -> tuple[list[Visitor], float]:
    """`args.visitors` visitors, each with its own identity, run their cells all at once: (visitors, wall s).
    Given several URLs (replicas), visitor n stays on url n mod len, as a sticky proxy keeps a browser."""
    urls = [url] if isinstance(url, str) else url
    visitors = in_threads(lambda n: Visitor(urls[n % len(urls)], f"v{n:02d}", args.cells), range(args.visitors))
    start = threading.Barrier(len(visitors) + 1)

    def go(v: Visitor) -> None:
        start.wait()
        v.run_all(lanes)

    threads = [threading.Thread(target=go, args=(v,), name=v.name) for v in visitors]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return visitors, time.perf_counter() - t0


def server_runs(log_path: Path) -> str:
    """The runs at a time the server chose, as its start-up footer line says ("max concurrent runs N (why)")."""
    import re

    found = re.search(r"max concurrent runs (\d+ \(.*?\)) · loaded in", log_path.read_text())
    return found.group(1) if found else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--visitors", type=int, default=16)
    ap.add_argument("--cells", type=int, default=5, help="cells each visitor runs")
    ap.add_argument("--standard-tokens", type=int, default=16)
    ap.add_argument("--reasoning-tokens", type=int, default=24)
    ap.add_argument("--concurrency", default="",
                    help="PLAYGROUND_MAX_CONCURRENT_RUNS for the server (default: unset, the shipped auto)")
    ap.add_argument("--no-compare", action="store_true",
                    help="skip the second crowd on a server that runs one at a time (the batching gain)")
    args = ap.parse_args()
    lanes = {"standard": {"max_new_tokens": args.standard_tokens, "min_new_tokens": args.standard_tokens},
             "reasoning": {"max_new_tokens": args.reasoning_tokens, "min_new_tokens": args.reasoning_tokens}}

    home = converted_home("bench-load-")
    env = {"PLAYGROUND_MAX_CONCURRENT_RUNS": str(args.concurrency)} if args.concurrency else {}
    server = ServerProcess(home, env=env)
    # This process stands in for browsers on other machines: on a 2-core box it keeps to the last core
    # and yields to the server there, as bench.stream does, so the clients take little of its CPU.
    pinned = hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2
    if pinned:
        os.sched_setaffinity(0, {(os.cpu_count() or 2) - 1})
        os.nice(5)
    try:
        server.wait_ready(timeout=300)
        # One visitor alone: the same cells, the baseline rate.
        alone = Visitor(server.url, "solo", args.cells)
        t0 = time.perf_counter()
        alone.run_all(lanes)
        single_s = time.perf_counter() - t0
        if alone.failed:
            raise SystemExit(f"the single visitor's runs failed: {alone.failed}")
        single_tok_s = alone.tokens / single_s
        single = {"tokens": alone.tokens, "waits": alone.waits, "engine_s": alone.engine_s}

        visitors, load_s = crowd(server.url, args, lanes)
        # The lone visitor again: on a shared machine the load of other programs drifts, and a rate
        # measured before and after the crowd shows how much of a difference is the machine's.
        alone.engine_s, alone.tokens, alone.waits = [], 0, []
        t0 = time.perf_counter()
        alone.run_all(lanes)
        single_after_tok_s = alone.tokens / (time.perf_counter() - t0)

        shared_runs = server_runs(server.log_path)
        seen = in_threads(lambda v: v.leaks([o for o in visitors if o is not v] + [alone]), visitors)
        leaks = [line for lines in seen for line in lines]
        # What the database holds, read as the operator would (not through any visitor).
        from playground.store import open_store

        persisted, wrong_owner = 0, 0
        with open_store(home / "playground.db") as store:
            for v in visitors:
                owner = store.owner_of_session(v.session)
                wrong_owner += owner != v.cookie.rsplit(".", 1)[0]  # the cookie is "<owner id>.<mac>"
                for cell in store.get_session(owner, v.session).cells:
                    persisted += sum(1 for ex in cell.executions if {r.status for r in ex.runs.values()} == {"done"}
                                     and set(ex.runs) == set(LANES))
    finally:
        server.stop()
    unbatched_tok_s = None
    if not args.no_compare and args.concurrency != "1":
        # The same crowd on a server that serves one run at a time: what batching the waiting runs gains.
        server = ServerProcess(home, env={"PLAYGROUND_MAX_CONCURRENT_RUNS": "1",
                                          "PLAYGROUND_DB": str(home / "unbatched.db")})
        try:
            server.wait_ready(timeout=300)
            others, others_s = crowd(server.url, args, lanes)
            unbatched_tok_s = sum(v.tokens for v in others) / others_s
        finally:
            server.stop()
    (home / "models").unlink()  # a link to the converted model; the logs and the databases stay for a look

    waits = [w for v in visitors for w in v.waits]
    engine_s = [e for v in visitors for e in v.engine_s]
    failed = [f for v in visitors for f in v.failed]
    tokens = sum(v.tokens for v in visitors)
    throughput = tokens / load_s
    requested = args.visitors * args.cells
    print(table([
        {"phase": "one visitor alone", "runs": args.cells, "tokens": single["tokens"], "wall_s": single_s,
         "tok_s": single_tok_s, "wait_p50_s": percentile(single["waits"], 50),
         "wait_p95_s": percentile(single["waits"], 95), "engine_s_per_run": statistics.mean(single["engine_s"]),
         "engine_busy": sum(single["engine_s"]) / single_s},
        {"phase": f"{args.visitors} visitors at once", "runs": requested, "tokens": tokens, "wall_s": load_s,
         "tok_s": throughput, "wait_p50_s": percentile(waits, 50), "wait_p95_s": percentile(waits, 95),
         "engine_s_per_run": statistics.mean(engine_s) if engine_s else 0.0,
         "engine_busy": sum(engine_s) / load_s},
    ]))
    print(table([
        {"check": "runs persisted (both lanes done)", "value": f"{persisted} / {requested}"},
        {"check": "runs failed", "value": len(failed)},
        {"check": "cross-owner leaks", "value": len(leaks)},
        {"check": "sessions owned by the wrong owner", "value": wrong_owner},
        {"check": "throughput / single visitor", "value": throughput / single_tok_s},
        {"check": "single visitor again, after the crowd: tok/s", "value": single_after_tok_s},
        {"check": "same crowd, one run at a time: tok/s", "value": unbatched_tok_s or "-"},
        {"check": "batching gain (crowd tok/s, batched / one at a time)",
         "value": throughput / unbatched_tok_s if unbatched_tok_s else "-"},
    ]))
    for line in (failed + leaks)[:20]:
        print("  !", line)
    emit({"runs_requested": requested, "runs_persisted": persisted, "runs_failed": len(failed),
          "cross_owner_leaks": len(leaks) + wrong_owner,
          "p50_wait_s": round(percentile(waits, 50), 3) if waits else None,
          "p95_wait_s": round(percentile(waits, 95), 3) if waits else None,
          "throughput_tok_s": round(throughput, 2), "single_visitor_tok_s": round(single_tok_s, 2),
          "throughput_over_single": round(throughput / single_tok_s, 3), "runs_lost": requested - persisted,
          "single_visitor_after_tok_s": round(single_after_tok_s, 2),
          "unbatched_throughput_tok_s": round(unbatched_tok_s, 2) if unbatched_tok_s else None,
          "batching_gain": round(throughput / unbatched_tok_s, 3) if unbatched_tok_s else None,
          "single_wait_p50_s": round(statistics.median(single["waits"]), 3), "load_wall_s": round(load_s, 1),
          "engine_s_per_run_single": round(statistics.mean(single["engine_s"]), 3),
          "engine_s_per_run_load": round(statistics.mean(engine_s), 3) if engine_s else None,
          "engine_busy_single": round(sum(single["engine_s"]) / single_s, 3),
          "engine_busy_load": round(sum(engine_s) / load_s, 3),
          "visitors": args.visitors, "cells_per_visitor": args.cells,
          "tokens_per_run": args.standard_tokens + args.reasoning_tokens,
          "max_concurrent_runs": shared_runs or args.concurrency,
          "pinned_cores": pinned, "machine": machine()})


if __name__ == "__main__":
    main()
