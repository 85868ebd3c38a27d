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
    turn: int = 1  # the conversation turn (1 = the cell's first prompt)
    parent: int | None = None  # the execution number of the turn this one continues
    turn_prompt: str | None = None  # what the user asked at this turn (None: the cell's prompt, runs before 0005)

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

    @property
    def turn(self) -> int:
        return next(iter(self.runs.values())).turn if self.runs else 1

    @property
    def parent(self) -> int | None:
        return next(iter(self.runs.values())).parent if self.runs else None

    def prompt(self, cell_prompt: str) -> str:
        """What the user asked at this turn (`cell_prompt` for runs stored before turns existed)."""
        run = next(iter(self.runs.values()), None)
        return run.turn_prompt if run is not None and run.turn_prompt is not None else cell_prompt


@dataclass(frozen=True)
class CellFull(CellInfo):
    """A cell with every execution, oldest first (the last one is what the cell shows)."""

    executions: tuple[Execution, ...] = ()

    @property
    def latest(self) -> Execution | None:
        return self.executions[-1] if self.executions else None

    def conversation(self, number: int | None = None) -> tuple[Execution, ...]:
        """The turns that lead to execution `number` (default: the latest), turn 1 first: the branch
        of the conversation it belongs to. Empty when the cell never ran."""
        by_number = {e.number: e for e in self.executions}
        at = by_number.get(number if number is not None else (self.latest.number if self.latest else -1))
        chain: list[Execution] = []
        while at is not None and len(chain) < len(by_number):
            chain.append(at)
            at = by_number.get(at.parent) if at.parent is not None else None
        return tuple(reversed(chain))

    @property
    def turns(self) -> tuple[Execution, ...]:
        """The latest execution's conversation, turn by turn."""
        return self.conversation()


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
