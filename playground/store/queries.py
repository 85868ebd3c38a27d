"""The statements SessionStore composes: ownership checks, loading a whole session, copying one.

Reads go through Core selects straight into records: opening a 1,000-cell session reads 2,000
run rows, and ORM objects would add an identity map and instrumented attributes per row only to
be copied out again. (The larger cost, token arrays, is settled in codec.py.) Every function
runs inside the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import fields
from datetime import datetime

from sqlalchemy import Select, String, bindparam, case, exists, func, insert, literal_column, or_, select
from sqlalchemy.orm import Session

from playground.errors import NotFound
from playground.lanes import LANES

from .checks import (
    EDITABLE_CELL_FIELDS,
    check_cell_fields,
    check_lane,
    check_owner,
    check_status,
    check_title,
    escape_like,
    run_progress,
)
from .codec import unpack_ids, unpack_times
from .models import CellRow, RunRow, SessionRow, ShareRow
from .records import CellFull, CellInfo, Execution, RunInfo, SessionFull, SessionInfo
from .sqlite import WRITE

sessions_t = SessionRow.__table__
cells_t = CellRow.__table__
runs_t = RunRow.__table__
shares_t = ShareRow.__table__

# Columns selected in the records' field order, so a row becomes a record positionally.
SESSION_COLS = [sessions_t.c[f.name] for f in fields(SessionInfo)]
CELL_COLS = [cells_t.c[f.name] for f in fields(CellInfo)]
RUN_COLS = [runs_t.c[f.name] for f in fields(RunInfo)]
_IDS, _TIMES = (next(i for i, c in enumerate(RUN_COLS) if c.name == name) for name in ("token_ids", "token_times"))

# One message for "no such session" and "not yours": telling them apart would let anyone probe ids.
MISSING_SESSION = "No such session: it was deleted, or it belongs to someone else."
MISSING_CELL = "No such cell: it was deleted, or its session belongs to someone else."
MISSING_SHARE = "This share link does not exist or was revoked: ask its owner for a new one."
MISSING_PARENT = "No such earlier turn in this cell: run the cell first, or continue one of its executions."


def new_id() -> str:
    return uuid.uuid4().hex


def _locking(s: Session, stmt: Select) -> Select:
    """In a write transaction, lock the session row found (PostgreSQL; SQLite writes are serialized
    by BEGIN IMMEDIATE and SQLAlchemy renders no FOR UPDATE there): two writers to one session
    (adding cells, numbering executions) take turns instead of reading the same count."""
    return stmt.with_for_update(of=sessions_t) if s.info.get(WRITE) else stmt


def owned_session(s: Session, owner: str, session_id) -> SessionInfo:
    check_owner(owner)
    if not isinstance(session_id, str):
        raise NotFound(MISSING_SESSION)
    row = s.execute(_locking(s, select(*SESSION_COLS).where(sessions_t.c.id == session_id,
                                                            sessions_t.c.owner == owner))).first()
    if row is None:
        raise NotFound(MISSING_SESSION)
    return SessionInfo(*row)


def owned_cell(s: Session, owner: str, cell_id) -> CellInfo:
    check_owner(owner)
    if not isinstance(cell_id, str):
        raise NotFound(MISSING_CELL)
    row = s.execute(_locking(s, select(*CELL_COLS).join(sessions_t, sessions_t.c.id == cells_t.c.session_id)
                             .where(cells_t.c.id == cell_id, sessions_t.c.owner == owner))).first()
    if row is None:
        raise NotFound(MISSING_CELL)
    return CellInfo(*row)


def shared_source(s: Session, token) -> SessionInfo:
    """The session behind a live (unrevoked) share token, whoever owns it."""
    if not isinstance(token, str):
        raise NotFound(MISSING_SHARE)
    row = s.execute(select(*SESSION_COLS).join(shares_t, shares_t.c.session_id == sessions_t.c.id)
                    .where(shares_t.c.token == token, shares_t.c.revoked_at.is_(None))).first()
    if row is None:
        raise NotFound(MISSING_SHARE)
    return SessionInfo(*row)


def touch_session(s: Session, session_id: str | None, now: datetime) -> None:
    if session_id is not None:
        s.execute(sessions_t.update().where(sessions_t.c.id == session_id).values(updated_at=now))


def lock_session_of_run(s: Session, run_id) -> str | None:
    """The id of the run's session, its row locked (as owned_session locks it); None: no such run."""
    return s.execute(_locking(s, select(sessions_t.c.id).join(cells_t, cells_t.c.session_id == sessions_t.c.id)
                              .join(runs_t, runs_t.c.cell_id == cells_t.c.id).where(runs_t.c.id == run_id))).scalar()


