"""python -m bench.all: run every benchmark, write bench/results/latest.json and BENCHMARKS.md.

Each benchmark runs in its own process (as `python -m bench.NAME`); its last output line is its
JSON figures. The Markdown table puts each figure beside its goal, with the machine and versions.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

from bench.common import ROOT, machine

# name -> [(figure, goal text, check)]; a check takes the figure and says whether the goal is met.
GOALS = {
    "paired": [("ratio", "≤ 0.55", lambda v: v <= 0.55), ("standard_s", "", None), ("reasoning_s", "", None),
               ("paired_s", "", None), ("lone_ratio", "≥ 0.9", lambda v: v >= 0.9)],
    "arrival": [("wait_ratio", "≤ 3", lambda v: v <= 3), ("alone_wait_s", "", None), ("behind_wait_s", "", None),
                ("a_tok_s", "", None)],
    "stream": [("efficiency", "≥ 0.95", lambda v: v >= 0.95), ("late_over_early", "≤ 1.2", lambda v: v <= 1.2),
               ("engine_tok_s", "", None), ("client_tok_s", "", None), ("early_update_ms", "", None),
               ("late_update_ms", "", None), ("idle_server_cpu_pct", "", None)],
    "page": [("efficiency", "", None), ("late_over_early", "", None), ("early_update_ms", "", None),
             ("late_update_ms", "", None), ("early_kb_s", "", None), ("late_kb_s", "", None),
             ("mb_received", "", None)],
    "page_scale": [("ready_ms", "≤ 2000", lambda v: v <= 2000), ("add_ms", "≤ 300", lambda v: v <= 300),
                   ("move_ms", "≤ 300", lambda v: v <= 300), ("delete_ms", "≤ 300", lambda v: v <= 300),
                   *((f"{k}_ratio", "≤ 2", lambda v: v <= 2) for k in ("ready", "add", "move", "delete")),
                   *((f"{k}_exponent", "", None) for k in ("ready", "add", "move", "delete")),
                   ("heap_mb", "≤ 300", lambda v: v <= 300), ("gpu_bytes_over_budget", "≤ 1", lambda v: v <= 1),
                   ("gpu_mb_received", "", None), ("gpu_text_kb", "", None),
                   ("gpu_longest_task_ms", "≤ 200", lambda v: v <= 200),
                   ("gpu_max_behind_s", "≤ 1", lambda v: v <= 1)],
    "store": [("open_session_ms", "≤ 250", lambda v: v <= 250), ("list_sessions_ms", "≤ 50", lambda v: v <= 50),
              ("finish_run_ms", "≤ 10", lambda v: v <= 10), ("checkpoint_ms", "≤ 5", lambda v: v <= 5)],
    "load_model": [("cold_conversion_s", "", None)],
    "load": [("runs_lost", "= 0", lambda v: v == 0), ("runs_failed", "= 0", lambda v: v == 0),
             ("cross_owner_leaks", "= 0", lambda v: v == 0),
             ("throughput_over_single", "≥ 2.5", lambda v: v >= 2.5), ("throughput_tok_s", "", None),
             ("single_visitor_tok_s", "", None), ("single_visitor_after_tok_s", "", None),
             ("p50_wait_s", "", None), ("p95_wait_s", "", None), ("engine_busy_load", "", None),
             ("unbatched_throughput_tok_s", "", None), ("batching_gain", "", None), ("max_concurrent_runs", "", None)],
    "batch": [("scheduler_over_chunks", "≥ 1.3", lambda v: v >= 1.3), ("speedup", "> 1", lambda v: v > 1),
              ("sequential_s", "", None), ("chunks_s", "", None), ("scheduler_s", "", None), ("cells", "", None)],
}
ALL = "paired,arrival,stream,page,page_scale,store,load_model,load,batch"
# What a reader needs to read a benchmark's figures right, printed under the table.
NOTES = {
    "load": "16 visitors (each its own owner cookie) run 5 cells each at once. wait = submit to the first "
            "streamed token, measured in the client (queue + prefill). The server runs at the shipped "
            "max_concurrent_runs (auto, from the memory plan: the number and its reason are in "
            "max_concurrent_runs): every run's rows share the model's decode steps. unbatched_throughput_tok_s "
            "is the same crowd on a server that runs one at a time, and batching_gain the ratio; "
            "single_visitor_after_tok_s shows how far the shared machine drifted during the run.",
    "arrival": "Visitor A runs a 600-token reasoning lane; visitor B submits a 2 × 16-token cell 3 s later, at the "
               "shipped defaults. wait_ratio = B's wait to first token then over B's wait alone (medians).",
    "page": "The notebook page in headless Chromium runs one cell (1,500 reasoning tokens); efficiency is the "
            "engine's tok/s in the server during that run over the engine alone, and kb_s the bytes the page "
            "received per second in the first and last fifth of the run (late includes the charts, redrawn "
            "every 3 s with every token so far). No goal of its own: bench.stream holds the issue's goals.",
    "page_scale": "The page in headless Chromium on sessions of 10, 100 and 1,000 cells (one in ten run), built "
                  "through the store; figures at 1,000 cells, ratios 1,000 over 10, exponent the slope of log(time) "
                  "over log(cells). ready = navigation until every row is known, the first cell open and a key "
                  "handled; add / move / delete = the click until the page shows its result. gpu_*: one cell "
                  "whose reasoning lane streams 16,000 tokens from a local OpenAI-compatible stub (150 tok/s a "
                  "lane) through the remote backend; bytes_over_budget = bytes received / (3 x text + 2 MB).",
    "batch": "16 sample cells (samples/arithmetic-word-logic.jsonl) of mixed lengths (8–96 tokens per lane) "
             "run one by one, in chunks of four (each waiting for its slowest row: the old shape), and through "
             "the step scheduler with four in flight; scheduler_over_chunks = chunks_s / scheduler_s.",
}


def run_one(name: str) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=ROOT, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout)[-2000:], "seconds": round(time.perf_counter() - started, 1)}
    figures = json.loads(lines[-1])
    figures["seconds"] = round(time.perf_counter() - started, 1)
    return figures


def markdown(results: dict, info: dict) -> str:
    rows = []
    for name, figures in results.items():
        if "error" in figures:
            rows.append(f"| {name} | failed | | |")
            continue
        for key, goal, check in GOALS.get(name, []):
            value = figures.get(key)
            met = "" if check is None or value is None else ("✓" if check(value) else "✗ not met")
            rows.append(f"| {name} | {key} | {value} | {goal} {met} |")
    dates = ", ".join(f"{name} {figures.get('date') or '?'}" for name, figures in results.items())
    notes = "".join(f"\n- **{name}**: {NOTES[name]}" for name in results if name in NOTES)
    return (f"# Benchmarks\n\nMade by `python -m bench.all` on {info['date']}: {info['machine']}.\n"
            f"Python {info['python']}, torch {info['torch']}. Figures are single runs on a shared, noisy machine: "
            "compare ratios within one run.\n\n| benchmark | figure | value | goal |\n|---|---|---|---|\n"
            + "\n".join(rows) + f"\n\nMeasured: {dates}.\n" + (f"\nNotes:{notes}\n" if notes else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", default=ALL,
                    help="comma list of benchmarks; the others keep their figures from bench/results/latest.json")
    args = ap.parse_args()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    # Re-running one benchmark must not wipe the others' figures from BENCHMARKS.md: they are kept, in
    # the order of ALL, each with the date it was measured.
    previous = json.loads((out / "latest.json").read_text()) if (out / "latest.json").is_file() else {}
    results = {name: {"date": previous.get("info", {}).get("date"), **figures}
               for name, figures in previous.get("results", {}).items()}
    for name in args.only.split(","):
        if name:
            results[name] = {"date": time.strftime("%Y-%m-%d"), **run_one(name)}
    order = ALL.split(",")
    results = dict(sorted(results.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    m = machine()
    info = {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "torch": m["torch"],
            "machine": f"{m['cpu_count']} CPU cores, GPU: {m['gpu'] or 'none'}, {m['platform']}"}
    (out / "latest.json").write_text(json.dumps({"info": info, "results": results}, indent=1))
    (ROOT / "BENCHMARKS.md").write_text(markdown(results, info))
    print(markdown(results, info))
    print(json.dumps({name: {k: v for k, v in f.items() if not isinstance(v, dict)} for name, f in results.items()},
                     sort_keys=True))


if __name__ == "__main__":
    main()
