"""The memory plan: where each unit of a model goes, and what KV cache the runs need beside it.

A plan reserves KV cache for what the server admits (a `RunBudget`: rows of prompt + new tokens),
spreads decoder layers over the GPUs so each keeps headroom in proportion to the KV it holds
(GPU 0 a little lighter), and falls back to filling devices in order only when that cannot fit.
The loader hands the plan's `device_map` to transformers as is, so the real split is this one.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace

from playground.models.sizing import (
    GB,
    MAX_GPUS,
    QUANT_MODES,
    GiB,
    ModelSize,
    detected_hardware,
    parse_hardware,
    size_model,
)

__all__ = ["GB", "GiB", "QUANT_MODES", "ModelSize", "detected_hardware", "parse_hardware", "size_model",
           "RunBudget", "DevicePlan", "MemoryPlan", "plan_placement", "choose_auto_quant", "rows_that_fit",
           "tokens_per_row_that_fit"]

# Memory the CUDA context and allocator take on every GPU before any tensor lands there.
CUDA_CONTEXT_BYTES = int(1.5 * GiB)
# GPU 0 also holds the logits, the sampling and the outputs every step returns there.
GPU0_EXTRA_BYTES = 1 * GiB
# Left free on the CPU for the Python process, the tokenizer and the server.
CPU_RESERVE_BYTES = 2 * GiB
# Prompt tokens reserved per row: a prompt with its chat template and the thinking system prompt. A longer
# prompt (a follow-up carries its history) comes out of the room the plan shows for reasoning.
PROMPT_TOKENS_RESERVED = 1024
# Far above any batch the server admits (max_concurrent_runs ≤ 64 runs of two lanes).
MAX_ROWS = 4096
# The largest CPU memory the advice searches, in GiB.
MAX_CPU_GIB = 4096


@dataclass(frozen=True)
class RunBudget:
    """What the KV cache must hold: `runs` paired runs at once, each lane one row of the batch.

    One batched generate grows every row's cache to the longest row (finished rows keep theirs until
    the batch ends), so each row is reserved prompt + the longest lane's new tokens."""

    new_tokens: tuple[int, ...]  # max new tokens per lane (standard, reasoning)
    runs: int = 1
    prompt_tokens: int = PROMPT_TOKENS_RESERVED

    def __post_init__(self):
        if not self.new_tokens or min(self.new_tokens) < 0 or self.runs < 1 or self.prompt_tokens < 0:
            raise ValueError(f"a run budget needs ≥ 1 run and lanes of ≥ 0 tokens, not {self}")

    @property
    def rows(self) -> int:
        return self.runs * len(self.new_tokens)

    @property
    def tokens_per_row(self) -> int:
        return self.prompt_tokens + max(self.new_tokens)

    @property
    def kv_tokens(self) -> int:
        return self.rows * self.tokens_per_row

    def describe(self) -> str:
        lanes = " + ".join(f"{n:,}" for n in self.new_tokens)
        return (f"{self.rows} rows ({self.runs} run{'s' if self.runs != 1 else ''} × {len(self.new_tokens)} lanes) "
                f"of {self.prompt_tokens:,} prompt + {max(self.new_tokens):,} new tokens (lanes {lanes})")


