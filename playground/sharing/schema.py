"""The versioned JSON export of a session, its import, and share tokens. Pure: no I/O, no
rendering (markdown.py and page.py render; routes.py and cli.py call these).

An import is untrusted: every key, type, length and count is checked here before anything is
written. Exports carry no owner, no id and no share token.

## JSON export schema (`reasoning-playground/session`, version 2)

    {"schema": "reasoning-playground/session", "version": 2,
     "exported_at": "<ISO 8601 with offset>",
     "session": {"title": str (1–200 chars), "created_at": ISO, "updated_at": ISO,
       "cells": [ in notebook order
         {"kind": "prompt" | "note", "prompt": str, "system_prompt": str | null, "note": str,
          "settings": {"standard": {...}, "reasoning": {...}},   # the cell's lane settings
          "executions": [ oldest first, numbers strictly increasing
            {"number": int ≥ 1, "turn": int ≥ 1, "parent": int | null, "prompt": str | null,  # version 2
             "runs": {"standard" | "reasoning": {
               "status": "running" | "done" | "stopped" | "error" | "interrupted",
               "raw_text", "reasoning_text", "answer_text": str,
               "prompt_tokens", "generated_tokens", "reasoning_tokens", "answer_tokens": int ≥ 0,
               "token_ids": [int], "token_times": [float, seconds since the run started],
               "token_kinds": "r"/"a" per token, "forced": "0"/"1" per token,
               "metrics": {name: number | str | null} | null, "finish_reason": str | null,
               "error": str | null, "record": {reproducibility record}, "started_at": ISO,
               "finished_at": ISO | null,
               "grade": {"status", "extracted", "detail", "key"} | null}}}],   # optional
          "expected": str | null, "grader": {"kind": ..., options} | null}],      # optional
       "verdict": {...} | null}}   # optional, written by export, ignored by import (recomputed)

The optional keys arrived after the first files were written: a file without them imports as
ungraded cells, so every older export still reads. Version 2 adds conversation turns: an
execution's ``turn``, the ``parent`` execution (an earlier number of the same cell) whose
conversation it continues, and the ``prompt`` asked at that turn (null: the cell's prompt). A
version-1 file reads as every execution a first turn.

Unknown keys are refused at every level. The four token arrays have one entry per generated
token, and the token counts must agree with them. Limits (named constants below):
MAX_IMPORT_BYTES per file, MAX_TEXT_CHARS per text, MAX_CELLS, MAX_EXECUTIONS per cell,
MAX_TOKENS_PER_RUN, MAX_JSON_DEPTH of nesting. A file of another schema or version is refused
with a message naming both versions; a future version will add a converter here.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from playground.errors import InvalidInput
from playground.evaluation.verdict import session_verdict
from playground.lanes import LANES, RUN_STATUSES
from playground.store import CellFull, Execution, RunInfo, SessionFull
from playground.store.checks import MAX_TITLE_CHARS
from playground.store.models import CELL_KINDS

SCHEMA = "reasoning-playground/session"
VERSION = 2
READABLE_VERSIONS = (1, 2)  # a version-1 file is a version-2 one whose executions are all first turns
MAX_IMPORT_BYTES = 20 * 1024 * 1024
MAX_TEXT_CHARS = 2_000_000
MAX_CELLS = 5_000
MAX_EXECUTIONS = 1_000
MAX_TOKENS_PER_RUN = 1_000_000
MAX_JSON_DEPTH = 32  # the schema itself nests 8 deep; the rest is room for records and settings
MAX_SETTINGS_KEYS = 100
SHARE_TOKEN_BYTES = 32  # 256 bits: a share URL is a bearer credential
# What a share token looks like: token_urlsafe output, checked before any lookup.
SHARE_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32,200}")


class ImportTooLarge(InvalidInput):
    """The import is over MAX_IMPORT_BYTES (HTTP 413)."""


def new_share_token() -> str:
    return secrets.token_urlsafe(SHARE_TOKEN_BYTES)


def is_share_token(token: str) -> bool:
    return SHARE_TOKEN_RE.fullmatch(token) is not None


# --- the schema --------------------------------------------------------------------------------
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]
Scalar = int | float | str | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunDoc(_Strict):
    status: Literal[RUN_STATUSES]
    raw_text: Text
    reasoning_text: Text
    answer_text: Text
    prompt_tokens: Count
    generated_tokens: Count
    reasoning_tokens: Count
    answer_tokens: Count
    token_ids: list[Annotated[int, Field(ge=-2**31, lt=2**31)]] = Field(max_length=MAX_TOKENS_PER_RUN)
    token_times: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(max_length=MAX_TOKENS_PER_RUN)
    token_kinds: str = Field(max_length=MAX_TOKENS_PER_RUN, pattern=r"^[ra]*$")
    forced: str = Field(max_length=MAX_TOKENS_PER_RUN, pattern=r"^[01]*$")
    metrics: dict[str, Scalar] | None = Field(max_length=MAX_SETTINGS_KEYS)
    finish_reason: str | None = Field(max_length=64)
    error: Text | None
    record: dict[str, Any]
    started_at: AwareDatetime
    finished_at: AwareDatetime | None
    grade: dict[str, Scalar] | None = Field(None, max_length=MAX_SETTINGS_KEYS)

    @model_validator(mode="after")
    def _tokens_agree(self) -> RunDoc:
        n = len(self.token_ids)
        if not len(self.token_times) == len(self.token_kinds) == len(self.forced) == n:
            raise ValueError(f"token arrays differ in length: {n} token_ids, {len(self.token_times)} token_times, "
                             f"{len(self.token_kinds)} token_kinds, {len(self.forced)} forced")
        counts = (self.generated_tokens, self.reasoning_tokens, self.answer_tokens)
        if counts != (n, self.token_kinds.count("r"), self.token_kinds.count("a")):
            raise ValueError("generated/reasoning/answer_tokens do not match the token arrays")
        return self


class ExecutionDoc(_Strict):
    number: int = Field(ge=1, le=2**31 - 1)
    runs: dict[Literal[LANES], RunDoc]
    turn: int = Field(1, ge=1, le=2**31 - 1)
    parent: int | None = Field(None, ge=1, le=2**31 - 1)
    prompt: Text | None = None


class CellDoc(_Strict):
    kind: Literal[CELL_KINDS]
    prompt: Text
    system_prompt: Text | None
    note: Text
    settings: dict[str, Any] = Field(max_length=MAX_SETTINGS_KEYS)
    executions: list[ExecutionDoc] = Field(max_length=MAX_EXECUTIONS)
    expected: Text | None = None
    grader: dict[str, Scalar] | None = Field(None, max_length=MAX_SETTINGS_KEYS)

    @field_validator("executions")
    @classmethod
    def _increasing(cls, value: list[ExecutionDoc]) -> list[ExecutionDoc]:
        numbers = [e.number for e in value]
        if any(a >= b for a, b in zip(numbers, numbers[1:])):
            raise ValueError(f"execution numbers must increase: {numbers[:20]}")
        turns = {}
        for e in value:  # a turn continues an EARLIER execution of the cell, and is the one after it
            if (e.parent is None) != (e.turn == 1) or (e.parent is not None and turns.get(e.parent) != e.turn - 1):
                raise ValueError(f"execution {e.number}: turn {e.turn} must continue an earlier execution of turn "
                                 f"{e.turn - 1} (parent {e.parent!r}), and only turn 1 has none")
            turns[e.number] = e.turn
        return value


class SessionDoc(_Strict):
    title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS)
    created_at: AwareDatetime
    updated_at: AwareDatetime
    cells: list[CellDoc] = Field(max_length=MAX_CELLS)
    verdict: dict[str, Any] | None = None


class ExportDoc(_Strict):
    schema_: Literal[SCHEMA] = Field(alias="schema")
    version: Literal[READABLE_VERSIONS]
    exported_at: AwareDatetime
    session: SessionDoc


# --- export ------------------------------------------------------------------------------------
def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat()


def _run_doc(r: RunInfo) -> dict:
    return {"status": r.status, "raw_text": r.raw_text, "reasoning_text": r.reasoning_text,
            "answer_text": r.answer_text, "prompt_tokens": r.prompt_tokens, "generated_tokens": r.generated_tokens,
            "reasoning_tokens": r.reasoning_tokens, "answer_tokens": r.answer_tokens,
            "token_ids": list(r.token_ids), "token_times": list(r.token_times), "token_kinds": r.token_kinds,
            "forced": r.forced, "metrics": r.metrics, "finish_reason": r.finish_reason, "error": r.error,
            "record": r.record, "started_at": _iso(r.started_at), "finished_at": _iso(r.finished_at),
            "grade": r.grade}


def export_document(session: SessionFull, exported_at: datetime | None = None) -> dict:
    """The session as a version-2 export (see the module docstring): plain JSON values."""
    cells = [{"kind": c.kind, "prompt": c.prompt, "system_prompt": c.system_prompt, "note": c.note,
              "settings": c.settings,
              "executions": [{"number": e.number, "turn": e.turn, "parent": e.parent,
                              "prompt": next(iter(e.runs.values())).turn_prompt if e.runs else None,
                              "runs": {lane: _run_doc(r) for lane, r in e.runs.items()}}
                             for e in c.executions], "expected": c.expected, "grader": c.grader}
             for c in session.cells]
    return {"schema": SCHEMA, "version": VERSION, "exported_at": _iso(exported_at or datetime.now(UTC)),
            "session": {"title": session.title, "created_at": _iso(session.created_at),
                        "updated_at": _iso(session.updated_at), "cells": cells,
                        "verdict": session_verdict(session).to_dict()}}


def export_json(session: SessionFull) -> str:
    return json.dumps(export_document(session), ensure_ascii=False, separators=(",", ":"))


# --- import ------------------------------------------------------------------------------------
def _depth(value: Any) -> int:
    """How deep lists and objects nest (iteratively: a hostile file must not exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, d = stack.pop()
        if d > deepest:
            deepest = d
            if d > MAX_JSON_DEPTH:
                break
        children = item.values() if isinstance(item, dict) else item
        stack.extend((v, d + 1) for v in children if isinstance(v, dict | list))
    return deepest


def parse_import(data: bytes | str) -> SessionFull:
    """Validate an export and return it as a record for store.import_sessions (ids blank).
    Raises ImportTooLarge or InvalidInput saying what is wrong; nothing is written."""
    if len(data) > MAX_IMPORT_BYTES:
        raise ImportTooLarge(f"The file has {len(data):,} bytes, over the limit of {MAX_IMPORT_BYTES:,} "
                             "(MAX_IMPORT_BYTES): export fewer cells.")
    try:
        doc = json.loads(data)
    except RecursionError:
        raise InvalidInput(f"The file nests lists or objects too deeply (limit {MAX_JSON_DEPTH}, "
                           "MAX_JSON_DEPTH): it is not a session export.") from None
    except UnicodeDecodeError:
        raise InvalidInput("The file is not UTF-8 text: import a .json session export.") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"The file is not valid JSON ({exc}); it may be truncated: export it again.") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise InvalidInput(f"This is not a session export: schema is {found!r}, expected {SCHEMA!r}.")
    if doc.get("version") not in READABLE_VERSIONS:
        raise InvalidInput(f"This file is version {doc.get('version')!r}; this playground reads versions "
                           f"{', '.join(map(str, READABLE_VERSIONS))}.")
    if _depth(doc) > MAX_JSON_DEPTH:
        raise InvalidInput(f"The file nests lists or objects more than {MAX_JSON_DEPTH} deep (MAX_JSON_DEPTH).")
    try:
        parsed = ExportDoc.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidInput(f"The export is malformed ({exc.error_count()} problem(s)): {problems}"[:2000]) from None
    return _session_record(parsed.session)


def _session_record(s: SessionDoc) -> SessionFull:
    def run(r: RunDoc, lane: str, e: ExecutionDoc) -> RunInfo:
        return RunInfo(id="", cell_id="", execution=e.number, lane=lane, updated_at=r.finished_at or r.started_at,
                       turn=e.turn, parent=e.parent, turn_prompt=e.prompt, **r.model_dump())

    cells = tuple(CellFull(
        id="", session_id="", position=i, kind=c.kind, prompt=c.prompt, system_prompt=c.system_prompt, note=c.note,
        settings=c.settings, created_at=s.created_at, updated_at=s.updated_at, expected=c.expected, grader=c.grader,
        executions=tuple(Execution(e.number, {lane: run(r, lane, e) for lane, r in e.runs.items()})
                         for e in c.executions)) for i, c in enumerate(s.cells))
    return SessionFull(id="", owner="", title=s.title, created_at=s.created_at, updated_at=s.updated_at,
                       forked_from=None, cells=cells)
