"""What the store hands out: plain frozen dataclasses, never ORM objects.

Callers never hold a database session, so nothing loads lazily behind their back and a record
stays valid after the call that made it returns. Token ids and times are TokenArrays: immutable
sequences kept packed, equal to the list of the same numbers; the per-token kinds and forced
flags keep their compact string form, with properties that expand them into what
metrics.lane_metrics takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .codec import TokenArray, decode_forced, decode_kinds


@dataclass(frozen=True)
class SessionInfo:
    id: str
    owner: str
    title: str
    created_at: datetime
    updated_at: datetime
    forked_from: str | None = None


@dataclass(frozen=True)
class CellInfo:
    id: str
    session_id: str
    position: int
    kind: str  # "prompt" | "note"
    prompt: str
    system_prompt: str | None
    note: str
    settings: dict  # {"standard": {...}, "reasoning": {...}}
    created_at: datetime
    updated_at: datetime
    expected: str | None = None  # the right answer (a pattern or a test for regex/python graders)
    grader: dict | None = None  # {"kind": ..., options}: see playground.evaluation.graders


@dataclass(frozen=True)
class RunInfo:
    """One lane of one execution. token_times are seconds since the run started."""

    id: str
    cell_id: str
    execution: int
    lane: str
    status: str  # running | done | stopped | error | interrupted
    raw_text: str
    reasoning_text: str
    answer_text: str
    prompt_tokens: int
    generated_tokens: int
    reasoning_tokens: int
    answer_tokens: int
    token_ids: TokenArray  # int per token
    token_times: TokenArray  # float per token
    token_kinds: str  # "r"/"a" per token
    forced: str  # "0"/"1" per token
    metrics: dict | None
    finish_reason: str | None
    error: str | None
    record: dict  # reproducibility record; record["settings"] is this lane's settings
    started_at: datetime
    finished_at: datetime | None
    updated_at: datetime
    # {"status", "extracted", "detail", "key"}: graders.Grade plus what it was graded against.
    grade: dict | None = None

    @property
    def kinds(self) -> list[str]:
        """"reasoning"/"answer" per token."""
        return decode_kinds(self.token_kinds)

    @property
    def forced_flags(self) -> list[bool]:
        return decode_forced(self.forced)


@dataclass(frozen=True)
class Execution:
    """One press of Run on a cell: its lanes' runs, by lane name."""

    number: int
    runs: dict[str, RunInfo]


@dataclass(frozen=True)
class CellFull(CellInfo):
    """A cell with every execution, oldest first (the last one is what the cell shows)."""

    executions: tuple[Execution, ...] = ()

    @property
    def latest(self) -> Execution | None:
        return self.executions[-1] if self.executions else None


@dataclass(frozen=True)
class SessionFull(SessionInfo):
    """A session with its cells in position order."""

    cells: tuple[CellFull, ...] = field(default=())


@dataclass(frozen=True)
class ShareInfo:
    token: str
    session_id: str
    created_at: datetime
    revoked_at: datetime | None
