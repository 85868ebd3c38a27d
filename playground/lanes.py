"""The shared vocabulary of a run: lanes, statuses, token kinds, settings, updates and results.

Every layer may import this module (the store, sharing, charts, both backends, the UI); it imports
nothing heavy, so none of them pulls in torch to name a lane. Appending to a lane happens here and
only here (`add_text`, `add_token`): the local engine, the remote backend and the ZeroGPU mirror all
build a `LaneResult` the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from playground.errors import InvalidInput

STANDARD, REASONING = "standard", "reasoning"
LANES: tuple[str, ...] = (STANDARD, REASONING)
LANE_TITLES = {STANDARD: "Standard", REASONING: "Reasoning"}

# A run row's life: "running" at the start, one of FINISH_STATUSES at its end; "interrupted" is set
# only when a server restarts and finds runs it never finished.
RUN_STATUSES: tuple[str, ...] = ("running", "done", "stopped", "error", "interrupted")
FINISH_STATUSES: tuple[str, ...] = ("done", "stopped", "error")

# What each generated token was part of; stored one character per token.
TOKEN_KINDS: tuple[str, ...] = ("reasoning", "answer")
KIND_CHARS = {"reasoning": "r", "answer": "a"}
CHAR_KINDS = {c: k for k, c in KIND_CHARS.items()}
FORCED_CHARS = {False: "0", True: "1"}

# What a LaneUpdate is.
UPDATE_KINDS: tuple[str, ...] = ("token", "done", "error")

# Named limits, each checked once in `validate_settings`.
MAX_TEMPERATURE = 5.0
MAX_TOP_K = 1000
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class LaneSettings:
    """One lane's generation settings. temperature 0 is greedy; thinking_budget None is unlimited."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0
    min_new_tokens: int = 0
    thinking_budget: int | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def validate_settings(s: LaneSettings, max_new_tokens_limit: int, lane: str = "") -> LaneSettings:
    """Raise InvalidInput naming the setting, the value and the allowed range."""
    where = f"{lane} lane: " if lane else ""

    def bad(name, value, allowed):
        raise InvalidInput(f"{where}{name}={value!r} is out of range: use {allowed}.")

    def is_num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v  # v == v rejects NaN

    for name in ("max_new_tokens", "top_k", "seed", "min_new_tokens"):
        v = getattr(s, name)
        if not isinstance(v, int) or isinstance(v, bool):
            bad(name, v, "a whole number")
    if not 1 <= s.max_new_tokens <= max_new_tokens_limit:
        bad("max_new_tokens", s.max_new_tokens, f"1–{max_new_tokens_limit} (limit max_new_tokens)")
    if not 0 <= s.min_new_tokens <= s.max_new_tokens:
        bad("min_new_tokens", s.min_new_tokens, f"0–max_new_tokens ({s.max_new_tokens})")
    if not is_num(s.temperature) or not 0 <= s.temperature <= MAX_TEMPERATURE:
        bad("temperature", s.temperature, f"0–{MAX_TEMPERATURE} (0 is greedy)")
    if not is_num(s.top_p) or not 0 < s.top_p <= 1:
        bad("top_p", s.top_p, "a number in (0, 1]")
    if not 0 <= s.top_k <= MAX_TOP_K:
        bad("top_k", s.top_k, f"0–{MAX_TOP_K} (0 turns it off)")
    if not 0 <= s.seed <= MAX_SEED:
        bad("seed", s.seed, f"0–{MAX_SEED}")
    if s.thinking_budget is not None and (not isinstance(s.thinking_budget, int)
                                          or isinstance(s.thinking_budget, bool) or s.thinking_budget < 0):
        bad("thinking_budget", s.thinking_budget, "a whole number ≥ 0, or empty for unlimited")
    return s


@dataclass(frozen=True)
class LaneUpdate:
    """One event of one lane. kind: one of UPDATE_KINDS."""

    lane: str
    kind: str
    t: float
    token_ids: tuple[int, ...] = ()
    text: str = ""
    reasoning: str = ""
    answer: str = ""
    forced: bool = False
    token_kind: str = ""  # one of TOKEN_KINDS for a token event; lets a mirror rebuild a LaneResult
    finish_reason: str | None = None
    error: str | None = None


@dataclass
class LaneResult:
    """Everything a lane produced, torch-free: what metrics, charts and the store read."""

    lane: str
    prompt_tokens: int
    settings: LaneSettings
    t_start: float
    token_ids: list[int] = field(default_factory=list)
    token_times: list[float] = field(default_factory=list)
    token_kinds: list[str] = field(default_factory=list)  # one of TOKEN_KINDS per token
    forced: list[bool] = field(default_factory=list)
    text: str = ""
    reasoning: str = ""
    answer: str = ""
    status: str = "running"  # running, then one of FINISH_STATUSES
    finish_reason: str | None = None
    error: str | None = None
    t_end: float | None = None
    first_answer_time: float | None = None
    count_source: str = "exact"  # a remote lane: "usage" | "tokenizer" | "estimate" (metrics.LaneMetrics)

    def end(self, status: str, finish_reason: str | None, t: float | None, error: str | None = None) -> None:
        self.status, self.finish_reason, self.error, self.t_end = status, finish_reason, error, t


def add_text(r: LaneResult, text: str, reasoning: str, answer: str, t: float) -> None:
    """Append one step's text to a lane; the first non-blank answer text marks time to first answer."""
    r.text += text
    r.reasoning += reasoning
    r.answer += answer
    if answer.strip() and r.first_answer_time is None:
        r.first_answer_time = t


def add_token(r: LaneResult, token_id: int, t: float, kind: str, forced: bool = False) -> None:
    """Append one token's timing entry (-1 as the id where a server sends no ids)."""
    r.token_ids.append(token_id)
    r.token_times.append(t)
    r.token_kinds.append(kind)
    r.forced.append(forced)
