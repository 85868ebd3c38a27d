"""Size a model from its config alone (meta device, no weights) and plan it onto devices.

The plan is what a user reads before a 200 GB download, so it must be right within ~10%:
tests compare it with the published Hermes 4 NF4 sizes and with the measured footprint of
the embedded model in every quantization.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

GiB = 1024**3
GB = 1000**3

# bitsandbytes NF4 stores 4 bits per weight plus one absmax per 64-weight block; with double
# quantization that absmax is itself 8-bit, with one fp32 constant per 256 blocks.
NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)
# Memory the CUDA context and allocator take on every GPU before any tensor lands there.
CUDA_CONTEXT_BYTES = int(1.5 * GiB)
# GPU 0 also holds the logits and the sampled outputs, so it is kept a little lighter.
GPU0_EXTRA_BYTES = 1 * GiB
# KV cache reserved by default: both lanes of a pair at 8k tokens each.
DEFAULT_KV_TOKENS = 2 * 8192
# Left free on the CPU for the Python process, the tokenizer and the server.
CPU_RESERVE_BYTES = 2 * GiB

# Memory a GPU reports (nvidia-smi total), in GiB. Names are matched case-insensitively.
GPU_MEMORY_GIB: dict[str, float] = {
    "H200": 140.0,
    "H100": 79.6,
    "H100-80GB": 79.6,
    "A100-80GB": 79.2,
    "A100": 79.2,
    "A100-40GB": 39.4,
    "L40S": 45.0,
    "L40": 45.0,
    "A10G": 22.5,
    "L4": 22.5,
    "T4": 15.0,
    "RTX4090": 24.0,
    "4090": 24.0,
    "A6000": 48.0,
}

QUANT_MODES = ("none", "int8", "nf4")  # least lossy first: "auto" takes the first that fits


@dataclass(frozen=True)
class ModuleSize:
    name: str
    bytes_by_quant: dict  # quant mode -> bytes


@dataclass(frozen=True)
class ModelSize:
    """Bytes of every placement unit (embeddings, each decoder layer, head), per quantization."""

    units: tuple[ModuleSize, ...]
    kv_bytes_per_token: int
    num_params: int

    def weight_bytes(self, quant: str) -> int:
        return sum(u.bytes_by_quant[quant] for u in self.units)


@dataclass
class DevicePlan:
    name: str
    capacity_bytes: int
    usable_bytes: int
    assigned_bytes: int = 0
    kv_bytes: int = 0
    units: list[str] = field(default_factory=list)

    @property
    def layer_range(self) -> str:
        layers = [int(u.rsplit(".", 1)[1]) for u in self.units if u.startswith("layers.")]
        extras = [u for u in self.units if not u.startswith("layers.")]
        parts = [f"layers {min(layers)}–{max(layers)}"] if layers else []
        return ", ".join(parts + extras) or "nothing"


@dataclass
class MemoryPlan:
    model: str
    quant: str
    weight_bytes: int
    weight_bytes_by_quant: dict
    kv_bytes_per_token: int
    kv_tokens: int
    devices: list[DevicePlan]
    fits: bool
    shortfall_bytes: int
    hardware: str

    @property
    def max_memory(self) -> dict:
        """The per-device limits to hand to from_pretrained(device_map="auto")."""
        out = {}
        for i, d in enumerate(self.devices):
            key = "cpu" if d.name == "cpu" else i
            out[key] = d.usable_bytes - d.kv_bytes
        return out

    def summary(self) -> str:
        head = (f"{self.model} in {self.quant}: weights {self.weight_bytes / GB:.1f} GB, "
                f"KV cache {self.kv_bytes_per_token / 1024:.0f} KiB/token "
                f"({self.kv_tokens} tokens reserved) on {self.hardware}")
        verdict = "fits" if self.fits else f"does NOT fit: short by {self.shortfall_bytes / GB:.1f} GB"
        return f"{head}: {verdict}"


def parse_hardware(spec: str) -> list[tuple[str, int]]:
    """'2×H200', '4xA100-80GB', '1 x L40S + 1 x T4', 'cpu:64' -> [(name, bytes), ...].

    Raises ValueError naming the part it could not read and the GPU names it knows.
    """
    out: list[tuple[str, int]] = []
    for part in re.split(r"\s*[+,]\s*", spec.strip()):
        if not part:
            continue
        m = re.fullmatch(r"(?:(\d+)\s*[x×*]\s*)?([A-Za-z0-9\-]+?)(?::(\d+(?:\.\d+)?))?", part.strip())
        if not m:
            raise ValueError(f"cannot read hardware '{part}': write it like 2×H200 or 4×A100-80GB")
        count, name, size = int(m.group(1) or 1), m.group(2).upper(), m.group(3)
        if name == "CPU":
            import psutil

            cap = int(float(size) * GiB) if size else psutil.virtual_memory().available
            out.append(("cpu", cap))
            continue
        if size:
            gib = float(size)
        elif name in GPU_MEMORY_GIB:
            gib = GPU_MEMORY_GIB[name]
        else:
            known = ", ".join(sorted(GPU_MEMORY_GIB))
            raise ValueError(f"unknown GPU '{name}': use one of {known}, or give its memory as NAME:GiB")
        if count < 1 or count > 64:
            raise ValueError(f"GPU count {count} in '{part}' is out of range 1–64")
        out.extend((f"{name}#{i}", int(gib * GiB)) for i in range(count))
    if not out:
        raise ValueError("no hardware given: write it like 2×H200, or cpu")
    return out


def detected_hardware() -> list[tuple[str, int]]:
    """The GPUs torch sees (their free memory), else the CPU's available memory."""
    import torch

    if torch.cuda.is_available():
        out = []
        for i in range(torch.cuda.device_count()):
            free, _total = torch.cuda.mem_get_info(i)
            out.append((f"cuda:{i} {torch.cuda.get_device_name(i)}", int(free)))
        return out
    import psutil

    return [("cpu", int(psutil.virtual_memory().available))]


