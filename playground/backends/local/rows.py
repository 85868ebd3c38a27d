"""One lane of one run as the decode loop sees it (a *row*), and how a step picks each row's token.

Every row picks its own token from its own logits: forced tokens first (the thinking budget's
close), then min_new_tokens (no end-of-sequence before it), then greedy or seeded sampling with the
row's own torch.Generator. So a row's output never depends on which other rows share its steps.
"""

from __future__ import annotations

from playground.lanes import LaneSettings
from playground.prompting.prompts import LanePrompt
from playground.prompting.reasoning import ThinkParser


class Row:
    """Decode-loop state of one lane: what it feeds next, where it stands, when it must end."""

    def __init__(self, key: str, prompt: LanePrompt, settings: LaneSettings, close_ids: list[int], owner):
        self.key = key  # the lane's name in its run
        self.owner = owner  # the scheduler's ticket of the run this row belongs to
        self.input_ids = list(prompt.input_ids)
        self.settings = settings
        self.count = 0  # tokens picked so far, forced ones included
        self.position = len(self.input_ids)  # where the next token fed sits (its real tokens before it)
        self.last: int | None = None  # the token to feed at the next step
        self.done = False
        self.close_ids = close_ids
        self.forcing: list[int] = []
        self.budget_spent = False
        self.reasoning_tokens = 0
        self.parser = ThinkParser(prompt.starts_in_reasoning)
        self._generator = None  # made on the logits' device at the first sampled pick
        if settings.thinking_budget == 0 and prompt.starts_in_reasoning and close_ids:
            # A budget of 0 on a prompt that already opened the reasoning closes it before any token.
            self.forcing = list(close_ids)
            self.budget_spent = True

    @property
    def worst_tokens(self) -> int:
        """The most tokens this row's cache can hold: its prompt and every token it may generate."""
        return len(self.input_ids) + self.settings.max_new_tokens

    def generator(self, device):
        import torch

        if self._generator is None:
            self._generator = torch.Generator(device=device).manual_seed(self.settings.seed)
        return self._generator

    def track_budget(self, text: str) -> None:
        """Count reasoning tokens and queue the close once the row's thinking budget is spent."""
        budget = self.settings.thinking_budget
        if budget is None or self.budget_spent:
            return
        was_in = self.parser.in_reasoning
        self.parser.feed(text)
        if was_in and self.parser.in_reasoning:
            self.reasoning_tokens += 1
        if self.parser.in_reasoning and self.reasoning_tokens >= budget and not self.forcing:
            self.forcing = list(self.close_ids)
            self.budget_spent = True
        if self.parser.reasoning_closed:
            self.budget_spent = True


def pick_tokens(rows: list[Row], logits, eos_ids: list[int]) -> list[tuple[int, bool]]:
    """(token, forced) for every row, from this step's last-position logits (rows, vocab), float32."""
    import torch

    under_min = [i for i, r in enumerate(rows) if r.count < r.settings.min_new_tokens and not r.forcing]
    if under_min and eos_ids:
        rows_idx = torch.tensor(under_min, device=logits.device)[:, None]
        logits[rows_idx, torch.tensor(eos_ids, device=logits.device)] = float("-inf")
    greedy = torch.argmax(logits, dim=-1).tolist()  # one call for every greedy row of the batch
    out = []
    for i, row in enumerate(rows):
        if row.forcing:
            out.append((row.forcing.pop(0), True))
        elif row.settings.temperature <= 0:
            out.append((greedy[i], False))
        else:
            out.append((sample(logits[i], row), False))
    return out


def sample(logits, row: Row) -> int:
    """Temperature, top-k, top-p, then a draw from the row's own generator."""
    import torch

    s = row.settings
    logits = logits / s.temperature
    if s.top_k and s.top_k < logits.shape[-1]:
        kth = torch.topk(logits, s.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if s.top_p < 1.0:
        sorted_p, idx = torch.sort(probs, descending=True)
        cum = torch.cumsum(sorted_p, dim=-1)
        drop = cum - sorted_p > s.top_p  # keep the smallest prefix whose mass reaches top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(0, idx, sorted_p)
    return int(torch.multinomial(probs, 1, generator=row.generator(probs.device)))
