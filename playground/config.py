"""Settings from the environment (PLAYGROUND_*), and auto-detected values with their reasons.

Every auto-detected value travels with a sentence saying why it was chosen, so the UI footer
and the start-up log can show it (a user on a Space cannot read our code to find out).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Quantization = Literal["nf4", "int8", "none", "auto"]
QUANTIZATIONS: tuple[str, ...] = ("nf4", "int8", "none", "auto")

APP_NAME = "reasoning-playground"


def default_home() -> Path:
    """PLAYGROUND_HOME, else the per-user data folder (XDG_DATA_HOME or ~/.local/share)."""
    if os.environ.get("PLAYGROUND_HOME"):
        return Path(os.environ["PLAYGROUND_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / APP_NAME


class Settings(BaseSettings):
    """What an operator can set; each field is read from PLAYGROUND_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="PLAYGROUND_", extra="ignore")

    model: str = Field("embedded", description="preset name, Hugging Face id or local folder")
    quant: Quantization = Field("nf4", description="nf4, int8, none or auto")
    home: Path = Field(default_factory=default_home, description="folder for the database and models")
    host: str = Field("127.0.0.1", description="address the server listens on")
    port: int = Field(7860, ge=1, le=65535, description="port the server listens on")
    max_prompt_chars: int = Field(20_000, ge=1, description="longest prompt accepted, in characters")
    max_new_tokens: int = Field(8192, ge=1, description="most new tokens one lane may generate")
    cpu_threads: int = Field(0, ge=0, le=1024, description="torch threads on the CPU; 0 picks by model size")
    queue_size: int = Field(64, ge=1, description="most requests waiting in the queue")
    log_level: str = Field("INFO", description="Python logging level")

    @property
    def models_dir(self) -> Path:
        return self.home / "models"


@dataclass(frozen=True)
class Detected:
    """An auto-detected value and the reason it was chosen."""

    value: str
    reason: str


def detect_device() -> Detected:
    import torch

    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(n))
        return Detected("cuda", f"{n} CUDA GPU(s) visible: {names}")
    return Detected("cpu", "no CUDA GPU visible, running on the CPU")


def detect_compute_dtype(device: str) -> Detected:
    import torch

    if device == "cuda":
        if torch.cuda.is_bf16_supported():
            return Detected("bfloat16", "the GPU supports bfloat16")
        return Detected("float16", "the GPU lacks bfloat16 support, float16 is the fastest safe choice")
    # bf16 matmuls are fast on CPUs with AVX512-BF16/AMX and still halve memory elsewhere;
    # measured on a 2-core AVX512 machine, NF4 with bf16 compute was the fastest mode.
    return Detected("bfloat16", "bfloat16 halves memory on the CPU and bitsandbytes computes in it")


# Below this many parameters, a CPU decode step is a handful of tiny matrix products: splitting them
# over threads costs more in synchronisation than it saves (measured on 2 cores with the embedded
# 135M model in NF4: 27 tok/s on one thread, 19 tok/s on two).
SMALL_MODEL_PARAMS = 1_000_000_000


def detect_cpu_threads(num_params: int, requested: int = 0) -> Detected:
    cores = os.cpu_count() or 1
    if requested:
        return Detected(str(requested), "PLAYGROUND_CPU_THREADS asked for it")
    if num_params < SMALL_MODEL_PARAMS:
        return Detected("1", f"a {num_params / 1e6:,.0f}M-parameter model decodes fastest on one thread "
                             "(thread synchronisation outweighs tiny matrix products)")
    return Detected(str(cores), f"a large model uses all {cores} cores")