def size_model(config) -> ModelSize:
    """Bytes per placement unit for each quantization, from a transformers config alone."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    model.tie_weights()  # from_config on the meta device leaves tied embeddings as two tensors
    layer_prefix = _decoder_layers_prefix(model)
    units: dict[str, dict] = {}
    seen: set[int] = set()
    num_params = 0
    for mod_name, module in model.named_modules():
        for p_name, param in module.named_parameters(recurse=False):
            if id(param) in seen:  # tied embeddings are one tensor
                continue
            seen.add(id(param))
            n = param.numel()
            num_params += n
            unit = _unit_of(mod_name, layer_prefix)
            quantizable = (isinstance(module, torch.nn.Linear) and p_name == "weight"
                           and unit.startswith("layers."))
            sizes = units.setdefault(unit, {q: 0 for q in QUANT_MODES})
            sizes["none"] += 2 * n
            if quantizable:
                out_features = param.shape[0]
                sizes["int8"] += n + 4 * out_features  # int8 weights + one fp32 scale per row
                sizes["nf4"] += int(n * NF4_BYTES_PER_PARAM)
            else:  # embeddings, norms, biases and the head stay in the compute dtype
                sizes["int8"] += 2 * n
                sizes["nf4"] += 2 * n
    text_cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    head_dim = getattr(text_cfg, "head_dim", None) or text_cfg.hidden_size // text_cfg.num_attention_heads
    kv_heads = getattr(text_cfg, "num_key_value_heads", None) or text_cfg.num_attention_heads
    kv = 2 * text_cfg.num_hidden_layers * kv_heads * head_dim * 2  # K and V, bf16
    ordered = sorted(units.items(), key=lambda kv_: _unit_order(kv_[0]))
    return ModelSize(tuple(ModuleSize(k, v) for k, v in ordered), kv, num_params)


def _decoder_layers_prefix(model) -> str:
    import torch

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.endswith("layers"):
            return name
    return "model.layers"


def _unit_of(module_name: str, layer_prefix: str) -> str:
    if module_name.startswith(layer_prefix + "."):
        return "layers." + module_name[len(layer_prefix) + 1:].split(".", 1)[0]
    if "embed" in module_name:
        return "embeddings"
    if module_name.endswith("lm_head") or module_name == "lm_head":
        return "lm_head"
    return "norm"


def _unit_order(unit: str) -> tuple:
    if unit == "embeddings":
        return (0, 0)
    if unit.startswith("layers."):
        return (1, int(unit.split(".")[1]))
    return (2, 0 if unit == "norm" else 1)


def plan_placement(model_name: str, size: ModelSize, quant: str, hardware: list[tuple[str, int]],
                   kv_tokens: int = DEFAULT_KV_TOKENS, hardware_label: str = "") -> MemoryPlan:
    """Fill devices in order with whole units, as device_map="auto" does, reserving KV cache."""
    if quant not in QUANT_MODES:
        raise ValueError(f"quantization '{quant}' is not one of {', '.join(QUANT_MODES)}")
    layer_units = [u for u in size.units if u.name.startswith("layers.")]
    kv_per_layer = size.kv_bytes_per_token * kv_tokens // max(1, len(layer_units))
    devices = []
    for i, (name, cap) in enumerate(hardware):
        if name == "cpu":
            usable = cap - CPU_RESERVE_BYTES
        else:
            usable = cap - CUDA_CONTEXT_BYTES - (GPU0_EXTRA_BYTES if i == 0 else 0)
        devices.append(DevicePlan(name, cap, max(0, usable)))
    di = 0
    unplaced = 0
    for unit in size.units:
        need = unit.bytes_by_quant[quant]
        kv = kv_per_layer if unit.name.startswith("layers.") else 0
        while di < len(devices) and devices[di].assigned_bytes + devices[di].kv_bytes + need + kv \
                > devices[di].usable_bytes:
            di += 1
        if di == len(devices):
            unplaced += need + kv
            continue
        d = devices[di]
        d.assigned_bytes += need
        d.kv_bytes += kv
        d.units.append(unit.name)
    label = hardware_label or " + ".join(n for n, _ in hardware)
    return MemoryPlan(
        model=model_name,
        quant=quant,
        weight_bytes=size.weight_bytes(quant),
        weight_bytes_by_quant={q: size.weight_bytes(q) for q in QUANT_MODES},
        kv_bytes_per_token=size.kv_bytes_per_token,
        kv_tokens=kv_tokens,
        devices=devices,
        fits=unplaced == 0,
        shortfall_bytes=unplaced,
        hardware=label,
    )


def choose_auto_quant(model_name: str, size: ModelSize, hardware: list[tuple[str, int]],
                      kv_tokens: int = DEFAULT_KV_TOKENS) -> tuple[str, str]:
    """The least lossy quantization that fits, with the reason; nf4 if nothing fits."""
    for q in QUANT_MODES:
        if plan_placement(model_name, size, q, hardware, kv_tokens).fits:
            lossier = "" if q == "none" else " (less lossy modes do not fit)"
            return q, f"{q} is the least lossy mode that fits the detected devices{lossier}"
    return "nf4", "nothing fits the detected devices; nf4 is the smallest mode"
