"""Admission by memory: a row joins the running batch only while the batch's worst-case KV cache fits
the room the memory plan left on the devices, and "auto" concurrency is how many pairs of lanes fit.

The batch's cache is left-padded (stepper.py): it is as wide as its longest row, so its worst case
is rows × the longest row's prompt + max new tokens, spread over the devices in proportion to the
decoder layers each holds. A device's room is what the plan left there after the weights
(usable − weights), of which KV_ROOM_FRACTION goes to the cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from playground.config import MAX_CONCURRENT_RUNS
from playground.models.memory import GB, MemoryPlan

# Of a device's room after the weights: the rest is for activations, the logits and allocator slack.
KV_ROOM_FRACTION = 0.9
# The prompt (system + user text + chat template) a nominal row is sized for when "auto" counts runs.
AUTO_PROMPT_TOKENS = 1024
# On a CPU a decode step's cost grows with the rows in it: past about this many runs (2 rows each) a
# 2-core box gains little throughput and every run slows down (bench.load, bench.arrival).
CPU_AUTO_MAX_RUNS = 16


@dataclass(frozen=True)
class DeviceRoom:
    name: str
    room_bytes: int  # for KV cache, after the weights and the slack
    layer_share: float  # this device's part of every token's KV (its decoder layers / all of them)


@dataclass(frozen=True)
class KvRoom:
    """The KV room of a loaded model's devices, and what fits in it."""

    kv_bytes_per_token: int
    devices: tuple[DeviceRoom, ...]

    @classmethod
    def from_plan(cls, plan: MemoryPlan) -> KvRoom:
        layers = {d.name: sum(u.startswith("layers.") for u in d.units) for d in plan.devices}
        total = sum(layers.values()) or 1
        rooms = tuple(DeviceRoom(d.name, int(max(0, d.usable_bytes - d.assigned_bytes) * KV_ROOM_FRACTION),
                                 layers[d.name] / total) for d in plan.devices if layers[d.name])
        return cls(plan.kv_bytes_per_token, rooms)

    def batch_bytes(self, worst_tokens: list[int]) -> int:
        """Worst-case bytes of a padded batch of rows that may each hold `worst_tokens` tokens."""
        return len(worst_tokens) * max(worst_tokens, default=0) * self.kv_bytes_per_token

    def short_device(self, worst_tokens: list[int]) -> DeviceRoom | None:
        """The first device whose share of the batch's worst case does not fit, or None when all fit."""
        need = self.batch_bytes(worst_tokens)
        return next((d for d in self.devices if need * d.layer_share > d.room_bytes), None)

    def fits(self, worst_tokens: list[int]) -> bool:
        return self.short_device(worst_tokens) is None

    def token_rows(self) -> int:
        """How many row-tokens of padded cache fit: the most binding device decides."""
        per_token = [d.room_bytes / (d.layer_share * self.kv_bytes_per_token) for d in self.devices if d.layer_share]
        return int(min(per_token, default=0))

    def refusal(self, worst_tokens: list[int]) -> str | None:
        """Why rows that may hold `worst_tokens` tokens can never run, even alone; None if they can."""
        d = self.short_device(worst_tokens)
        if d is None:
            return None
        need = self.batch_bytes(worst_tokens) * d.layer_share
        return (f"This run needs up to {need / GB:.2f} GB of KV cache on {d.name} ({len(worst_tokens)} lane(s) of up "
                f"to {max(worst_tokens):,} tokens), more than the {d.room_bytes / GB:.2f} GB the memory plan leaves "
                "there after the weights: lower max new tokens, shorten the prompt, load the model in nf4, or "
                "spread it over more GPUs.")


def auto_concurrent_runs(room: KvRoom, max_new_tokens: int, on_cpu: bool) -> tuple[int, str]:
    """How many paired runs (two rows of AUTO_PROMPT_TOKENS + max_new_tokens) fit at once, and why."""
    row = AUTO_PROMPT_TOKENS + max_new_tokens
    pairs = room.token_rows() // (2 * row)
    where = ", ".join(f"{d.room_bytes / GB:.1f} GB on {d.name}" for d in room.devices)
    per_token = f"{room.kv_bytes_per_token / 1024:.0f} KiB per token"
    if pairs < 1:
        return 1, (f"auto: not even one pair of {row:,}-token lanes fits the KV room the plan leaves ({where}, "
                   f"{per_token}): runs go one at a time; lower PLAYGROUND_MAX_NEW_TOKENS")
    n = min(pairs, MAX_CONCURRENT_RUNS)
    why = (f"auto: the memory plan leaves {where} for KV cache, room for {pairs:,} pairs of lanes of "
           f"{AUTO_PROMPT_TOKENS:,} prompt + {max_new_tokens:,} new tokens ({per_token})")
    if pairs > MAX_CONCURRENT_RUNS:
        why += f"; at most {MAX_CONCURRENT_RUNS}"
    if on_cpu and n > CPU_AUTO_MAX_RUNS:
        n = CPU_AUTO_MAX_RUNS
        why += f"; {CPU_AUTO_MAX_RUNS} on a CPU, where more rows per step slow every run for little throughput"
    return n, why
