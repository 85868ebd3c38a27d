"""The plan's device_map in this machine's devices, and the report of where the loaded model landed.

The loader hands `torch_device_map(plan, …)` to from_pretrained, so transformers places every module
where the plan says; the report then measures each planned device's share of the real weights and
shows it beside the plan's weights, KV reserve and headroom.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from playground.errors import DoesNotFit
from playground.models.memory import GB, MemoryPlan

UNPLANNED = "unplanned"  # tensors no plan entry names: a plan from another config than the weights'


def torch_device_map(plan: MemoryPlan, cuda_count: int) -> dict:
    """The plan's module → device map with this machine's devices: the plan's GPU i is cuda:i.

    A plan for GPUs this machine lacks entirely (a user naming 2×H200 on a CPU box) loads on the CPU
    with the same per-module map; a plan for more GPUs than there are is refused."""
    planned = plan.device_map
    gpus = {v for v in planned.values() if v != "cpu"}
    if cuda_count == 0:
        return dict.fromkeys(planned, "cpu")
    if gpus and max(gpus) >= cuda_count:
        raise DoesNotFit(f"The plan places layers on {max(gpus) + 1} GPUs but this machine has {cuda_count}: "
                         f"leave the hardware empty to plan for the GPUs it has, or name at most {cuda_count}.",
                         plan)
    return dict(planned)


def module_of(tensor_name: str, device_map: dict) -> str | None:
    """The device_map key that covers a parameter or buffer name (its longest matching prefix)."""
    parts = tensor_name.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in device_map:
            return key
    return "" if "" in device_map else None


@dataclass(frozen=True)
class DeviceUsage:
    plan_device: str  # the device the plan was made for, e.g. "H200#1" or "cuda:1 NVIDIA H200"
    device: str  # where the tensors are: "cuda:1", "cpu"
    modules: str  # e.g. "layers 0–39, embeddings"
    bytes: int  # measured: the weights on it
    planned_bytes: int = 0
    kv_bytes: int = 0
    workspace_bytes: int = 0
    headroom_bytes: int = 0


@dataclass(frozen=True)
class PlacementReport:
    devices: tuple[DeviceUsage, ...]
    dtype: str
    quant: str
    footprint_bytes: int
    predicted_bytes: int
    strategy: str = ""
    budget: str = ""

    def to_markdown(self) -> str:
        rows = "\n".join(
            f"| {d.plan_device} | {d.device} | {d.modules} | {_size(d.bytes)} | {_size(d.planned_bytes)} "
            f"| {_size(d.kv_bytes)} | {_size(d.headroom_bytes)} |" for d in self.devices)
        ratio = self.footprint_bytes / self.predicted_bytes if self.predicted_bytes else float("nan")
        return ("| planned for | on | modules | weights | planned | KV reserve | headroom |\n"
                f"|---|---|---|---|---|---|---|\n{rows}\n\n"
                f"Quantization **{self.quant}**, compute dtype **{self.dtype}**, placement **{self.strategy}**; "
                f"KV reserved for {self.budget}. Measured footprint **{self.footprint_bytes / 1e6:,.1f} MB**; "
                f"the plan predicted {self.predicted_bytes / 1e6:,.1f} MB (measured/predicted {ratio:.2f}).")

    def to_dict(self) -> dict:
        return {"devices": [asdict(d) for d in self.devices], "dtype": self.dtype, "quant": self.quant,
                "footprint_bytes": self.footprint_bytes, "predicted_bytes": self.predicted_bytes,
                "strategy": self.strategy, "budget": self.budget}


def placement_report(model, plan: MemoryPlan, dtype: str) -> PlacementReport:
    """Each planned device's measured share of the weights (by the plan's own module map), where those
    tensors really are, and the plan's weights, KV reserve and headroom for it."""
    planned_map = plan.device_map
    by_key = plan.devices_by_key()
    measured: dict = {}
    where: dict = {}
    units: dict = {}
    seen: set[int] = set()
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        module = module_of(name, planned_map)
        key = planned_map[module] if module is not None else UNPLANNED
        measured[key] = measured.get(key, 0) + tensor.numel() * tensor.element_size()
        where.setdefault(key, set()).add(str(tensor.device))
        unit = _unit_name(name)
        if unit not in units.setdefault(key, []):
            units[key].append(unit)
    rows = []
    for key in measured:
        d = by_key.get(key)
        rows.append(DeviceUsage(
            plan_device=d.name if d else UNPLANNED, device=", ".join(sorted(where[key])),
            modules=_describe_units(units[key]), bytes=measured[key],
            planned_bytes=d.assigned_bytes if d else 0, kv_bytes=d.kv_bytes if d else 0,
            workspace_bytes=d.workspace_bytes if d else 0, headroom_bytes=d.headroom_bytes if d else 0))
    return PlacementReport(tuple(rows), dtype, plan.quant, int(model.get_memory_footprint()), plan.weight_bytes,
                           plan.strategy, plan.budget.describe())


def _size(n: int) -> str:
    return f"{n / GB:,.2f} GB" if abs(n) >= GB else f"{n / 1e6:,.1f} MB"


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
