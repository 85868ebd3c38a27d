"""Admission by memory: a row joins the running batch only while the batch's worst-case KV cache fits
the room the memory plan left on the devices, and "auto" concurrency is how many pairs of lanes fit.

The batch's cache is left-padded (stepper.py): it is as wide as its longest row, so n rows whose
longest may hold W tokens (its prompt + max new tokens) need the room of n rows of W tokens. The
plan says how many rows of W tokens the placed model has room for (models.memory.rows_that_fit:
each device's share of every token's KV, by the decoder layers it holds, plus the prefill's
activations, beside the weights and their scratch).
"""

from __future__ import annotations

from dataclasses import dataclass

from playground.config import MAX_CONCURRENT_RUNS
from playground.models.memory import MemoryPlan, rows_that_fit

# On a CPU a decode step's cost grows with the rows in it: past about this many runs (2 rows each) a
# 2-core box gains little throughput while every run slows down (bench.load, bench.arrival).
CPU_AUTO_MAX_RUNS = 16


@dataclass(frozen=True)
class KvRoom:
    """What fits beside a placed model: rows of so many tokens each, by its memory plan."""

    plan: MemoryPlan

    def rows_for(self, tokens_per_row: int) -> int:
        return rows_that_fit(self.plan, tokens_per_row)

    def fits(self, worst_tokens: list[int]) -> bool:
        """Whether rows that may each hold `worst_tokens` tokens fit together (padded to the longest)."""
        return not worst_tokens or len(worst_tokens) <= self.rows_for(max(worst_tokens))

    def refusal(self, worst_tokens: list[int]) -> str | None:
        """Why rows that may hold `worst_tokens` tokens can never run, even alone; None if they can."""
        if self.fits(worst_tokens):
            return None
        longest, room = max(worst_tokens), self.rows_for(max(worst_tokens))
        return (f"This run's {len(worst_tokens)} lane(s) may hold up to {longest:,} tokens each (prompt + max new "
                f"tokens), and the KV cache the memory plan leaves on {self.plan.hardware} beside the weights holds "
                f"{room} row(s) of that length: lower max new tokens, shorten the prompt, load the model in nf4, "
                "or spread it over more GPUs.")


def auto_concurrent_runs(plan: MemoryPlan, on_cpu: bool) -> tuple[int, str]:
    """How many paired runs at the plan's lane budget (prompt + the longest lane's max new tokens per
    row) fit beside the weights at once, and why: the number max_concurrent_runs "auto" stands for."""
    budget = plan.budget
    row, lanes = budget.tokens_per_row, len(budget.new_tokens)
    runs = rows_that_fit(plan, row) // lanes
    shape = (f"{lanes} lanes of {budget.prompt_tokens:,} prompt + {max(budget.new_tokens):,} new tokens "
             f"({plan.kv_bytes_per_token / 1024:.0f} KiB of KV cache per token)")
    if runs < 1:
        return 1, (f"auto: the memory plan has no room for even one run of {shape} on {plan.hardware}: runs go one "
                   "at a time; lower PLAYGROUND_MAX_NEW_TOKENS")
    n = min(runs, MAX_CONCURRENT_RUNS)
    why = f"auto: the memory plan has KV room for {runs:,} runs of {shape} on {plan.hardware}"
    if runs > MAX_CONCURRENT_RUNS:
        why += f"; at most {MAX_CONCURRENT_RUNS}"
    if on_cpu and n > CPU_AUTO_MAX_RUNS:
        n = CPU_AUTO_MAX_RUNS
        why += f"; {CPU_AUTO_MAX_RUNS} on a CPU, where more rows per step slow every run for little throughput"
    return n, why
