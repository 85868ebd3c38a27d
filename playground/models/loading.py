"""Load a model quantized with bitsandbytes onto every visible GPU (or the CPU), with a report.

Every failure a user can cause or meet (no such model, offline, does not fit, unsupported
quantization, a corrupt folder) becomes a PlaygroundError with a message that says what to do;
the process keeps running.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from playground.errors import (
    CorruptModelFolder,
    DoesNotFit,
    ModelNotFound,
    OfflineNoWeights,
    PlaygroundError,
    QuantizationUnsupported,
)
from playground.models.embedded import Progress, ensure_embedded_checkpoint, no_progress
from playground.models.hardware import Detected, detect_compute_dtype, detect_cpu_threads, detect_device
from playground.models.memory import (
    QUANT_MODES,
    MemoryPlan,
    choose_auto_quant,
    detected_hardware,
    plan_placement,
    size_model,
)
from playground.prompting.catalog import EMBEDDED_KEY, ModelSource, resolve_source

log = logging.getLogger(__name__)



class _OnceFilter(logging.Filter):
    """bitsandbytes' int8 matmul logs the same cast warning for every layer at every step; once is enough."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if not msg.startswith("MatMul8bitLt"):
            return True
        if msg in self.seen:
            return False
        self.seen.add(msg)
        return True


logging.getLogger("bitsandbytes.autograd._functions").addFilter(_OnceFilter())
warnings.filterwarnings("once", message="MatMul8bitLt: inputs will be cast")
# bitsandbytes scales every max_memory entry by this before placing quantized weights.
BNB_MAX_MEMORY_FACTOR = 0.90


@dataclass(frozen=True)
class DeviceUsage:
    device: str
    modules: str  # e.g. "layers 0–39, embeddings"
    bytes: int


@dataclass(frozen=True)
class PlacementReport:
    devices: tuple[DeviceUsage, ...]
    dtype: str
    quant: str
    footprint_bytes: int
    predicted_bytes: int

    def to_markdown(self) -> str:
        rows = "\n".join(f"| {d.device} | {d.modules} | {d.bytes / 1e6:,.1f} MB |" for d in self.devices)
        ratio = self.footprint_bytes / self.predicted_bytes if self.predicted_bytes else float("nan")
        return (f"| device | modules | memory |\n|---|---|---|\n{rows}\n\n"
                f"Quantization **{self.quant}**, compute dtype **{self.dtype}**. Measured footprint "
                f"**{self.footprint_bytes / 1e6:,.1f} MB**; the plan predicted "
                f"{self.predicted_bytes / 1e6:,.1f} MB (measured/predicted {ratio:.2f}).")

    def to_dict(self) -> dict:
        return {"devices": [d.__dict__ for d in self.devices], "dtype": self.dtype, "quant": self.quant,
                "footprint_bytes": self.footprint_bytes, "predicted_bytes": self.predicted_bytes}


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    source: ModelSource
    path: str  # the folder or hub id from_pretrained read
    quant: str
    quant_reason: str
    device: Detected
    dtype: Detected
    plan: MemoryPlan
    placement: PlacementReport
    load_seconds: float
    revision: str = ""
    settings_reasons: dict = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return self.source.preset.repo_id if self.source.preset else self.source.ref


