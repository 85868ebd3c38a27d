"""python -m bench.steps: the step scheduler on one engine, without the web stack (what a GPU machine
with no gradio can run): an arrival and a crowd, as bench.arrival and bench.load measure them in the app.

- arrival: A's run (a --long-token reasoning lane) goes; B's short pair arrives --arrive-s later.
  wait_ratio = B's time to first token then / B's alone (goal ≤ 3).
- crowd: --visitors threads (each its own owner) run --cells short pairs one after another, at the
  shipped concurrency ("auto" from the memory plan); crowd_over_single = their tokens/s over one
  visitor's alone (goal ≥ 2.5).

--model is a preset, a Hugging Face id or a local folder; --random PRESET builds a model of that
preset's shape with random weights into --folder first (bench.gpu_paired's builder; --tiny: four small
layers, to smoke-test the GPU path on a CPU). Lanes use min_new_tokens = max, so the work is fixed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import threading
import time
from pathlib import Path

from bench.common import emit, machine, table

PROMPTS = ["What is {i} + {i}?", "Name a colour.", "Give one word that rhymes with cat.", "Is {i} even?"]


def lanes(standard: int, reasoning: int) -> dict:
    from playground.lanes import LaneSettings

    return {"standard": LaneSettings(max_new_tokens=standard, min_new_tokens=standard),
            "reasoning": LaneSettings(max_new_tokens=reasoning, min_new_tokens=reasoning)}


def ttft(run) -> float:
    """Submit to the first token of any lane: the wait a visitor sees before text appears."""
    first = min(r.token_times[0] for r in run.results.values() if r.token_times)
    return first - run.t_submit


def arrival(engine, args) -> dict:
    """B's wait alone and B's wait `arrive_s` into A's long run, alternating; medians."""
    alone, behind, a_tok_s = [], [], []
    short = lanes(args.short, args.short)
    for k in range(args.repeats):
        b = engine.start(PROMPTS[1], None, short, owner=f"alone{k}")
        b.collect()
        alone.append(ttft(b))
        a = engine.start("Write a long story about the sea.", None, lanes(64, args.long), owner=f"A{k}")
        thread = threading.Thread(target=a.collect)
        thread.start()
        time.sleep(args.arrive_s)
        b = engine.start(PROMPTS[1], None, short, owner=f"B{k}")
        b.collect()
        behind.append(ttft(b))
        thread.join()
        a_tok_s.append(sum(len(r.token_ids) for r in a.results.values())
                       / (max(r.t_end for r in a.results.values()) - a.t_start))
    a_s, b_s = statistics.median(alone), statistics.median(behind)
    return {"alone_wait_s": round(a_s, 4), "behind_wait_s": round(b_s, 4), "wait_ratio": round(b_s / a_s, 3),
            "a_tok_s": round(statistics.median(a_tok_s), 1)}


def crowd(engine, visitors: int, cells: int, pair: dict) -> tuple[float, list[float]]:
    """`visitors` threads, each running `cells` pairs in turn: (tokens/s of them all, every wait)."""
    tokens, waits = [0] * visitors, []
    start = threading.Barrier(visitors + 1)

    def visitor(v: int) -> None:
        start.wait()
        for c in range(cells):
            run = engine.start(PROMPTS[c % len(PROMPTS)].format(i=v + c), None, pair, owner=f"v{v}")
            res = run.collect()
            tokens[v] += sum(len(r.token_ids) for r in res.values())
            waits.append(ttft(run))

    threads = [threading.Thread(target=visitor, args=(v,)) for v in range(visitors)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return sum(tokens) / (time.perf_counter() - t0), waits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--quant", default="nf4")
    ap.add_argument("--random", default="", help="build a random-weights model of this preset's shape first")
    ap.add_argument("--folder", default="/tmp/hermes-4-14b-random", help="where --random builds (or finds) it")
    ap.add_argument("--tiny", action="store_true", help="with --random: four small layers (a CPU smoke test)")
    ap.add_argument("--long", type=int, default=600)
    ap.add_argument("--short", type=int, default=16)
    ap.add_argument("--arrive-s", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--visitors", type=int, default=16)
    ap.add_argument("--cells", type=int, default=5)
    args = ap.parse_args()

    from playground.backends import local_backend
    from playground.config import Settings
    from playground.models.loading import load_model

    model = args.model
    if args.random:
        from bench.gpu_paired import build_random_model

        folder = Path(args.folder)
        if not (folder / "config.json").exists():
            build_random_model(args.random, folder, args.tiny)
        model = str(folder)
    settings = Settings()
    lm = load_model(model, args.quant, models_dir=Path(model).parent if args.random else None, settings=settings)
    engine = local_backend(lm, settings)  # the shipped concurrency, and its reason
    engine.start(PROMPTS[1], None, lanes(4, 4)).collect()  # first-call overheads
    figures = arrival(engine, args)
    pair = lanes(16, 24)
    single, single_waits = crowd(engine, 1, args.cells, pair)
    many, waits = crowd(engine, args.visitors, args.cells, pair)
    why = lm.settings_reasons["max_concurrent_runs"]
    print(table([{"phase": "B alone", "value": figures["alone_wait_s"]},
                 {"phase": f"B {args.arrive_s:g} s into A's run", "value": figures["behind_wait_s"]},
                 {"phase": "wait_ratio (goal ≤ 3)", "value": figures["wait_ratio"]},
                 {"phase": "one visitor tok/s", "value": single},
                 {"phase": f"{args.visitors} visitors tok/s", "value": many},
                 {"phase": "crowd_over_single (goal ≥ 2.5)", "value": many / single},
                 {"phase": "crowd wait p95 s", "value": statistics.quantiles(waits, n=20)[-1]}]))
    print(f"{model} in {lm.quant}; {why.value} runs at a time ({why.reason})")
    if args.random and args.tiny:
        shutil.rmtree(args.folder, ignore_errors=True)
    emit({**figures, "single_tok_s": round(single, 2), "crowd_tok_s": round(many, 2),
          "crowd_over_single": round(many / single, 3), "single_wait_p50_s": round(statistics.median(single_waits), 4),
          "crowd_wait_p50_s": round(statistics.median(waits), 4),
          "crowd_wait_p95_s": round(statistics.quantiles(waits, n=20)[-1], 4), "max_concurrent_runs": int(why.value),
          "model": args.random or model, "tiny": args.tiny, "quant": lm.quant, "machine": machine()})


if __name__ == "__main__":
    main()
