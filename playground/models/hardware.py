"""What this machine has: the compute device, its best dtype, and how many CPU threads to use.

Each detected value travels with the sentence saying why it was chosen (the footer and the start-up
log show it). The only settings-side code that imports torch: config.py stays torch-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


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


def describe_hardware() -> list[str]:
    """The device and compute dtype start-up will use, each with its reason."""
    device = detect_device()
    dtype = detect_compute_dtype(device.value)
    return [f"device: {device.value} ({device.reason})", f"compute dtype: {dtype.value} ({dtype.reason})"]
