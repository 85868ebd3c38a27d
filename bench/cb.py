"""python -m bench.cb: transformers' own continuous batching against the step scheduler, same model.

Issue 16 asks to measure the library engine again before choosing our own decode loop. Both run
--prompts short prompts × --tokens new tokens (greedy, no early stop) on the embedded model
unquantized ("none": bf16 on a CPU, where the paged cache runs; bitsandbytes layers do not go through
it), one after the other in this process: transformers' `generate_batch` (paged cache, "paged|eager"
attention, the form this version accepts on a CPU) and the playground Engine (its step loop over
the model's forward on a left-padded DynamicCache). cb_over_steps = cb_s / steps_s.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from bench.common import emit, machine, table

PROMPTS = ["Name a colour.", "What is 2 + 2?", "Say hello to Ann.", "Name a fruit."]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    from transformers import GenerationConfig

    from playground.backends.local.engine import Engine
    from playground.lanes import LaneSettings
    from playground.models.loading import load_model

    lm = load_model("embedded", "none")
    engine = Engine(lm)
    prompts = (PROMPTS * args.prompts)[:args.prompts]
    lane = {"standard": LaneSettings(max_new_tokens=args.tokens, min_new_tokens=args.tokens)}
    ids = [engine.start(p, None, lane).prompts["standard"].input_ids for p in prompts]
    config = GenerationConfig(max_new_tokens=args.tokens, do_sample=False, eos_token_id=-1,
                              pad_token_id=engine.pad_id)
    ours = lm.model.config._attn_implementation  # what the step loop runs with (sdpa)

    def cb() -> float:
        t = time.perf_counter()
        out = lm.model.generate_batch([list(map(int, x)) for x in ids], generation_config=config)
        assert len(out) == len(ids)
        return time.perf_counter() - t

    def steps() -> float:
        t = time.perf_counter()
        runs = [engine.start(p, None, lane) for p in prompts]
        threads = [threading.Thread(target=r.collect) for r in runs]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert all(len(r.results["standard"].token_ids) == args.tokens for r in runs)
        return time.perf_counter() - t

    steps()  # first-call overheads of each
    lm.model.set_attn_implementation("paged|eager")
    cb()
    cb_t, st_t = [], []
    for _ in range(args.repeats):
        lm.model.set_attn_implementation(ours)
        st_t.append(steps())
        lm.model.set_attn_implementation("paged|eager")
        cb_t.append(cb())
    cb_s, st_s = statistics.median(cb_t), statistics.median(st_t)
    print(table([{"engine": "transformers generate_batch (continuous batching)", "median_s": cb_s},
                 {"engine": "playground step scheduler", "median_s": st_s}]))
    print(f"{args.prompts} prompts × {args.tokens} tokens, embedded model in {lm.dtype.value}; "
          f"continuous batching takes {cb_s / st_s:.1f}× the step scheduler's time")
    emit({"cb_s": round(cb_s, 3), "steps_s": round(st_s, 3), "cb_over_steps": round(cb_s / st_s, 2),
          "prompts": args.prompts, "tokens": args.tokens, "dtype": lm.dtype.value, "machine": machine()})


if __name__ == "__main__":
    main()