def list_query(owner: str | None, query: str, postgres: bool) -> Select:
    """Sessions (the owner's, or everyone's), most recently updated first, matching `query` in the
    title or a cell's prompt, case-insensitively."""
    stmt = select(*SESSION_COLS)
    if owner is not None:
        stmt = stmt.where(sessions_t.c.owner == owner)
    if query:
        pattern = "%" + escape_like(query) + "%"
        # SQLite's LIKE already folds ASCII case; PostgreSQL's is exact, ILIKE folds every letter.
        match = (lambda col: col.ilike(pattern, escape="\\")) if postgres else \
            (lambda col: col.like(pattern, escape="\\"))
        in_prompt = exists().where(cells_t.c.session_id == sessions_t.c.id, match(cells_t.c.prompt))
        stmt = stmt.where(or_(match(sessions_t.c.title), in_prompt))
    # A tie-break between equal timestamps keeps pages stable. SQLite: rowid (insertion order), the
    # (owner, updated_at) index's last column, so the index still delivers rows sorted; PostgreSQL
    # has no rowid: the id.
    tie = sessions_t.c.id if postgres else literal_column("sessions.rowid")
    return stmt.order_by(sessions_t.c.updated_at.desc(), tie.desc())


def run_info(row) -> RunInfo:
    values = list(row)
    values[_IDS] = unpack_ids(values[_IDS])
    values[_TIMES] = unpack_times(values[_TIMES])
    return RunInfo(*values)


def load_full(s: Session, info: SessionInfo) -> SessionFull:
    """The session with its cells in position order, each with all executions, oldest first."""
    cells = s.execute(select(*CELL_COLS).where(cells_t.c.session_id == info.id)
                      .order_by(cells_t.c.position)).all()
    rows = s.execute(select(*RUN_COLS).join(cells_t, cells_t.c.id == runs_t.c.cell_id)
                     .where(cells_t.c.session_id == info.id)).all()
    by_cell: dict[str, dict[int, dict[str, RunInfo]]] = {}
    for row in rows:
        run = run_info(row)
        by_cell.setdefault(run.cell_id, {}).setdefault(run.execution, {})[run.lane] = run
    full_cells = []
    for c in cells:
        executions = by_cell.get(c.id, {})
        full_cells.append(CellFull(*c, executions=tuple(
            Execution(n, _in_lane_order(executions[n])) for n in sorted(executions))))
    return SessionFull(*(getattr(info, f.name) for f in fields(SessionInfo)), cells=tuple(full_cells))


def load_cell(s: Session, cell: CellInfo) -> CellFull:
    """One cell with all its executions, oldest first (a follow-up's history, without its session)."""
    executions: dict[int, dict[str, RunInfo]] = {}
    for row in s.execute(select(*RUN_COLS).where(runs_t.c.cell_id == cell.id)).all():
        run = run_info(row)
        executions.setdefault(run.execution, {})[run.lane] = run
    return CellFull(*(getattr(cell, f.name) for f in fields(CellInfo)), executions=tuple(
        Execution(n, _in_lane_order(executions[n])) for n in sorted(executions)))


def _in_lane_order(runs: dict[str, RunInfo]) -> dict[str, RunInfo]:
    return {lane: runs[lane] for lane in sorted(runs, key=lambda k: LANES.index(k) if k in LANES else len(LANES))}


def new_execution(s: Session, cell: CellInfo, lanes: dict[str, dict], record: dict, parent: int | None,
                  prompt: str | None, now: datetime, replica: str | None) -> dict[str, str]:
    """One "running" row per lane of the cell's next execution (number = last + 1), as turn 1 or as
    the turn after execution `parent` of the same cell (NotFound when there is no such execution)."""
    turn = 1
    if parent is not None:
        turn = s.execute(select(runs_t.c.turn).where(runs_t.c.cell_id == cell.id, runs_t.c.execution == parent)
                         .limit(1)).scalar()
        if turn is None:
            raise NotFound(MISSING_PARENT)
        turn += 1
    last = s.execute(select(func.max(runs_t.c.execution)).where(runs_t.c.cell_id == cell.id)).scalar()
    execution = (last or 0) + 1
    run_ids = {lane: new_id() for lane in lanes}
    s.execute(runs_t.insert(), [dict(
        id=run_ids[lane], cell_id=cell.id, execution=execution, lane=lane, status="running", replica=replica,
        prompt_tokens=0, generated_tokens=0, reasoning_tokens=0, answer_tokens=0,
        started_at=now, updated_at=now, record={**record, "settings": settings},
        raw_text="", reasoning_text="", answer_text="", token_ids=b"", token_times=b"", token_kinds="",
        forced="", turn=turn, parent=parent, turn_prompt=prompt) for lane, settings in lanes.items()])
    return run_ids