@dataclass
class DevicePlan:
    name: str
    capacity_bytes: int
    usable_bytes: int
    assigned_bytes: int = 0  # weights
    kv_bytes: int = 0
    workspace_bytes: int = 0  # dequantization scratch and prefill activations, where layers run
    units: list[str] = field(default_factory=list)

    @property
    def is_gpu(self) -> bool:
        return self.name != "cpu"

    @property
    def layers(self) -> int:
        return sum(1 for u in self.units if u.startswith("layers."))

    @property
    def headroom_bytes(self) -> int:
        """What stays free beyond weights, KV reserve and workspace."""
        return self.usable_bytes - self.assigned_bytes - self.kv_bytes - self.workspace_bytes

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
    budget: RunBudget
    devices: list[DevicePlan]
    fits: bool
    shortfall_bytes: int
    hardware: str
    strategy: str = "sequential"  # "balanced" | "sequential"
    num_layers: int = 0
    scratch_bytes: int = 0
    activation_bytes_per_token: int = 0
    context_tokens: int = 0
    advice: list[str] = field(default_factory=list)
    unit_modules: dict = field(default_factory=dict, repr=False)  # unit -> module names

    @property
    def kv_tokens(self) -> int:
        return self.budget.kv_tokens

    def devices_by_key(self) -> dict:
        """The devices by their device_map key: a GPU's index among the plan's GPUs, or "cpu"."""
        out: dict = dict(enumerate(d for d in self.devices if d.is_gpu))
        for d in self.devices:
            if not d.is_gpu:
                out.setdefault("cpu", d)  # one CPU: a second "cpu" in the spec adds no device
        return out

    @property
    def device_map(self) -> dict:
        """Module name -> the device_map key of the device the plan puts it on."""
        return {module: key for key, d in self.devices_by_key().items()
                for unit in d.units for module in self.unit_modules.get(unit, ())}

    def summary(self) -> str:
        head = (f"{self.model} in {self.quant}: weights {self.weight_bytes / GB:.1f} GB, "
                f"KV cache {self.kv_bytes_per_token / 1024:.0f} KiB/token "
                f"({self.kv_tokens:,} tokens reserved) on {self.hardware}")
        verdict = "fits" if self.fits else f"does NOT fit: short by {self.shortfall_bytes / GB:.1f} GB"
        return f"{head}: {verdict}"


def rows_that_fit(plan: MemoryPlan, tokens_per_row: int) -> int:
    """How many batch rows of `tokens_per_row` tokens each (prompt + new) the placed model has room for.

    For admission: a scheduler may run this many rows at once. 0 when the weights do not fit."""
    if not plan.fits or tokens_per_row < 0:
        return 0
    best = None
    for d in plan.devices:
        if not d.layers:
            continue
        per_row = tokens_per_row * _kv_per_token(plan, d) + plan.budget.prompt_tokens * plan.activation_bytes_per_token
        free = d.usable_bytes - d.assigned_bytes - plan.scratch_bytes
        rows = max(0, free) // per_row if per_row else MAX_ROWS
        best = rows if best is None else min(best, rows)
    return min(best if best is not None else 0, MAX_ROWS)


def tokens_per_row_that_fit(plan: MemoryPlan, rows: int) -> int:
    """The most tokens (prompt + new) each of `rows` rows can hold beside the placed model."""
    if not plan.fits or rows < 1:
        return 0
    best = None
    for d in plan.devices:
        if not d.layers:
            continue
        free = (d.usable_bytes - d.assigned_bytes - plan.scratch_bytes
                - rows * plan.budget.prompt_tokens * plan.activation_bytes_per_token)
        per_token = rows * _kv_per_token(plan, d)
        tokens = max(0, free) // per_token if per_token else 0
        best = tokens if best is None else min(best, tokens)
    return best or 0


def _kv_per_token(plan: MemoryPlan, d: DevicePlan) -> int:
    return _kv_per_layer_token(plan.kv_bytes_per_token, plan.num_layers) * d.layers


def _kv_per_layer_token(kv_bytes_per_token: int, num_layers: int) -> int:
    """One layer's KV bytes for one token (K and V are the same size in every layer)."""
    return kv_bytes_per_token // max(1, num_layers)


def plan_placement(model_name: str, size: ModelSize, quant: str, hardware: list[tuple[str, int]],
                   budget: RunBudget, hardware_label: str = "") -> MemoryPlan:
    """Place whole units on devices with room for `budget`'s KV cache: balanced over the GPUs when that
    fits, else in order (GPU 0 first, the CPU last), as device_map="sequential" would."""
    plan = _place(model_name, size, quant, hardware, budget, hardware_label)
    if not plan.fits:
        plan.advice = _advice(plan, size, hardware)
    return plan


