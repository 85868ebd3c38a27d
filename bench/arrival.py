"""python -m bench.arrival: does a visitor who arrives during someone else's long run wait for it?

Goal: B's wait to first token with A's run going ≤ 3× B's wait alone (wait_ratio ≤ 3), at the
shipped defaults (no PLAYGROUND_* setting but the port and home).

Visitor A (its own owner cookie) runs a cell whose reasoning lane makes --long tokens; visitor B
(another owner) submits a --short-token cell --arrive-s seconds after A submitted. B's wait is
measured in the client, from submit to the first streamed update carrying text (queue + prefill +
first token), as bench.load measures it. The same B cell alone, with the model idle, is the
baseline. The two alternate --repeats times and the figures are medians: the box is shared and
noisy, and a ratio within one run is what compares.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import threading
import time

from bench.common import ServerProcess, converted_home, emit, machine, table
from bench.load import Visitor


def b_wait(url: str, lanes: dict, name: str) -> float:
    """One fresh visitor runs one short cell; returns its wait to first token."""
    v = Visitor(url, name, 1)
    v.run_all(lanes)
    if v.failed:
        raise SystemExit(f"B's run failed: {v.failed}")
    return v.waits[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--long", type=int, default=600, help="tokens of A's reasoning lane")
    ap.add_argument("--short", type=int, default=16, help="tokens of each of B's lanes")
    ap.add_argument("--arrive-s", type=float, default=3.0, help="B submits this long after A")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server (default: none)")
    args = ap.parse_args()
    short = {"max_new_tokens": args.short, "min_new_tokens": args.short}
    b_lanes = {"standard": short, "reasoning": short}
    a_lanes = {"standard": {"max_new_tokens": 64, "min_new_tokens": 64},
               "reasoning": {"max_new_tokens": args.long, "min_new_tokens": args.long}}
    env = dict(item.split("=", 1) for item in args.env)

    home = converted_home("bench-arrival-")
    server = ServerProcess(home, env=env)
    # This process stands in for two browsers elsewhere: on a 2-core box it keeps to the last core.
    pinned = hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2
    if pinned:
        os.sched_setaffinity(0, {(os.cpu_count() or 2) - 1})
        os.nice(5)
    alone, behind, a_tok_s = [], [], []
    try:
        server.wait_ready(timeout=300)
        b_wait(server.url, b_lanes, "warm")  # the first run of a process pays one-time costs
        for k in range(args.repeats):
            alone.append(b_wait(server.url, b_lanes, f"alone{k}"))
            a = Visitor(server.url, f"A{k}", 1)
            t0 = time.perf_counter()
            thread = threading.Thread(target=a.run_all, args=(a_lanes,))
            thread.start()
            time.sleep(max(0.0, args.arrive_s - (time.perf_counter() - t0)))
            behind.append(b_wait(server.url, b_lanes, f"B{k}"))
            thread.join()
            if a.failed:
                raise SystemExit(f"A's run failed: {a.failed}")
            a_tok_s.append(a.tokens / a.engine_s[0])
    finally:
        server.stop()
        (home / "models").unlink()
        shutil.rmtree(home, ignore_errors=True)
    alone_s, behind_s = statistics.median(alone), statistics.median(behind)
    ratio = behind_s / alone_s
    print(table([{"B's wait to first token": "alone", "median_s": alone_s,
                  "runs_s": " ".join(f"{x:.2f}" for x in alone)},
                 {"B's wait to first token": f"{args.arrive_s:g} s into A's run", "median_s": behind_s,
                  "runs_s": " ".join(f"{x:.2f}" for x in behind)}]))
    print(f"A: {args.long} reasoning tokens ({statistics.median(a_tok_s):.1f} tok/s over both lanes); "
          f"B: 2 × {args.short} tokens; wait ratio {ratio:.2f} (goal ≤ 3); server env {env or 'shipped defaults'}")
    emit({"alone_wait_s": round(alone_s, 3), "behind_wait_s": round(behind_s, 3), "wait_ratio": round(ratio, 3),
          "a_tok_s": round(statistics.median(a_tok_s), 2), "long_tokens": args.long, "short_tokens": args.short,
          "arrive_s": args.arrive_s, "repeats": args.repeats, "server_env": env, "pinned_cores": pinned,
          "machine": machine()})


if __name__ == "__main__":
    main()
