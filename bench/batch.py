"""python -m bench.batch: does the step scheduler keep a batch run full? 16 sample cells of mixed
lengths run three ways, in one process, through playground.app.batch_jobs.run_jobs into a scratch database.

- one by one: each cell alone (batch_size=1), what pressing Run on each cell does;
- chunks: four cells at a time, each chunk waiting for its slowest row before the next starts
  (today's four-per-generate shape: one run_jobs call per chunk);
- scheduler: one run_jobs call over every cell with four in flight: when a cell ends, the next
  one's rows join the running batch at the next decode step.

The cells' lengths cycle through --lengths (new tokens of each lane, min_new_tokens = max, greedy),
so every way does exactly the same work. Goal: scheduler_over_chunks = chunks_s / scheduler_s ≥ 1.3.
The three alternate --repeats times and the figures are medians (the box is shared and noisy).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, emit, machine, table

SAMPLE = ROOT / "samples" / "arithmetic-word-logic.jsonl"
LENGTHS = "8,96,16,64,24,8,48,32"  # short and long cells mixed, as a real problem set's answers are


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded", help="preset, Hugging Face id or local folder")
    ap.add_argument("--quant", default="nf4")
    ap.add_argument("--cells", type=int, default=16)
    ap.add_argument("--lengths", default=LENGTHS, help="new tokens per lane of successive cells, cycled")
    ap.add_argument("--batch-size", type=int, default=4, help="cells in flight (chunk size)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from playground.app.batch_files import import_rows, parse_batch_file
    from playground.app.batch_jobs import plan_jobs, run_jobs
    from playground.app.service import Playground
    from playground.config import Settings
    from playground.store import open_store

    pg = Playground(Settings())
    pg.load(args.model, args.quant)
    rows, _ = parse_batch_file(SAMPLE.read_bytes(), SAMPLE.name)
    rows = (rows * (args.cells // len(rows) + 1))[:args.cells]
    lengths = [int(x) for x in args.lengths.split(",")]
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "bench.db") as store:
        sid = store.create_session("bench", "bench.batch").id
        cells = import_rows(store, "bench", sid, rows)
        for k, cell in enumerate(cells):
            n = lengths[k % len(lengths)]
            lane = {"max_new_tokens": n, "min_new_tokens": n}
            store.update_cell("bench", cell.id, settings={"standard": lane, "reasoning": lane})

        def jobs():
            return plan_jobs(store.get_session("bench", sid), pg.backend, pg.recommended(), pg.settings.max_new_tokens)

        def timed(groups: list[list], batch_size: int) -> tuple[float, int]:
            t = time.perf_counter()
            tokens = 0
            for group in groups:
                tokens += list(run_jobs(pg, store, "bench", group, batch_size=batch_size, resume=False))[-1].tokens
            return time.perf_counter() - t, tokens

        list(run_jobs(pg, store, "bench", jobs()[:1], batch_size=1, resume=False))  # first-call overheads
        b = args.batch_size
        ways = {
            "one by one": lambda: timed([jobs()], 1),
            f"chunks of {b}": lambda: timed([jobs()[i:i + b] for i in range(0, args.cells, b)], b),
            f"scheduler, {b} in flight": lambda: timed([jobs()], b),
        }
        times: dict[str, list[float]] = {w: [] for w in ways}
        tokens: dict[str, int] = {}
        for _ in range(args.repeats):
            for way, fn in ways.items():
                secs, tokens[way] = fn()
                times[way].append(secs)
    med = {w: statistics.median(ts) for w, ts in times.items()}
    one, chunks, sched = (med[w] for w in ways)
    print(table([{"run": w, "median_s": med[w], "runs_s": " ".join(f"{x:.1f}" for x in times[w]),
                  "tokens": tokens[w], "tok/s": tokens[w] / med[w]} for w in ways]))
    print(f"{args.cells} cells × 2 lanes, lengths cycling {args.lengths}, {args.model} in {pg.loaded.quant}; "
          f"scheduler over chunks {chunks / sched:.2f}× (goal ≥ 1.3), over one by one {one / sched:.2f}×")
    emit({"sequential_s": round(one, 3), "chunks_s": round(chunks, 3), "scheduler_s": round(sched, 3),
          "batched_s": round(sched, 3), "speedup": round(one / sched, 3),
          "scheduler_over_chunks": round(chunks / sched, 3), "cells": args.cells, "batch_size": b,
          "lengths": args.lengths, "repeats": args.repeats, "model": args.model, "quant": pg.loaded.quant,
          "machine": machine()})


if __name__ == "__main__":
    main()
