"""SessionStore: the playground's sessions, cells, runs and shares, one short transaction per call.

Thread-safe: every call opens its own ORM session on a pooled connection and closes it before
returning, and every write starts with BEGIN IMMEDIATE, so concurrent writers queue on the
busy timeout instead of failing. Methods on a session take its owner and raise NotFound for a
session that is missing or someone else's; run writes (checkpoint_run, finish_run) take only
the run id, which the server made and never shows a browser.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from alembic.util import CommandError
from sqlalchemy import Engine, delete, exists, func, literal_column, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from playground.errors import InvalidInput, NotFound, StoreUnavailable
from playground.lanes import LANES

from .checks import (
    DEFAULT_TITLE,
    check_cell_fields,
    check_execution,
    check_finish,
    check_owner,
    check_page,
    check_record,
    check_share_token,
    check_title,
    copy_title,
    escape_like,
    run_progress,
)
from .db import WRITE, connect, default_db_path, migrate
from .models import utcnow
from .queries import (
    MISSING_SHARE,
    SESSION_COLS,
    cells_t,
    copy_session,
    insert_sessions,
    load_full,
    new_id,
    owned_cell,
    owned_session,
    runs_t,
    sessions_t,
    shared_source,
    shares_t,
    touch_session,
)
from .records import CellInfo, SessionFull, SessionInfo, ShareInfo


def open_store(path: str | Path | None = None) -> SessionStore:
    """Open (creating it if needed) the database at `path` (default: default_db_path()), migrated to head."""
    path = Path(path if path is not None else default_db_path()).expanduser()
    try:
        engine = connect(path)
    except OSError as exc:
        raise StoreUnavailable(f"Cannot create the database folder {path.parent}: {exc}. Set PLAYGROUND_DB "
                               "(or PLAYGROUND_HOME) to a writable place.") from exc
    try:
        migrate(engine)
    except DBAPIError as exc:
        engine.dispose()
        raise StoreUnavailable(f"Cannot open the database {path}: {exc.orig}. If the file is damaged, move it "
                               "aside (a new one is made); else set PLAYGROUND_DB to a writable file.") from exc
    except CommandError as exc:  # e.g. a revision this checkout does not have
        engine.dispose()
        raise StoreUnavailable(f"The database {path} has a schema this version cannot read ({exc}): it was made "
                               "by a newer playground. Upgrade, or set PLAYGROUND_DB to another file.") from exc
    except BaseException:
        engine.dispose()
        raise
    return SessionStore(engine)


class SessionStore:
    """The repository over one database file; make it with open_store(), share it across threads."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._reader = sessionmaker(engine)
        self._writer = sessionmaker(engine.execution_options(**{WRITE: True}))

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._reader.begin() as s:
            yield s

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._writer.begin() as s:
            yield s

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- sessions ---------------------------------------------------------------------------
    def create_session(self, owner: str, title: str = DEFAULT_TITLE) -> SessionInfo:
        check_owner(owner)
        now = utcnow()
        info = SessionInfo(new_id(), owner, check_title(title), now, now, None)
        with self._write() as s:
            s.execute(sessions_t.insert().values(id=info.id, owner=owner, title=info.title,
                                                 created_at=now, updated_at=now))
        return info

    def rename_session(self, owner: str, session_id: str, title: str) -> SessionInfo:
        title = check_title(title)
        with self._write() as s:
            info = owned_session(s, owner, session_id)
            now = utcnow()
            s.execute(update(sessions_t).where(sessions_t.c.id == info.id).values(title=title, updated_at=now))
        return SessionInfo(info.id, owner, title, info.created_at, now, info.forked_from)

    def delete_session(self, owner: str, session_id: str) -> None:
        """Delete the session with its cells, runs and share tokens (ON DELETE CASCADE)."""
        with self._write() as s:
            owned_session(s, owner, session_id)
            s.execute(delete(sessions_t).where(sessions_t.c.id == session_id))

    def duplicate_session(self, owner: str, session_id: str, title: str | None = None) -> SessionInfo:
        """A copy of the owner's session, cells and runs included; title defaults to "<title> (copy)"."""
        with self._write() as s:
            src = owned_session(s, owner, session_id)
            new_title = check_title(title) if title is not None else copy_title(src.title)
            return copy_session(s, src, owner, new_title, None, utcnow())

    def fork_session(self, owner: str, *, share_token: str | None = None, session_id: str | None = None,
                     title: str | None = None) -> SessionInfo:
        """A copy, for `owner`, of a shared session (by live share token) or of one of their own
        (by id); forked_from holds the source's id."""
        check_owner(owner)
        if (share_token is None) == (session_id is None):
            raise InvalidInput("fork_session takes either share_token or session_id, not both or neither.")
        with self._write() as s:
            src = shared_source(s, share_token) if share_token is not None else owned_session(s, owner, session_id)
            return copy_session(s, src, owner, check_title(title) if title is not None else src.title, src.id, utcnow())

    def import_sessions(self, owner: str, sessions: Iterable[SessionFull]) -> list[SessionInfo]:
        """Store whole sessions (e.g. parsed from an export) for `owner` in one transaction, under
        new ids; their timestamps are kept. Returns the new sessions, in order."""
        check_owner(owner)
        with self._write() as s:
            return insert_sessions(s, owner, sessions)

    def list_sessions(self, owner: str, query: str = "", limit: int = 50, offset: int = 0) -> list[SessionInfo]:
        """The owner's sessions, most recently updated first; `query` matches (case-insensitively,
        ASCII letters only, as SQLite's LIKE does) the title or any cell's prompt."""
        check_owner(owner)
        return self._list(owner, query, limit, offset)

    def list_all_sessions(self, query: str = "", limit: int = 50, offset: int = 0) -> list[SessionInfo]:
        """Every owner's sessions: for the operator's command line only, never for a visitor."""
        return self._list(None, query, limit, offset)

    def owner_of_session(self, session_id: str) -> str:
        """Who owns a session (operator tools); NotFound when there is no such session."""
        with self._read() as s:
            owner = s.execute(select(sessions_t.c.owner).where(sessions_t.c.id == session_id)).scalar()
        if owner is None:
            raise NotFound("No such session.")
        return owner

    def _list(self, owner: str | None, query: str, limit: int, offset: int) -> list[SessionInfo]:
        check_page(limit, offset)
        if not isinstance(query, str):
            raise InvalidInput("The search query must be text.")
        stmt = select(*SESSION_COLS)
        if owner is not None:
            stmt = stmt.where(sessions_t.c.owner == owner)
        query = query.strip()
        if query:
            pattern = "%" + escape_like(query) + "%"
            in_prompt = exists().where(cells_t.c.session_id == sessions_t.c.id,
                                       cells_t.c.prompt.like(pattern, escape="\\"))
            stmt = stmt.where(or_(sessions_t.c.title.like(pattern, escape="\\"), in_prompt))
        # rowid breaks ties between equal timestamps; it is the last column of the
        # (owner, updated_at) index, so the index still delivers rows already sorted.
        stmt = stmt.order_by(sessions_t.c.updated_at.desc(), literal_column("sessions.rowid").desc())
        with self._read() as s:
            return [SessionInfo(*r) for r in s.execute(stmt.limit(limit).offset(offset))]

    def get_session(self, owner: str, session_id: str) -> SessionFull:
        with self._read() as s:
            return load_full(s, owned_session(s, owner, session_id))

    # --- cells ------------------------------------------------------------------------------
    def add_cell(self, owner: str, session_id: str, kind: str = "prompt", prompt: str = "",
                 system_prompt: str | None = None, note: str = "", settings: dict | None = None,
                 position: int | None = None, expected: str | None = None, grader: dict | None = None) -> CellInfo:
        """A new cell at `position` (0-based; None appends); the cells after it move down one."""
        if settings is None:
            settings = {lane: {} for lane in LANES}
        values = check_cell_fields({"kind": kind, "prompt": prompt, "system_prompt": system_prompt, "note": note,
                                    "settings": settings, "expected": expected, "grader": grader})
        with self._write() as s:
            owned_session(s, owner, session_id)
            count = s.execute(select(func.count()).where(cells_t.c.session_id == session_id)).scalar_one()
            if position is None:
                position = count
            elif not isinstance(position, int) or isinstance(position, bool) or not 0 <= position <= count:
                raise InvalidInput(f"position={position!r} is out of range: use 0–{count}, or None to append.")
            else:
                s.execute(update(cells_t).where(cells_t.c.session_id == session_id, cells_t.c.position >= position)
                          .values(position=cells_t.c.position + 1))
            now = utcnow()
            cell = CellInfo(id=new_id(), session_id=session_id, position=position, created_at=now, updated_at=now,
                            **values)
            s.execute(cells_t.insert().values(**cell.__dict__))
            touch_session(s, session_id, now)
        return cell

    def get_cell(self, owner: str, cell_id: str, runs: bool = False) -> CellInfo:
        """One cell's fields (runs: a CellFull, with its executions): NotFound if missing or someone else's."""
        with self._read() as s:
            return owned_cell(s, owner, cell_id, runs=runs)

    def update_cell(self, owner: str, cell_id: str, **changes) -> CellInfo:
        """Set any of kind, prompt, system_prompt, note, settings, expected, grader; writes only when a
        value changed."""
        changes = check_cell_fields(changes)
        with self._write() as s:
            cell = owned_cell(s, owner, cell_id)
            changed = {k: v for k, v in changes.items() if getattr(cell, k) != v}
            if not changed:
                return cell
            now = utcnow()
            s.execute(update(cells_t).where(cells_t.c.id == cell_id).values(**changed, updated_at=now))
            touch_session(s, cell.session_id, now)
        return CellInfo(**{**cell.__dict__, **changed, "updated_at": now})

    def move_cell(self, owner: str, cell_id: str, delta: int) -> int:
        """Swap the cell with its neighbour above (-1) or below (+1); at either end nothing moves.
        Returns the cell's position afterwards."""
        if delta not in (-1, 1) or isinstance(delta, bool):
            raise InvalidInput(f"delta={delta!r}: a cell moves by -1 (up) or +1 (down).")
        with self._write() as s:
            cell = owned_cell(s, owner, cell_id)
            target = cell.position + delta
            neighbour = s.execute(select(cells_t.c.id).where(cells_t.c.session_id == cell.session_id,
                                                             cells_t.c.position == target)).scalar()
            if neighbour is None:
                return cell.position
            s.execute(update(cells_t).where(cells_t.c.id == neighbour).values(position=cell.position))
            s.execute(update(cells_t).where(cells_t.c.id == cell_id).values(position=target))
            touch_session(s, cell.session_id, utcnow())
        return target

    def delete_cell(self, owner: str, cell_id: str) -> None:
        """Delete the cell and its runs; the cells after it move up one."""
        with self._write() as s:
            cell = owned_cell(s, owner, cell_id)
            s.execute(delete(cells_t).where(cells_t.c.id == cell_id))
            s.execute(update(cells_t).where(cells_t.c.session_id == cell.session_id,
                                            cells_t.c.position > cell.position)
                      .values(position=cells_t.c.position - 1))
            touch_session(s, cell.session_id, utcnow())

    # --- runs -------------------------------------------------------------------------------
    def start_execution(self, owner: str, cell_id: str, lanes: dict[str, dict], record: dict) -> dict[str, str]:
        """A new execution of the cell (number = last + 1; earlier ones stay as versions): one
        "running" row per lane. Each row's record is `record` with "settings" set to that lane's."""
        check_execution(lanes, record)
        with self._write() as s:
            cell = owned_cell(s, owner, cell_id)
            if cell.kind != "prompt":
                raise InvalidInput("A note cell does not run: change its kind to prompt first.")
            last = s.execute(select(func.max(runs_t.c.execution)).where(runs_t.c.cell_id == cell_id)).scalar()
            execution = (last or 0) + 1
            now = utcnow()
            run_ids = {lane: new_id() for lane in lanes}
            s.execute(runs_t.insert(), [dict(
                id=run_ids[lane], cell_id=cell_id, execution=execution, lane=lane, status="running",
                prompt_tokens=0, generated_tokens=0, reasoning_tokens=0, answer_tokens=0,
                started_at=now, updated_at=now, record={**record, "settings": settings},
                raw_text="", reasoning_text="", answer_text="", token_ids=b"", token_times=b"", token_kinds="",
                forced="") for lane, settings in lanes.items()])
            touch_session(s, cell.session_id, now)
        return run_ids

    def checkpoint_run(self, run_id: str, *, raw_text: str, reasoning_text: str, answer_text: str,
                       token_ids: Sequence[int], token_times: Sequence[float], token_kinds: str | Sequence[str],
                       forced: str | Sequence[bool]) -> bool:
        """Save what a running run produced so far (token_times: seconds since the run started).
        False when the run is no longer running (finished, or its cell deleted): nothing is written."""
        values = run_progress(raw_text, reasoning_text, answer_text, token_ids, token_times, token_kinds, forced)
        with self._write() as s:
            return s.execute(update(runs_t).where(runs_t.c.id == run_id, runs_t.c.status == "running")
                             .values(**values, updated_at=utcnow())).rowcount == 1

    def finish_run(self, run_id: str, *, status: str, raw_text: str, reasoning_text: str, answer_text: str,
                   token_ids: Sequence[int], token_times: Sequence[float], token_kinds: str | Sequence[str],
                   forced: str | Sequence[bool], prompt_tokens: int, metrics: dict | None,
                   finish_reason: str | None, error: str | None, record: dict | None = None) -> bool:
        """The run's final state, in one transaction; `record`, when given, replaces the reproducibility
        record written at the start (what the run learned meanwhile). False when it was not running
        (already finished, or its cell deleted): a late or repeated finish never overwrites a result."""
        check_finish(status, prompt_tokens, metrics, record)
        values = run_progress(raw_text, reasoning_text, answer_text, token_ids, token_times, token_kinds, forced)
        if record is not None:
            values["record"] = record
        now = utcnow()
        with self._write() as s:
            done = s.execute(update(runs_t).where(runs_t.c.id == run_id, runs_t.c.status == "running").values(
                **values, status=status, prompt_tokens=prompt_tokens, metrics=metrics,
                finish_reason=finish_reason, error=error, finished_at=now, updated_at=now)).rowcount == 1
            if done:
                session_of_run = (select(cells_t.c.session_id).join(runs_t, runs_t.c.cell_id == cells_t.c.id)
                                  .where(runs_t.c.id == run_id).scalar_subquery())
                s.execute(update(sessions_t).where(sessions_t.c.id == session_of_run).values(updated_at=now))
        return done

    def set_grade(self, run_id: str, grade: dict | None) -> bool:
        """Cache a finished run's grade (graders.Grade.to_dict() plus its "key"); None clears it.
        False when there is no such run. Grading never changes a run's output or status."""
        if grade is not None and not isinstance(grade, dict):
            raise InvalidInput("A grade must be a dict (Grade.to_dict()) or None.")
        with self._write() as s:
            # updated_at moves too: pages cached by it (the share page) must show the new grade.
            return s.execute(update(runs_t).where(runs_t.c.id == run_id)
                             .values(grade=grade, updated_at=utcnow())).rowcount == 1

    def set_record(self, run_id: str, record: dict) -> bool:
        """Replace a run's reproducibility record with what its run learned after this lane ended
        (another lane's timings, say). False when there is no such run."""
        check_record(record)
        with self._write() as s:
            return s.execute(update(runs_t).where(runs_t.c.id == run_id)
                             .values(record=record, updated_at=utcnow())).rowcount == 1

    def mark_interrupted(self) -> int:
        """At start-up: every run left "running" by a dead process becomes "interrupted", keeping the
        tokens of its last checkpoint; finished_at is that checkpoint's time. Returns how many."""
        with self._write() as s:
            return s.execute(update(runs_t).where(runs_t.c.status == "running")
                             .values(status="interrupted", finished_at=runs_t.c.updated_at)).rowcount

    # --- shares -----------------------------------------------------------------------------
    def create_share(self, owner: str, session_id: str, token: str) -> str:
        """Register `token` (the caller makes it with secrets.token_urlsafe(32)) as a read-only link."""
        check_share_token(token)
        try:
            with self._write() as s:
                owned_session(s, owner, session_id)
                s.execute(shares_t.insert().values(token=token, session_id=session_id, created_at=utcnow()))
        except IntegrityError:
            raise InvalidInput("This share token is already in use: make a new one.") from None
        return token

    def revoke_share(self, owner: str, token: str) -> None:
        """The link stops working at once; revoking twice is harmless."""
        check_owner(owner)
        with self._write() as s:
            row = s.execute(select(shares_t.c.token).join(sessions_t, sessions_t.c.id == shares_t.c.session_id)
                            .where(shares_t.c.token == token, sessions_t.c.owner == owner)).first()
            if row is None:
                raise NotFound(MISSING_SHARE)
            s.execute(update(shares_t).where(shares_t.c.token == token, shares_t.c.revoked_at.is_(None))
                      .values(revoked_at=utcnow()))

    def shared_session(self, token: str) -> SessionFull:
        """The session behind a live share token, for anyone holding it. Its owner comes back
        blank: an owner identity may be a browser's secret, which would let a viewer act as it."""
        with self._read() as s:
            return replace(load_full(s, shared_source(s, token)), owner="")

    def list_shares(self, owner: str, session_id: str) -> list[ShareInfo]:
        """Every token of the session, revoked ones included, newest first."""
        with self._read() as s:
            owned_session(s, owner, session_id)
            rows = s.execute(select(shares_t.c.token, shares_t.c.session_id, shares_t.c.created_at,
                                    shares_t.c.revoked_at).where(shares_t.c.session_id == session_id)
                             .order_by(shares_t.c.created_at.desc()))
            return [ShareInfo(*r) for r in rows]

    # --- health -----------------------------------------------------------------------------
    def integrity_ok(self) -> bool:
        with self.engine.connect() as conn:
            return conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"

    def pragmas(self) -> dict[str, str | int]:
        """The connection settings in force (journal_mode, foreign_keys, busy_timeout, synchronous)."""
        with self.engine.connect() as conn:
            return {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                    for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")}

