"""What a model costs and what the hardware has, from a config alone (meta device, no weights).

The sizes are what a user reads before a 200 GB download, so they must be right within ~10%:
tests compare them with the published Hermes 4 NF4 sizes and with the measured footprint of
the embedded model in every quantization. memory.py places these units onto devices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GiB = 1024**3
GB = 1000**3

# bitsandbytes NF4 stores 4 bits per weight plus one absmax per 64-weight block; with double
# quantization that absmax is itself 8-bit, with one fp32 constant per 256 blocks.
NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)
# Activations alive at once in one decoder layer during a prefill, per token, in elements of the compute
# dtype: the MLP's gate, up and their product (intermediate-sized) and the residual, its norm and the
# attention in/out (hidden-sized). Layers run one after another, so only one layer's are alive.
ACTIVATION_INTERMEDIATES = 3
ACTIVATION_HIDDENS = 4
COMPUTE_DTYPE_BYTES = 2  # bf16 / fp16

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
MAX_GPUS = 64  # in one hardware spec

QUANT_MODES = ("none", "int8", "nf4")  # least lossy first: "auto" takes the first that fits


@dataclass(frozen=True)
class ModuleSize:
    """One placement unit: its bytes per quantization and the module names a device_map gives it."""

    name: str
    bytes_by_quant: dict  # quant mode -> bytes
    modules: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSize:
    """Bytes of every placement unit (embeddings, each decoder layer, head), per quantization."""

    units: tuple[ModuleSize, ...]
    kv_bytes_per_token: int
    num_params: int
    # bitsandbytes dequantizes a quantized weight to the compute dtype for every matmul on more than one
    # token (a prefill, or a decode step of a batch): the largest layer linear is that scratch, per quant.
    scratch_bytes_by_quant: dict | None = None
    activation_bytes_per_token: int = 0
    context_tokens: int = 0  # max_position_embeddings: no row grows past it, whatever the memory

    def weight_bytes(self, quant: str) -> int:
        return sum(u.bytes_by_quant[quant] for u in self.units)

    def scratch_bytes(self, quant: str) -> int:
        return (self.scratch_bytes_by_quant or {}).get(quant, 0)

    @property
    def layer_units(self) -> list[ModuleSize]:
        return [u for u in self.units if u.name.startswith("layers.")]


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
        if count < 1 or count > MAX_GPUS:
            raise ValueError(f"GPU count {count} in '{part}' is out of range 1–{MAX_GPUS}")
        seen = sum(1 for n, _ in out if n.split("#")[0] == name)  # "H100:40 + H100:80": #0 and #1
        out.extend((f"{name}#{seen + i}", int(gib * GiB)) for i in range(count))
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
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    model.tie_weights()  # from_config on the meta device leaves tied embeddings as two tensors
    units, num_params, scratch = _measure_units(model, _decoder_layers_prefix(model))
    text_cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    head_dim = getattr(text_cfg, "head_dim", None) or text_cfg.hidden_size // text_cfg.num_attention_heads
    kv_heads = getattr(text_cfg, "num_key_value_heads", None) or text_cfg.num_attention_heads
    kv = 2 * text_cfg.num_hidden_layers * kv_heads * head_dim * 2  # K and V, bf16
    intermediate = getattr(text_cfg, "intermediate_size", None) or 4 * text_cfg.hidden_size
    activation = COMPUTE_DTYPE_BYTES * (ACTIVATION_INTERMEDIATES * intermediate
                                        + ACTIVATION_HIDDENS * text_cfg.hidden_size)
    ordered = sorted(units.items(), key=lambda kv_: _unit_order(kv_[0]))
    return ModelSize(tuple(ModuleSize(k, sizes, tuple(mods)) for k, (sizes, mods) in ordered), kv, num_params,
                     scratch_bytes_by_quant=scratch, activation_bytes_per_token=activation,
                     context_tokens=getattr(text_cfg, "max_position_embeddings", 0) or 0)


def _measure_units(model, layer_prefix: str) -> tuple[dict, int, dict]:
    """unit -> (bytes per quant, module names), the parameter count, and the dequantization scratch."""
    import torch

    units: dict[str, tuple[dict, list[str]]] = {}
    home: dict[int, str] = {}  # tensor id -> the unit that holds it (a tied weight has one home)
    num_params = 0
    biggest_linear = 0
    for mod_name, module in model.named_modules():
        tensors = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
        if not tensors:
            continue
        unit = _unit_of(mod_name, layer_prefix)
        tied = [home[id(t)] for _, t in tensors if id(t) in home]
        owner = tied[0] if tied else unit  # a tied head rides with the embeddings it shares
        sizes, mods = units.setdefault(owner, ({q: 0 for q in QUANT_MODES}, []))
        if unit.startswith("layers."):
            mod_name = f"{layer_prefix}.{unit.split('.')[1]}"
        if mod_name not in mods:
            mods.append(mod_name)
        for p_name, param in module.named_parameters(recurse=False):
            if id(param) in home:
                continue
            home[id(param)] = owner
            n = param.numel()
            num_params += n
            quantizable = (isinstance(module, torch.nn.Linear) and p_name == "weight"
                           and unit.startswith("layers."))
            sizes["none"] += 2 * n
            if quantizable:
                biggest_linear = max(biggest_linear, n)
                sizes["int8"] += n + 4 * param.shape[0]  # int8 weights + one fp32 scale per row
                sizes["nf4"] += int(n * NF4_BYTES_PER_PARAM)
            else:  # embeddings, norms, biases and the head stay in the compute dtype
                sizes["int8"] += 2 * n
                sizes["nf4"] += 2 * n
    scratch = {"none": 0, "int8": COMPUTE_DTYPE_BYTES * biggest_linear, "nf4": COMPUTE_DTYPE_BYTES * biggest_linear}
    return units, num_params, scratch


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