def _place(model_name, size, quant, hardware, budget, hardware_label="") -> MemoryPlan:
    if quant not in QUANT_MODES:
        raise ValueError(f"quantization '{quant}' is not one of {', '.join(QUANT_MODES)}")
    layers = size.layer_units
    kv_per_layer = _kv_per_layer_token(size.kv_bytes_per_token, len(layers)) * budget.kv_tokens
    workspace = size.scratch_bytes(quant) + budget.rows * budget.prompt_tokens * size.activation_bytes_per_token
    cost = {u.name: u.bytes_by_quant[quant] for u in size.units}
    devices = _balanced(_empty_devices(hardware), size, cost, kv_per_layer, workspace)
    strategy = "balanced"
    if devices is None:
        devices, strategy = _empty_devices(hardware), "sequential"
    unplaced = 0 if strategy == "balanced" else _fill_in_order(devices, size, cost, kv_per_layer, workspace)
    return MemoryPlan(
        model=model_name, quant=quant, weight_bytes=size.weight_bytes(quant),
        weight_bytes_by_quant={q: size.weight_bytes(q) for q in QUANT_MODES},
        kv_bytes_per_token=size.kv_bytes_per_token, budget=budget, devices=devices,
        fits=unplaced == 0, shortfall_bytes=unplaced, hardware=hardware_label or " + ".join(n for n, _ in hardware),
        strategy=strategy, num_layers=len(layers), scratch_bytes=size.scratch_bytes(quant),
        activation_bytes_per_token=size.activation_bytes_per_token, context_tokens=size.context_tokens,
        unit_modules={u.name: u.modules for u in size.units})


def _empty_devices(hardware) -> list[DevicePlan]:
    devices = []
    for i, (name, cap) in enumerate(hardware):
        if name == "cpu":
            usable = cap - CPU_RESERVE_BYTES
        else:
            usable = cap - CUDA_CONTEXT_BYTES - (GPU0_EXTRA_BYTES if i == 0 else 0)
        devices.append(DevicePlan(name, cap, max(0, usable)))
    return devices


def _balanced(devices: list[DevicePlan], size: ModelSize, cost: dict, kv_per_layer: int,
              workspace: int) -> list[DevicePlan] | None:
    """Layers shared out over the GPUs by D'Hondt's rule on each GPU's free memory, which maximises the
    smallest free memory per layer: every GPU keeps headroom in proportion to the KV it holds. The
    embeddings stay on the first GPU (inputs start there) and the head on the last; a CPU gets nothing.
    None when that split does not fit."""
    gpus = [d for d in devices if d.is_gpu]
    if not gpus:
        return None
    layers = size.layer_units
    first = [u.name for u in size.units if u.name == "embeddings"]
    last = [u.name for u in size.units if not u.name.startswith("layers.") and u.name != "embeddings"]
    free = [g.usable_bytes - workspace for g in gpus]
    free[0] -= sum(cost[u] for u in first)
    free[-1] -= sum(cost[u] for u in last)
    per_layer = sum(cost[u.name] for u in layers) // max(1, len(layers)) + kv_per_layer
    counts = [0] * len(gpus)
    # Each next layer goes where it leaves the most free memory per layer: free/(n+1) - per_layer.
    heap = [(-(f - per_layer), j) for j, f in enumerate(free)]
    heapq.heapify(heap)
    for _ in layers:
        _, j = heapq.heappop(heap)
        counts[j] += 1
        heapq.heappush(heap, (-((free[j] - (counts[j] + 1) * per_layer) / (counts[j] + 1)), j))
    _put(gpus[0], first, cost)
    start = 0
    for g, n in zip(gpus, counts):
        _put(g, [u.name for u in layers[start:start + n]], cost)
        g.kv_bytes = n * kv_per_layer
        g.workspace_bytes = workspace if n else 0
        start += n
    _put(gpus[-1], last, cost)
    return devices if all(g.headroom_bytes >= 0 for g in gpus) else None


def _put(d: DevicePlan, units: list[str], cost: dict) -> None:
    d.units += units
    d.assigned_bytes += sum(cost[u] for u in units)


