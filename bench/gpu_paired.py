"""python -m bench.gpu_paired: a Hermes-4-14B-shaped model on every visible GPU: load, placement, speed.

The GPU machine has no network, so the model is built from the catalogue's config numbers with
random weights, saved, and loaded back through the real loading code in NF4 (the memory plan, its
device_map, bitsandbytes). Random weights make the text meaningless but the speed real:
min_new_tokens keeps every lane equally long. It reports the load time; per device the weights
measured against the plan and the peak memory against the plan's weights + KV reserve + workspace,
and whether every tensor sits where the plan put it; single-lane tokens/s and the pair ratio
(paired / (standard + reasoning); goal ≤ 0.60). On a GPU it writes bench/results/gpu-<date>.json
(and a copy under $OUT). `--tiny` shrinks the model to a few layers to smoke-test it on a CPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import time
from pathlib import Path

from bench.common import ROOT, emit, machine, table, timed

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIAL = ["<|im_start|>", "<|im_end|>", "<think>", "</think>"]
# Goals (issue 20): the batched pair against two sequential runs, and the footprint against the plan.
PAIR_RATIO_GOAL = 0.60
FOOTPRINT_TOLERANCE = 0.10


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
        kw.update(num_hidden_layers=4, hidden_size=256, intermediate_size=512, num_attention_heads=4,
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


def tensors_where_planned(lm) -> bool:
    """Every parameter and buffer is on the device the loader's map (the plan's) gave its module."""
    from playground.models.placement import module_of

    def torch_name(dev) -> str:
        return f"cuda:{dev}" if isinstance(dev, int) else str(dev)

    for name, t in list(lm.model.named_parameters()) + list(lm.model.named_buffers()):
        module = module_of(name, lm.device_map)
        if module is None or torch_name(lm.device_map[module]) != str(t.device):
            return False
    return getattr(lm.model, "hf_device_map", lm.device_map) == lm.device_map


def per_device(lm) -> list[dict]:
    """Per planned device: measured weights vs the plan's, and (on a GPU) peak memory vs the reserve."""
    import torch

    rows = []
    for d in lm.placement.devices:
        reserve = d.planned_bytes + d.kv_bytes + d.workspace_bytes
        row = {"plan_device": d.plan_device, "device": d.device, "modules": d.modules,
               "weights_GB": d.bytes / 1e9, "plan_weights_GB": d.planned_bytes / 1e9,
               "weights/plan": d.bytes / d.planned_bytes if d.planned_bytes else float("nan"),
               "kv_reserve_GB": d.kv_bytes / 1e9, "headroom_GB": d.headroom_bytes / 1e9}
        if d.device.startswith("cuda:"):
            idx = int(d.device.split(":")[1].split(",")[0])
            row["allocated_GB"] = torch.cuda.memory_allocated(idx) / 1e9
            row["peak_GB"] = torch.cuda.max_memory_allocated(idx) / 1e9
            row["plan_reserve_GB"] = reserve / 1e9
        rows.append(row)
    return rows


def speed(lm, tokens: int, repeats: int) -> tuple[list[dict], dict]:
    from playground.backends.local.engine import Engine
    from playground.lanes import LaneSettings

    engine = Engine(lm)
    lane = LaneSettings(max_new_tokens=tokens, min_new_tokens=tokens)
    prompt = " ".join(f"w{i}" for i in range(100, 164))  # 64 words of the synthetic vocabulary
    engine.start(prompt, None, {"standard": LaneSettings(max_new_tokens=4)}).collect()  # warm-up

    def go(lanes):
        return lambda: engine.start(prompt, None, {name: lane for name in lanes}).collect()

    rows, figures = [], {}
    for name, lanes in [("standard", ["standard"]), ("reasoning", ["reasoning"]),
                        ("paired", ["standard", "reasoning"])]:
        secs, res = timed(go(lanes), repeats)
        r = next(iter(res.values()))
        ttft = r.token_times[0] - r.t_start
        tok_s = sum(len(x.token_ids) for x in res.values()) / secs
        rows.append({"run": name, "seconds": secs, "tokens_per_s": tok_s, "ttft_s": ttft})
        figures[name] = {"seconds": round(secs, 3), "tokens_per_s": round(tok_s, 1), "ttft_s": round(ttft, 4)}
    figures["ratio"] = round(figures["paired"]["seconds"]
                             / (figures["standard"]["seconds"] + figures["reasoning"]["seconds"]), 3)
    return rows, figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="hermes-4-14b")
    ap.add_argument("--quant", default="nf4")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--folder", default="/tmp/hermes-4-14b-random")
    ap.add_argument("--tiny", action="store_true", help="a 4-layer model, to smoke-test on a CPU")
    ap.add_argument("--hardware", default="", help="plan for these devices instead of the detected ones, "
                                                   "e.g. 2×H100:0.2 on a CPU to exercise a split")
    ap.add_argument("--out", default=os.environ.get("OUT", ""), help="folder for a copy of the results file")
    args = ap.parse_args()

    import torch

    from playground.models.loading import load_model
    from playground.models.memory import parse_hardware

    folder = Path(args.folder)
    t = time.perf_counter()
    if not (folder / "config.json").exists():
        build_random_model(args.preset, folder, args.tiny)
    build_s = time.perf_counter() - t
    hardware = parse_hardware(args.hardware) if args.hardware else None
    lm = load_model(str(folder), args.quant, models_dir=folder.parent, hardware=hardware)
    devices = per_device(lm)
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(i)  # the peak while generating, not the load's
    rows, figures = speed(lm, args.tokens, args.repeats)
    for d, row in zip(devices, per_device(lm)):  # the peak after generating, with the KV cache in use
        d["peak_GB"] = row.get("peak_GB")
    print(lm.placement.to_markdown())
    print(table([{k: v for k, v in d.items() if k != "modules"} for d in devices]))
    print(table(rows))
    within = all(abs(d["weights/plan"] - 1) <= FOOTPRINT_TOLERANCE for d in devices)
    out = {"preset": args.preset, "tiny": args.tiny, "quant": lm.quant, "tokens_per_lane": args.tokens,
           "ratio": figures.pop("ratio"), "ratio_goal": PAIR_RATIO_GOAL, "build_s": round(build_s, 1),
           "load_s": round(lm.load_seconds, 1), "strategy": lm.plan.strategy, "budget": lm.plan.budget.describe(),
           "tensors_where_planned": tensors_where_planned(lm), "footprint_within_10pct_per_device": within,
           "footprint_bytes": lm.placement.footprint_bytes, "plan_bytes": lm.plan.weight_bytes,
           "devices": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in d.items()} for d in devices],
           **figures, "machine": machine(), "date": datetime.date.today().isoformat()}
    write_results(out, args, on_gpu=torch.cuda.is_available())
    if args.tiny:
        shutil.rmtree(folder, ignore_errors=True)
    emit(out)


def write_results(out: dict, args, on_gpu: bool) -> None:
    """GPU figures go to bench/results/gpu-<date>.json (a CPU smoke run is no GPU figure), and a copy
    to --out / $OUT, the folder the device machine sends back."""
    name = f"gpu-{out['date']}{'-tiny' if args.tiny else ''}.json"
    text = json.dumps(out, indent=1)
    if on_gpu and not args.tiny:
        (ROOT / "bench" / "results" / name).write_text(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        Path(args.out, name).write_text(text)


if __name__ == "__main__":
    main()
