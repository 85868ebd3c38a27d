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
    "paired": [("ratio", "≤ 0.60", lambda v: v <= 0.60), ("standard_s", "", None), ("reasoning_s", "", None),
               ("paired_s", "", None)],
    "stream": [("efficiency", "≥ 0.95", lambda v: v >= 0.95), ("late_over_early", "≤ 1.2", lambda v: v <= 1.2),
               ("engine_tok_s", "", None), ("client_tok_s", "", None), ("early_update_ms", "", None),
               ("late_update_ms", "", None)],
    "store": [("open_session_ms", "≤ 250", lambda v: v <= 250), ("list_sessions_ms", "≤ 50", lambda v: v <= 50),
              ("finish_run_ms", "≤ 10", lambda v: v <= 10), ("checkpoint_ms", "≤ 5", lambda v: v <= 5)],
    "load_model": [("cold_conversion_s", "", None)],
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
    return (f"# Benchmarks\n\nMade by `python -m bench.all` on {info['date']}: {info['machine']}.\n"
            f"Python {info['python']}, torch {info['torch']}. Figures are single runs on a shared, noisy machine: "
            "compare ratios within one run.\n\n| benchmark | figure | value | goal |\n|---|---|---|---|\n"
            + "\n".join(rows) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", default="paired,stream,store,load_model", help="comma list of benchmarks")
    args = ap.parse_args()
    results = {name: run_one(name) for name in args.only.split(",") if name}
    m = machine()
    info = {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "torch": m["torch"],
            "machine": f"{m['cpu_count']} CPU cores, GPU: {m['gpu'] or 'none'}, {m['platform']}"}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps({"info": info, "results": results}, indent=1))
    (ROOT / "BENCHMARKS.md").write_text(markdown(results, info))
    print(markdown(results, info))
    print(json.dumps({name: {k: v for k, v in f.items() if not isinstance(v, dict)} for name, f in results.items()},
                     sort_keys=True))


if __name__ == "__main__":
    main()
