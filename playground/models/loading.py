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
from playground.lanes import LANES
from playground.models.embedded import Progress, ensure_embedded_checkpoint, no_progress
from playground.models.hardware import Detected, detect_compute_dtype, detect_cpu_threads, detect_device
from playground.models.memory import (
    QUANT_MODES,
    MemoryPlan,
    RunBudget,
    choose_auto_quant,
    detected_hardware,
    plan_placement,
    size_model,
)
from playground.models.placement import PlacementReport, placement_report, torch_device_map
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
    device_map: dict = field(default_factory=dict)  # what from_pretrained was handed: module -> device
    revision: str = ""
    settings_reasons: dict = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return self.source.preset.repo_id if self.source.preset else self.source.ref


def bnb_config(quant: str, compute_dtype, cpu_offload: bool = False):
    """The BitsAndBytesConfig for a quantization mode; None for unquantized. `cpu_offload`: some modules
    of a GPU load stay on the CPU, unquantized (bitsandbytes refuses such a map without it)."""
    from transformers import BitsAndBytesConfig

    if quant == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute_dtype, llm_int8_enable_fp32_cpu_offload=cpu_offload)
    if quant == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_enable_fp32_cpu_offload=cpu_offload)
    return None


def run_budget(source: ModelSource, settings) -> RunBudget:
    """The KV cache the server's runs need: each lane's recommended max new tokens for a preset (for any
    other model the most a visitor may ask), capped by max_new_tokens, for max_concurrent_runs at once."""
    cap = settings.max_new_tokens
    preset = source.preset
    lanes = (preset.standard.max_new_tokens, preset.reasoning.max_new_tokens) if preset else (cap,) * len(LANES)
    return RunBudget(tuple(min(n, cap) for n in lanes), runs=settings.max_concurrent_runs)


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


def plan_for(config, label: str, quant: str, hardware, budget: RunBudget):
    """(plan, quant, reason) for a config on the given (or, for None, the detected) hardware."""
    hw = hardware or detected_hardware()
    size = size_model(config)
    if quant == "auto":
        quant, reason = choose_auto_quant(label, size, hw, budget)
    else:
        reason = f"{quant} was asked for"
    return plan_placement(label, size, quant, hw, budget), quant, reason


def load_model(ref: str, quant: str = "nf4", models_dir: Path | None = None, hardware=None,
               progress: Progress = no_progress, budget: RunBudget | None = None, cpu_threads: int = 0,
               settings=None) -> LoadedModel:
    """Resolve, plan, and load a model; raises PlaygroundError subclasses with actionable text.

    `budget` (default: `run_budget` from `settings`) is the KV cache the plan keeps room for."""
    import torch

    from playground.config import Settings

    if quant not in (*QUANT_MODES, "auto"):
        raise QuantizationUnsupported(f"Quantization '{quant}' is unknown: use nf4, int8, none or auto.")
    started = time.perf_counter()
    settings = settings or Settings()
    models_dir = Path(models_dir) if models_dir else settings.models_dir
    progress(0.02, "Resolving the model")
    source = resolve(ref)
    config, path = load_config(source, models_dir, progress)
    device = detect_device()
    dtype = detect_compute_dtype(device.value)
    torch_dtype = getattr(torch, dtype.value)
    progress(0.72, "Planning memory")
    plan, quant, quant_reason = plan_for(config, source.label, quant, hardware, budget or run_budget(source, settings))
    if not plan.fits:
        raise DoesNotFit(f"{plan.summary()}. Change one of: {'; '.join(plan.advice)}.", plan)
    if quant != "none" and (problem := bitsandbytes_problem(device.value)):
        raise QuantizationUnsupported(f"Cannot load in {quant}: {problem}. Use quantization 'none'.")
    # The plan's own per-module map, not "auto"/"sequential" with limits: transformers places each module
    # exactly where the plan says (and bitsandbytes' 0.9 scaling of max_memory never comes into it).
    device_map = torch_device_map(plan, torch.cuda.device_count() if device.value == "cuda" else 0)
    offload = "cpu" in device_map.values() and len(set(device_map.values())) > 1
    progress(0.75, f"Loading weights ({quant})")
    model = _from_pretrained(source, path, plan, quant, device_map=device_map, dtype=torch_dtype,
                             quantization_config=bnb_config(quant, torch_dtype, offload))
    model.eval()
    if getattr(model, "hf_device_map", device_map) != device_map:
        log.warning("transformers placed %s differently from the plan: %s", source.label, model.hf_device_map)
    threads = None
    if device.value == "cpu":
        threads = detect_cpu_threads(plan_params(plan), cpu_threads)
        torch.set_num_threads(int(threads.value))
    progress(0.95, "Loading the tokenizer")
    tokenizer = load_tokenizer(path)
    placement = placement_report(model, plan, dtype.value)
    progress(1.0, "Loaded")
    return LoadedModel(model=model, tokenizer=tokenizer, source=source, path=path, quant=quant,
                       quant_reason=quant_reason, device=device, dtype=dtype, plan=plan, placement=placement,
                       load_seconds=time.perf_counter() - started, device_map=device_map,
                       revision=getattr(config, "_commit_hash", None) or "local",
                       settings_reasons={"cpu_threads": threads} if threads else {})


def _from_pretrained(source: ModelSource, path: str, plan: MemoryPlan, quant: str, **kwargs):
    import torch
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
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
