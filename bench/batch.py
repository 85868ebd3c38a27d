"""python -m bench.batch: do several cells per generate pay? 16 sample cells one by one vs batched.

"One by one" is what pressing Run on each cell does: one generate of two rows (standard +
reasoning) per cell. "Batched" runs --batch-size cells per generate (4 cells = 8 rows). Both go
through playground.app.batch_jobs.run_jobs into a scratch database, greedy, with min_new_tokens = max so
every row generates exactly --tokens tokens and the two runs do the same work.
speedup = sequential_s / batched_s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, emit, machine, table

SAMPLE = ROOT / "samples" / "arithmetic-word-logic.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="embedded", help="preset, Hugging Face id or local folder")
    ap.add_argument("--quant", default="nf4")
    ap.add_argument("--cells", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32, help="new tokens per lane")
    ap.add_argument("--batch-size", type=int, default=4, help="cells per generate")
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
    n = args.tokens
    lane = {"max_new_tokens": n, "min_new_tokens": n}
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "bench.db") as store:
        sid = store.create_session("bench", "bench.batch").id
        import_rows(store, "bench", sid, rows, settings={"standard": lane, "reasoning": lane})

        def timed(batch_size: int) -> tuple[float, int]:
            jobs = plan_jobs(store.get_session("bench", sid), pg.backend, pg.recommended(), pg.settings.max_new_tokens)
            t = time.perf_counter()
            steps = list(run_jobs(pg, store, "bench", jobs, batch_size=batch_size, resume=False))
            return time.perf_counter() - t, steps[-1].tokens

        warm = plan_jobs(store.get_session("bench", sid), pg.backend, pg.recommended(), pg.settings.max_new_tokens)
        list(run_jobs(pg, store, "bench", warm[:1], batch_size=1, resume=False))  # first-call overheads
        sequential_s, seq_tokens = timed(1)
        batched_s, bat_tokens = timed(args.batch_size)
    speedup = sequential_s / batched_s
    print(table([
        {"run": "one cell per generate (2 rows)", "seconds": sequential_s, "tokens": seq_tokens,
         "tok/s": seq_tokens / sequential_s},
        {"run": f"{args.batch_size} cells per generate ({2 * args.batch_size} rows)", "seconds": batched_s,
         "tokens": bat_tokens, "tok/s": bat_tokens / batched_s},
    ]))
    print(f"{args.cells} cells × 2 lanes × {n} tokens, {args.model} in {pg.loaded.quant}; speedup {speedup:.2f}×")
    emit({"sequential_s": round(sequential_s, 3), "batched_s": round(batched_s, 3), "speedup": round(speedup, 3),
          "cells": args.cells, "batch_size": args.batch_size, "tokens_per_lane": n, "model": args.model,
          "quant": pg.loaded.quant, "machine": machine()})


if __name__ == "__main__":
    main()
