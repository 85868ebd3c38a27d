"""python -m bench.gpu_paired: single-lane vs paired speed of a Hermes-4-14B-shaped model on a GPU.

The GPU machine has no network, so the model is built from the catalogue's config numbers with
random weights, saved, and loaded back through the real loading code in NF4. Random weights
make the text meaningless but the speed real: min_new_tokens keeps every lane equally long.
`--tiny` shrinks the model to a few layers so the script can be smoke-tested on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from bench.common import emit, machine, table, timed

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIAL = ["<|im_start|>", "<|im_end|>", "<think>", "</think>"]


def synthetic_tokenizer(vocab_size: int):
    """A word-level tokenizer covering the model's vocabulary, with ChatML and think tags."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL)}
    vocab.update({f"w{i}": i for i in range(len(SPECIAL), vocab_size)})
    core = Tokenizer(models.WordLevel(vocab, unk_token="w10"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|im_end|>",
                                  unk_token="w10")
    tok.chat_template = CHATML
    return tok


def build_random_model(preset_key: str, folder: Path, tiny: bool) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from playground.prompting.catalog import PRESETS

    shape = PRESETS[preset_key].shape
    kw = shape.to_config_kwargs()
    if tiny:
        kw.update(num_hidden_layers=2, hidden_size=256, intermediate_size=512, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=64, vocab_size=4096)
    cfg = AutoConfig.for_model(shape.model_type, **kw)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):  # random init on the GPU takes seconds, on the CPU minutes
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    synthetic_tokenizer(cfg.vocab_size).save_pretrained(folder)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="hermes-4-14b")
    ap.add_argument("--quant", default="nf4")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--folder", default="/tmp/hermes-4-14b-random")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model, to smoke-test on a CPU")
    ap.add_argument("--out", default=os.environ.get("OUT", ""), help="folder to write gpu_paired.json into")
    args = ap.parse_args()

    from playground.backends.local.engine import Engine
    from playground.lanes import LaneSettings
    from playground.models.loading import load_model

    folder = Path(args.folder)
    t = time.perf_counter()
    if not (folder / "config.json").exists():
        build_random_model(args.preset, folder, args.tiny)
    build_s = time.perf_counter() - t
    lm = load_model(str(folder), args.quant, models_dir=folder.parent)
    engine = Engine(lm)
    lane = LaneSettings(max_new_tokens=args.tokens, min_new_tokens=args.tokens)
    prompt = " ".join(f"w{i}" for i in range(100, 164))  # 64 words of the synthetic vocabulary
    engine.start(prompt, None, {"standard": LaneSettings(max_new_tokens=4)}).collect()  # warm-up

    def go(lanes):
        return lambda: engine.start(prompt, None, {name: lane for name in lanes}).collect()

    rows, figures = [], {}
    for name, lanes in [("standard", ["standard"]), ("reasoning", ["reasoning"]),
                        ("paired", ["standard", "reasoning"])]:
        secs, res = timed(go(lanes), args.repeats)
        r = next(iter(res.values()))
        ttft = r.token_times[0] - r.t_start
        tok_s = sum(len(x.token_ids) for x in res.values()) / secs
        rows.append({"run": name, "seconds": secs, "tokens_per_s": tok_s, "ttft_s": ttft})
        figures[name] = {"seconds": round(secs, 3), "tokens_per_s": round(tok_s, 1), "ttft_s": round(ttft, 4)}
    ratio = figures["paired"]["seconds"] / (figures["standard"]["seconds"] + figures["reasoning"]["seconds"])
    print(lm.placement.to_markdown())
    print(table(rows))
    out = {"preset": args.preset, "tiny": args.tiny, "quant": lm.quant, "tokens_per_lane": args.tokens,
           "ratio": round(ratio, 3), "build_s": round(build_s, 1), "load_s": round(lm.load_seconds, 1),
           "footprint_bytes": lm.placement.footprint_bytes, "plan_bytes": lm.plan.weight_bytes,
           **figures, "machine": machine()}
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        Path(args.out, "gpu_paired.json").write_text(json.dumps(out, indent=1))
    if args.tiny:
        shutil.rmtree(folder, ignore_errors=True)
    emit(out)


if __name__ == "__main__":
    main()