def bnb_config(quant: str, compute_dtype):
    """The BitsAndBytesConfig for a quantization mode; None for unquantized."""
    from transformers import BitsAndBytesConfig

    if quant == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype)
    if quant == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def bitsandbytes_problem(device: str) -> str | None:
    """Why bitsandbytes cannot quantize here, or None when it can."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # an import error, or a broken native library
        return f"bitsandbytes cannot be imported ({exc})"
    if device not in ("cuda", "cpu"):
        return f"bitsandbytes does not support the {device} device"
    return None


def resolve(ref: str) -> ModelSource:
    try:
        return resolve_source(ref)
    except ValueError:
        raise ModelNotFound(f"'{ref}' is neither a preset, a Hugging Face id (owner/name) nor an existing "
                            "folder: pick a preset or check the spelling.") from None


def plan_config(source: ModelSource, models_dir: Path):
    """The config a memory plan reads: a preset's known shape needs no download; anything else is read
    from its config.json (the hub's or the folder's)."""
    if source.preset is not None and source.kind == "preset":
        from transformers import AutoConfig

        shape = source.preset.shape
        return AutoConfig.for_model(shape.model_type, **shape.to_config_kwargs())
    return load_config(source, models_dir)[0]


def load_config(source: ModelSource, models_dir: Path, progress: Progress = no_progress):
    """The model's transformers config and the path/id its weights load from."""
    from transformers import AutoConfig

    if source.kind == "preset" and source.ref == EMBEDDED_KEY:
        try:
            path = str(ensure_embedded_checkpoint(models_dir, progress))
        except OSError as exc:  # a full disk or a read-only home: nothing half-written is left behind
            raise CorruptModelFolder(f"Could not write the converted embedded model into {models_dir} "
                                     f"({exc.strerror or exc}): it needs about 300 MB free and a writable "
                                     "folder; set PLAYGROUND_HOME elsewhere.") from exc
    elif source.kind == "preset":
        path = source.preset.repo_id
    else:
        path = source.ref
    if source.kind == "local":
        folder = Path(path)
        if not folder.is_dir():
            raise ModelNotFound(f"The folder {path} does not exist: check the path.")
        if not (folder / "config.json").is_file():
            raise CorruptModelFolder(f"The folder {path} has no config.json: it is not a Hugging Face "
                                     "model folder (save one with save_pretrained).")
    try:
        return AutoConfig.from_pretrained(path), path
    except PlaygroundError:
        raise
    except Exception as exc:
        raise _explain_hub_error(exc, path) from exc


def _explain_hub_error(exc: Exception, ref: str) -> PlaygroundError:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if isinstance(exc, GatedRepoError):
        return ModelNotFound(f"{ref} is gated: accept its licence on the Hub and set HF_TOKEN.")
    if isinstance(exc, RepositoryNotFoundError):
        return ModelNotFound(f"No model '{ref}' on the Hugging Face Hub: check the id.")
    text = str(exc)
    if os.environ.get("HF_HUB_OFFLINE") == "1" or "offline" in text.lower() or "connect" in text.lower() \
            or "couldn't find them in the cached files" in text:
        return OfflineNoWeights(f"{ref} is not in the local cache and the Hub cannot be reached: download it "
                                "once with network access (huggingface-cli download), or use a local folder.")
    if isinstance(exc, (ValueError, KeyError)) or "json" in text.lower():
        return CorruptModelFolder(f"The config of {ref} could not be read ({text.splitlines()[0][:200]}): "
                                  "the folder looks corrupt; download or convert it again.")
    return ModelNotFound(f"{ref} could not be loaded: {text.splitlines()[0][:300]}")


def plan_for(config, label: str, quant: str, hardware=None, kv_tokens: int | None = None):
    """(plan, quant, reason) for a config on the given or detected hardware."""
    hw = hardware or detected_hardware()
    size = size_model(config)
    kw = {} if kv_tokens is None else {"kv_tokens": kv_tokens}
    if quant == "auto":
        quant, reason = choose_auto_quant(label, size, hw, **kw)
    else:
        reason = f"{quant} was asked for"
    return plan_placement(label, size, quant, hw, **kw), quant, reason


