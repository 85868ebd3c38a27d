"""python -m bench.load_model: conversion, load time, footprint vs plan, and decode speed per quantization.

Cold conversion runs into a fresh temporary home; warm loads then read the converted folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import emit, machine, table, timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=64, help="new tokens for the decode measurement")
    ap.add_argument("--quants", default="nf4,int8,none")
    args = ap.parse_args()

    from playground.backends.local.engine import Engine
    from playground.lanes import LaneSettings
    from playground.models.embedded import ensure_embedded_checkpoint
    from playground.models.loading import load_model

    models = Path(tempfile.mkdtemp(prefix="bench-home-")) / "models"
    t = time.perf_counter()
    ensure_embedded_checkpoint(models)
    cold_s = time.perf_counter() - t
    rows, figures = [], {"cold_conversion_s": round(cold_s, 2), "machine": machine()}
    for q in args.quants.split(","):
        load_s, lm = timed(lambda q=q: load_model("embedded", q, models_dir=models), repeats=2)
        engine = Engine(lm)
        lane = LaneSettings(max_new_tokens=args.tokens, min_new_tokens=args.tokens)
        engine.start("Warm up.", None, {"standard": LaneSettings(max_new_tokens=4)}).collect()
        gen_s, res = timed(lambda e=engine, ls=lane: e.start("Tell me about the sea.", None,
                                                              {"standard": ls}).collect())
        r = res["standard"]
        tok_s = (len(r.token_ids) - 1) / (r.token_times[-1] - r.token_times[0])
        footprint, predicted = lm.placement.footprint_bytes, lm.plan.weight_bytes
        rows.append({"quant": q, "load_s": load_s, "footprint_MB": footprint / 1e6, "plan_MB": predicted / 1e6,
                     "measured/plan": footprint / predicted, "decode_tok_s": tok_s, "run_s": gen_s})
        figures[q] = {"warm_load_s": round(load_s, 3), "footprint_bytes": footprint, "plan_bytes": predicted,
                      "footprint_over_plan": round(footprint / predicted, 4), "decode_tok_s": round(tok_s, 2)}
    print(f"cold conversion: {cold_s:.1f} s")
    print(table(rows))
    emit(figures)


if __name__ == "__main__":
    main()
