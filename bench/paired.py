"""python -m bench.paired: does one batched pair cost about one lane? (goal: ratio ≤ 0.55 on 2 CPU cores)

Times the standard lane alone, the reasoning lane alone and both as one batched pair, greedy,
with min_new_tokens so both lanes are equally long. ratio = paired / (standard + reasoning).

--against FILE also times a lone lane on another checkout's engine (an engine.py, e.g.
`git show be9f518:playground/backends/local/engine.py > /tmp/engine_then.py`) and on this one,
alternating in this process on the same loaded model: lone_ratio = this tok/s / that tok/s
(goal ≥ 0.9: the step loop costs a lone run at most 10% against the engine it replaced).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time

from bench.common import emit, machine, table, timed

PROMPTS = ["Explain why the sky is blue.", "What is 17 times 23?", "Write a haiku about autumn."]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="embedded", help="preset, Hugging Face id or local folder")
    ap.add_argument("--quant", default="nf4")
    ap.add_argument("--tokens", type=int, default=128, help="new tokens per lane")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--against", default="", help="an engine.py of another checkout to compare a lone run with")
    args = ap.parse_args()

    from playground.backends.local.engine import Engine
    from playground.lanes import LaneSettings
    from playground.models.loading import load_model

    lm = load_model(args.model, args.quant)
    engine = Engine(lm)
    lane = LaneSettings(max_new_tokens=args.tokens, min_new_tokens=args.tokens)
    engine.start("Warm up.", None, {"standard": LaneSettings(max_new_tokens=8),
                                    "reasoning": LaneSettings(max_new_tokens=8)}).collect()

    def go(lanes):
        return lambda: [engine.start(p, None, {name: lane for name in lanes}).collect() for p in PROMPTS]

    standard_s, _ = timed(go(["standard"]), args.repeats)
    reasoning_s, _ = timed(go(["reasoning"]), args.repeats)
    paired_s, res = timed(go(["standard", "reasoning"]), args.repeats)
    ratio = paired_s / (standard_s + reasoning_s)
    tokens = len(res[0]["standard"].token_ids)
    rows = [{"run": "standard alone", "seconds": standard_s}, {"run": "reasoning alone", "seconds": reasoning_s},
            {"run": "paired", "seconds": paired_s}, {"run": "ratio", "seconds": ratio}]
    lone = lone_against(args.against, engine, lm, lane, args.repeats) if args.against else {}
    if lone:
        rows += [{"run": "lone lane tok/s, this engine", "seconds": lone["lone_tok_s"]},
                 {"run": "lone lane tok/s, --against", "seconds": lone["against_tok_s"]},
                 {"run": "lone_ratio", "seconds": lone["lone_ratio"]}]
    print(table(rows))
    print(f"{len(PROMPTS)} prompts × {tokens} tokens per lane, {args.model} in {lm.quant}, median of {args.repeats}")
    emit({"standard_s": round(standard_s, 3), "reasoning_s": round(reasoning_s, 3), "paired_s": round(paired_s, 3),
          "ratio": round(ratio, 3), "tokens_per_lane": tokens, "prompts": len(PROMPTS), "model": args.model,
          "quant": lm.quant, **lone, "machine": machine()})


def lone_against(path: str, engine, lm, lane, repeats: int) -> dict:
    """A lone standard lane on this engine and on the engine.py at `path`, alternating: median tok/s of each."""
    spec = importlib.util.spec_from_file_location("engine_against", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    other = module.Engine(lm)

    def tok_s(eng) -> float:
        t = time.perf_counter()
        res = eng.start(PROMPTS[0], None, {"standard": lane}).collect()
        return len(res["standard"].token_ids) / (time.perf_counter() - t)

    tok_s(other)
    mine, theirs = [], []
    for _ in range(repeats):
        mine.append(tok_s(engine))
        theirs.append(tok_s(other))
    a, b = statistics.median(mine), statistics.median(theirs)
    return {"lone_tok_s": round(a, 2), "against_tok_s": round(b, 2), "lone_ratio": round(a / b, 3)}


if __name__ == "__main__":
    main()