def _fill_in_order(devices: list[DevicePlan], size: ModelSize, cost: dict, kv_per_layer: int,
                   workspace: int) -> int:
    """Fill devices in order with whole units; returns the bytes that found no room."""
    di = unplaced = 0
    for unit in size.units:
        is_layer = unit.name.startswith("layers.")
        kv = kv_per_layer if is_layer else 0
        while di < len(devices) and devices[di].headroom_bytes < cost[unit.name] + kv + (
                workspace if is_layer and not devices[di].layers else 0):
            di += 1
        if di == len(devices):
            unplaced += cost[unit.name] + kv
            continue
        d = devices[di]
        if is_layer:
            d.workspace_bytes = workspace
            d.kv_bytes += kv
        _put(d, [unit.name], cost)
    return unplaced


def _advice(plan: MemoryPlan, size: ModelSize, hardware) -> list[str]:
    """What to change so that it fits: fewer rows, a smaller budget, another quantization, more GPUs."""
    budget, out = plan.budget, []

    def fits(b=budget, q=plan.quant, hw=hardware) -> bool:
        return _place(plan.model, size, q, hw, b).fits

    runs = _largest(1, budget.runs - 1, lambda r: fits(replace(budget, runs=r)))
    if runs:
        out.append(f"fewer rows: {runs} run(s) at once ({runs * len(budget.new_tokens)} rows) fit at this budget "
                   "(PLAYGROUND_MAX_CONCURRENT_RUNS)")
    def capped(t: int) -> RunBudget:
        return replace(budget, new_tokens=tuple(min(n, t) for n in budget.new_tokens))

    cap = _largest(1, max(budget.new_tokens) - 1, lambda t: fits(capped(t)))
    if cap:
        out.append(f"a smaller budget: at most {cap:,} new tokens per lane fit (PLAYGROUND_MAX_NEW_TOKENS)")
    for q in QUANT_MODES[QUANT_MODES.index(plan.quant) + 1:]:
        if fits(q=q):
            out.append(f"another quantization: {q} fits (weights {size.weight_bytes(q) / GB:,.1f} GB)")
            break
    gpus = [(n, c) for n, c in hardware if n != "cpu"]
    if gpus:
        name, cap_bytes = gpus[-1]
        kind = name.split("#")[0]

        def more(n: int) -> list:
            return list(hardware) + [(f"{kind}#{len(gpus) + i}", cap_bytes) for i in range(n)]

        extra = _smallest(1, MAX_GPUS - len(gpus), lambda n: fits(hw=more(n)))
        if extra:
            out.append(f"more GPUs: {len(gpus) + extra}×{kind} fit")
    else:
        gib = _smallest(1, MAX_CPU_GIB, lambda g: fits(hw=[("cpu", g * GiB)]))
        if gib:
            out.append(f"more memory: {gib} GiB available (cpu:{gib}) fits, or a GPU")
    return out or ["a smaller model: nothing within these limits fits"]


def _largest(lo: int, hi: int, ok) -> int:
    """The largest n in [lo, hi] with ok(n), for ok true up to some n and false beyond; 0 if none."""
    found = 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if ok(mid):
            found, lo = mid, mid + 1
        else:
            hi = mid - 1
    return found


def _smallest(lo: int, hi: int, ok) -> int:
    """The smallest n in [lo, hi] with ok(n), for ok false up to some n and true beyond; 0 if none."""
    found = 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if ok(mid):
            found, hi = mid, mid - 1
        else:
            lo = mid + 1
    return found


def choose_auto_quant(model_name: str, size: ModelSize, hardware: list[tuple[str, int]],
                      budget: RunBudget) -> tuple[str, str]:
    """The least lossy quantization that fits, with the reason; nf4 if nothing fits."""
    for q in QUANT_MODES:
        if _place(model_name, size, q, hardware, budget).fits:
            lossier = "" if q == "none" else " (less lossy modes do not fit)"
            return q, f"{q} is the least lossy mode that fits the detected devices{lossier}"
    return "nf4", "nothing fits the detected devices; nf4 is the smallest mode"
