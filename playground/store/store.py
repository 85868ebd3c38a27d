"""SessionStore: the playground's sessions, cells, runs and shares, one short transaction per call.

Thread-safe, and safe across processes: every call opens its own ORM session on a pooled
connection and closes it before returning. Writers never interleave on one session: on SQLite
every write starts with BEGIN IMMEDIATE (one writer at a time, the others queue on the busy
timeout); on PostgreSQL a write locks the row of the session it changes (SELECT ... FOR UPDATE),
so writers to different sessions run side by side and those to one session queue on
lock_timeout. Methods on a session take its owner and raise NotFound for a
session that is missing or someone else's; run writes (checkpoint_run, finish_run) take only
the run id, which the server made and never shows a browser.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Engine, delete, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from playground.errors import InvalidInput, NotFound, StoreUnavailable
from playground.lanes import LANES

from . import postgres, sqlite
from .checks import (
    DEFAULT_TITLE,
    check_cell_fields,
    check_execution,
    check_finish,
    check_owner,
    check_page,
    check_record,
    check_title,
    copy_title,
    finish_note,
    run_progress,
)
from .db import WRITE, is_postgres
from .models import utcnow
from .queries import (
    cells_t,
    copy_session,
    insert_sessions,
    list_query,
    load_cell,
    load_full,
    lock_session_of_run,
    new_execution,
    new_id,
    owned_cell,
    owned_session,
    runs_t,
    sessions_t,
    shared_source,
    touch_session,
)
from .records import CellFull, CellInfo, SessionFull, SessionInfo
from .shares import ShareMethods

log = logging.getLogger(__name__)


class SessionStore(ShareMethods):
    """The repository over one database; make it with open_store(), share it across threads.

    `replica` names the server process this store serves (see replicas.py): every run it starts
    is marked as that replica's, so that if the replica dies, a live one can tell its runs apart."""

    def __init__(self, engine: Engine, replica: str | None = None):
        self.engine = engine
        self.replica = replica
        self.postgres = is_postgres(engine)
        reads = engine.execution_options(isolation_level=postgres.READ_ISOLATION) if self.postgres else engine
        self._reader = sessionmaker(reads)
        # info[WRITE] tells queries.owned_session/owned_cell to lock the session row they find.
        self._writer = sessionmaker(engine.execution_options(**{WRITE: True}), info={WRITE: True})

        # Told of runs and store errors as they happen (the server's metrics, web/metrics.py): an
        # object with runs_started, run_progress, run_finished and store_error, or None.
        self.listener = None

    @contextmanager
    def _read(self) -> Iterator[Session]:
        try:
            with self._reader.begin() as s:
                yield s
        except StoreUnavailable as exc:
            self._tell("store_error", type(exc).__name__)
            raise

    @contextmanager
    def _write(self) -> Iterator[Session]:
        try:
            with self._writer.begin() as s:
                yield s
        except StoreUnavailable as exc:
            self._tell("store_error", type(exc).__name__)
            raise

    def _tell(self, event: str, *args) -> None:
        """Report to the listener after the fact; a listener's failure never fails the store's call."""
        if self.listener is not None:
            try:
                getattr(self.listener, event)(*args)
            except Exception:  # noqa: BLE001 - metrics must never cost a visitor their run
                log.exception("store listener failed on %s", event)

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
        """The owner's sessions, most recently updated first; `query` matches the title or any cell's
        prompt, case-insensitively (ASCII letters only on SQLite, as its LIKE does; all on PostgreSQL)."""
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
        stmt = list_query(owner, query.strip(), self.postgres)
        with self._read() as s:
            return [SessionInfo(*r) for r in s.execute(stmt.limit(limit).offset(offset))]

    def get_session(self, owner: str, session_id: str) -> SessionFull:
        with self._read() as s:
            return load_full(s, owned_session(s, owner, session_id))

    def get_cell_full(self, owner: str, cell_id: str) -> CellFull:
        """One cell with every execution (its conversation's turns); NotFound as get_cell."""
        with self._read() as s:
            return load_cell(s, owned_cell(s, owner, cell_id))

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

    def get_cell(self, owner: str, cell_id: str) -> CellInfo:
        """One cell's fields (no runs): NotFound when it is missing or someone else's."""
        with self._read() as s:
            return owned_cell(s, owner, cell_id)

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
    def start_execution(self, owner: str, cell_id: str, lanes: dict[str, dict], record: dict,
                        parent: int | None = None, prompt: str | None = None) -> dict[str, str]:
        """A new execution of the cell (number = last + 1; earlier ones stay as versions): one
        "running" row per lane, each record `record` with "settings" set to that lane's. `parent`
        (an execution of this cell) makes it the next turn of that one's conversation; `prompt` is
        what the user asked at this turn."""
        check_execution(lanes, record, parent, prompt)
        with self._write() as s:
            cell = owned_cell(s, owner, cell_id)
            if cell.kind != "prompt":
                raise InvalidInput("A note cell does not run: change its kind to prompt first.")
            now = utcnow()
            run_ids = new_execution(s, cell, lanes, record, parent, prompt, now, self.replica)
            touch_session(s, cell.session_id, now)
        self._tell("runs_started", run_ids, record)
        return run_ids

    def checkpoint_run(self, run_id: str, *, raw_text: str, reasoning_text: str, answer_text: str,
                       token_ids: Sequence[int], token_times: Sequence[float], token_kinds: str | Sequence[str],
                       forced: str | Sequence[bool]) -> bool:
        """Save what a running run produced so far (token_times: seconds since the run started).
        False when the run is no longer running (finished, or its cell deleted): nothing is written."""
        values = run_progress(raw_text, reasoning_text, answer_text, token_ids, token_times, token_kinds, forced)
        with self._write() as s:
            if self.postgres:
                # A checkpoint is best-effort (the next comes within a second), so it need not wait for its
                # WAL flush: the trade SQLite's synchronous=NORMAL makes. A crash of the database server can
                # lose the last ~0.6 s of checkpoints, never a finished run, and never corrupts anything.
                s.execute(text("SET LOCAL synchronous_commit TO OFF"))
            saved = s.execute(update(runs_t).where(runs_t.c.id == run_id, runs_t.c.status == "running")
                              .values(**values, updated_at=utcnow())).rowcount == 1
        if saved:
            self._tell("run_progress", run_id, values["generated_tokens"])
        return saved

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
            # The session row first, as every other write takes it: locking the run and then the
            # session would deadlock against a delete_session that holds the session and cascades.
            session_id = lock_session_of_run(s, run_id)
            done = s.execute(update(runs_t).where(runs_t.c.id == run_id, runs_t.c.status == "running").values(
                **values, status=status, prompt_tokens=prompt_tokens, metrics=metrics,
                **finish_note(finish_reason, error), finished_at=now, updated_at=now)).rowcount == 1
            if done:
                touch_session(s, session_id, now)
        if done:
            self._tell("run_finished", run_id, status, values["generated_tokens"], metrics)
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

    def mark_interrupted(self, replica: str | None = None) -> int:
        """Every run left "running" by a dead process becomes "interrupted", keeping the tokens of its
        last checkpoint; finished_at is that checkpoint's time. Returns how many. With no replica:
        every running run (one server per database, at its start-up); with one: that replica's
        runs only (a replica restarting under its name: they are its previous life's)."""
        stmt = update(runs_t).where(runs_t.c.status == "running")
        if replica is not None:
            stmt = stmt.where(runs_t.c.replica == replica)
        with self._write() as s:
            return s.execute(stmt.values(status="interrupted", finished_at=runs_t.c.updated_at)).rowcount

    def running_count(self, replica: str | None = None) -> int:
        """Runs now "running" (of one replica, when named): the rows in generation, for /metrics."""
        stmt = select(func.count()).select_from(runs_t).where(runs_t.c.status == "running")
        if replica is not None:
            stmt = stmt.where(runs_t.c.replica == replica)
        with self._read() as s:
            return s.execute(stmt).scalar_one()

    # --- health -----------------------------------------------------------------------------
    def integrity_ok(self) -> bool:
        return (postgres if self.postgres else sqlite).integrity_ok(self.engine)

    def pragmas(self) -> dict[str, str | int]:
        """SQLite's connection settings in force (journal_mode, foreign_keys, busy_timeout, synchronous)."""
        return sqlite.pragmas(self.engine)