def load_model(ref: str, quant: str = "nf4", models_dir: Path | None = None, hardware=None,
               progress: Progress = no_progress, kv_tokens: int | None = None, cpu_threads: int = 0) -> LoadedModel:
    """Resolve, plan, and load a model; raises PlaygroundError subclasses with actionable text."""
    import torch
    from transformers import AutoModelForCausalLM

    from playground.config import Settings

    if quant not in (*QUANT_MODES, "auto"):
        raise QuantizationUnsupported(f"Quantization '{quant}' is unknown: use nf4, int8, none or auto.")
    started = time.perf_counter()
    models_dir = Path(models_dir) if models_dir else Settings().models_dir
    progress(0.02, "Resolving the model")
    source = resolve(ref)
    config, path = load_config(source, models_dir, progress)
    device = detect_device()
    dtype = detect_compute_dtype(device.value)
    torch_dtype = getattr(torch, dtype.value)
    progress(0.72, "Planning memory")
    plan, quant, quant_reason = plan_for(config, source.label, quant, hardware, kv_tokens)
    if not plan.fits:
        raise DoesNotFit(f"{plan.summary()}. Try nf4, more GPUs, or a smaller model.", plan)
    if quant != "none" and (problem := bitsandbytes_problem(device.value)):
        raise QuantizationUnsupported(f"Cannot load in {quant}: {problem}. Use quantization 'none'.")
    kwargs: dict = {"dtype": torch_dtype, "quantization_config": bnb_config(quant, torch_dtype)}
    if device.value == "cuda":
        # "sequential" fills GPU 0, then GPU 1, ... exactly as plan_placement does, so the real split is
        # the planned one; the limits are divided by bitsandbytes' own factor so it ends up at the plan's.
        kwargs["device_map"] = "sequential"
        factor = BNB_MAX_MEMORY_FACTOR if quant != "none" else 1.0
        kwargs["max_memory"] = {k: int(v / factor) for k, v in plan.max_memory.items()}
    else:
        kwargs["device_map"] = {"": "cpu"}
    progress(0.75, f"Loading weights ({quant})")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except PlaygroundError:
        raise
    except torch.OutOfMemoryError as exc:
        raise DoesNotFit(f"Out of memory while loading {source.label} in {quant}: {exc}. "
                         "Try nf4 or fewer other processes on the GPU.", plan) from exc
    except Exception as exc:
        if source.kind == "local" or source.ref == EMBEDDED_KEY:
            raise CorruptModelFolder(f"The weights in {path} could not be read ({type(exc).__name__}: "
                                     f"{str(exc)[:200]}): the folder is corrupt; convert or download it "
                                     "again.") from exc
        raise _explain_hub_error(exc, path) from exc
    model.eval()
    threads = None
    if device.value == "cpu":
        threads = detect_cpu_threads(plan_params(plan), cpu_threads)
        torch.set_num_threads(int(threads.value))
    progress(0.95, "Loading the tokenizer")
    tokenizer = load_tokenizer(path)
    placement = placement_report(model, quant, dtype.value, plan.weight_bytes)
    progress(1.0, "Loaded")
    return LoadedModel(model=model, tokenizer=tokenizer, source=source, path=path, quant=quant,
                       quant_reason=quant_reason, device=device, dtype=dtype, plan=plan, placement=placement,
                       load_seconds=time.perf_counter() - started,
                       revision=getattr(config, "_commit_hash", None) or "local",
                       settings_reasons={"cpu_threads": threads} if threads else {})


def plan_params(plan: MemoryPlan) -> int:
    """Parameter count from the plan's unquantized (2 bytes per parameter) weight size."""
    return plan.weight_bytes_by_quant["none"] // 2


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    # Both lanes share one batch, so prompts are left-padded to end at the same position.
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def placement_report(model, quant: str, dtype: str, predicted_bytes: int) -> PlacementReport:
    """Which modules landed on which device, and how many bytes each device holds."""
    per_device: dict[str, int] = {}
    units: dict[str, list[str]] = {}
    seen: set[int] = set()
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        dev = str(tensor.device)
        per_device[dev] = per_device.get(dev, 0) + tensor.numel() * tensor.element_size()
        units.setdefault(dev, [])
        unit = _unit_name(name)
        if unit not in units[dev]:
            units[dev].append(unit)
    devices = tuple(DeviceUsage(dev, _describe_units(units[dev]), per_device[dev]) for dev in per_device)
    return PlacementReport(devices, dtype, quant, int(model.get_memory_footprint()), predicted_bytes)


def _unit_name(param_name: str) -> str:
    parts = param_name.split(".")
    if "layers" in parts:
        i = parts.index("layers")
        if i + 1 < len(parts) and parts[i + 1].isdigit():
            return f"layers.{parts[i + 1]}"
    if "embed" in param_name:
        return "embeddings"
    if "lm_head" in param_name:
        return "lm_head"
    return parts[-2] if len(parts) > 1 else param_name


def _describe_units(units: list[str]) -> str:
    layers = sorted(int(u.split(".")[1]) for u in units if u.startswith("layers."))
    others = [u for u in units if not u.startswith("layers.")]
    head = [f"layers {layers[0]}–{layers[-1]}"] if layers else []
    return ", ".join(head + others)
