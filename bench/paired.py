"""python -m bench.paired: does one batched pair cost about one lane? (goal: ratio ≤ 0.60 on 2 CPU cores)

Times the standard lane alone, the reasoning lane alone and both as one batched pair, greedy,
with min_new_tokens so both lanes are equally long. ratio = paired / (standard + reasoning).
"""

from __future__ import annotations

import argparse

from bench.common import emit, machine, table, timed

PROMPTS = ["Explain why the sky is blue.", "What is 17 times 23?", "Write a haiku about autumn."]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="embedded", help="preset, Hugging Face id or local folder")
    ap.add_argument("--quant", default="nf4")
    ap.add_argument("--tokens", type=int, default=128, help="new tokens per lane")
    ap.add_argument("--repeats", type=int, default=3)
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
    print(table([{"run": "standard alone", "seconds": standard_s}, {"run": "reasoning alone", "seconds": reasoning_s},
                 {"run": "paired", "seconds": paired_s}, {"run": "ratio", "seconds": ratio}]))
    print(f"{len(PROMPTS)} prompts × {tokens} tokens per lane, {args.model} in {lm.quant}, median of {args.repeats}")
    emit({"standard_s": round(standard_s, 3), "reasoning_s": round(reasoning_s, 3), "paired_s": round(paired_s, 3),
          "ratio": round(ratio, 3), "tokens_per_lane": tokens, "prompts": len(PROMPTS), "model": args.model,
          "quant": lm.quant, "machine": machine()})


if __name__ == "__main__":
    main()