def copy_session(s: Session, source: SessionInfo, owner: str, title: str, forked_from: str | None,
                 now: datetime) -> SessionInfo:
    """A new session for `owner` with copies of every cell and run of `source` (new ids)."""
    info = SessionInfo(new_id(), owner, title, now, now, forked_from)
    s.execute(insert(sessions_t).values(**{f.name: getattr(info, f.name) for f in fields(SessionInfo)}))
    cells = s.execute(select(*CELL_COLS).where(cells_t.c.session_id == source.id)).all()
    if not cells:
        return info
    new_cell = {c.id: new_id() for c in cells}
    s.execute(insert(cells_t), [
        {**c._asdict(), "id": new_cell[c.id], "session_id": info.id} for c in cells])
    run_ids = s.execute(select(runs_t.c.id, runs_t.c.cell_id).join(cells_t, cells_t.c.id == runs_t.c.cell_id)
                        .where(cells_t.c.session_id == source.id)).all()
    if run_ids:
        # Copy each run inside SQLite (INSERT ... SELECT): token arrays and texts never pass
        # through Python. A run still in flight is copied as "interrupted": nothing will ever
        # finish the copy, and no replica runs it (replica stays NULL).
        rest = [c for c in runs_t.c if c.name not in ("id", "cell_id", "status", "replica")]
        source_run = select(bindparam("new_id", type_=String), bindparam("new_cell_id", type_=String),
                            case((runs_t.c.status == "running", "interrupted"), else_=runs_t.c.status),
                            *rest).where(runs_t.c.id == bindparam("old_id", type_=String))
        stmt = insert(runs_t).from_select(["id", "cell_id", "status", *(c.name for c in rest)], source_run)
        s.execute(stmt, [{"new_id": new_id(), "new_cell_id": new_cell[cell_id], "old_id": run_id}
                         for run_id, cell_id in run_ids])
    return info


def insert_sessions(s: Session, owner: str, sessions: Iterable[SessionFull]) -> list[SessionInfo]:
    """New rows (new ids, the records' timestamps kept) for whole sessions, in one executemany per
    table: what imports and the benchmark's 10,000-session build use. Cells are renumbered
    0..n-1 in the given order; runs still "running" arrive "interrupted"."""
    infos, session_rows, cell_rows, run_rows = [], [], [], []
    for full in sessions:
        info = SessionInfo(new_id(), owner, check_title(full.title), full.created_at, full.updated_at,
                           full.forked_from)
        infos.append(info)
        session_rows.append({f.name: getattr(info, f.name) for f in fields(SessionInfo)})
        for position, cell in enumerate(full.cells):
            row = {f.name: getattr(cell, f.name) for f in fields(CellInfo)}
            check_cell_fields({k: row[k] for k in EDITABLE_CELL_FIELDS})
            row.update(id=new_id(), session_id=info.id, position=position)
            cell_rows.append(row)
            for execution in cell.executions:
                for run in execution.runs.values():
                    run_rows.append(_run_row(run, row["id"], execution.number))
    for table, rows in ((sessions_t, session_rows), (cells_t, cell_rows), (runs_t, run_rows)):
        if rows:
            s.execute(insert(table), rows)
    return infos


def _run_row(run: RunInfo, cell_id: str, execution: int) -> dict:
    row = {f.name: getattr(run, f.name) for f in fields(RunInfo)}
    check_lane(run.lane)
    check_status(run.status)
    # Re-derive the token counts (and check the arrays agree) rather than trust the record.
    row.update(run_progress(run.raw_text, run.reasoning_text, run.answer_text, run.token_ids, run.token_times,
                            run.token_kinds, run.forced))
    row.update(id=new_id(), cell_id=cell_id, execution=execution)
    if run.status == "running":  # as mark_interrupted() would: nothing will ever finish it here
        row.update(status="interrupted", finished_at=run.updated_at)
    return row
