"""The SQLite engine (WAL, foreign keys, busy timeout): the store's embedded default.

`connect(path)` returns an Engine whose every connection has the pragmas set, and whose two
faults a user can act on (the file locked by another program past the busy timeout, a full
disk) come out as StoreBusy / StoreFull with a message that says what to do.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine, create_engine, event

from playground.errors import StoreBusy, StoreFull

from . import codec

# How long a writer waits for another connection's write lock before "database is locked".
BUSY_TIMEOUT_S = 5.0
# Execution option that makes a transaction start with BEGIN IMMEDIATE (see _begin).
WRITE = "playground_write"


def connect(path: str | Path) -> Engine:
    """An engine on the SQLite file at `path` (parent folders created), pragmas set per connection."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        f"sqlite:///{path}",
        # gradio calls the store from worker threads; each call checks a connection out of the
        # pool for its own short session, so no connection is ever used by two threads at once.
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_S},
        json_serializer=codec.dumps,
        json_deserializer=codec.loads,
    )
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _begin)
    event.listen(engine, "handle_error", _explain_error(path))
    return engine


def _explain_error(path: Path):
    """A handle_error hook: SQLite's terse "database is locked" / "database or disk is full" become
    errors that name the file and the fix. Either way SQLite rolled the transaction back whole: the
    file holds what the last successful write left, and the caller knows this write did not happen."""

    def hook(context) -> None:
        orig = context.original_exception
        if not isinstance(orig, sqlite3.OperationalError):
            return
        text = str(orig).lower()
        if "database or disk is full" in text:
            raise StoreFull(f"The disk holding the database {path} is full, so this change was not saved (what was "
                            "saved before is intact). Free some space on that disk, or set PLAYGROUND_DB to a file "
                            "on a bigger one, then try again.") from orig
        if "database is locked" in text or "database table is locked" in text:
            raise StoreBusy(f"The database {path} stayed locked by another connection for more than "
                            f"{BUSY_TIMEOUT_S:g} s, so this change was not saved. Try again; if it keeps happening, "
                            "look for another program holding the file (a second server on the same PLAYGROUND_DB, "
                            "a backup tool, an open sqlite3 shell).") from orig

    return hook


def _on_connect(dbapi_connection, _record) -> None:
    # Take BEGIN away from the sqlite3 module (it skips it before SELECT and DDL): _begin emits it,
    # so reads are repeatable and migrations are transactional.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, nor it them
    cur.execute("PRAGMA foreign_keys=ON")  # off by default in SQLite: ON DELETE CASCADE needs it
    cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    # In WAL mode NORMAL survives a process crash (only power loss may drop the last commits)
    # and saves an fsync per commit, which is what makes a checkpoint a few milliseconds.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _begin(conn) -> None:
    # A write transaction takes the write lock up front: a deferred one that reads first and then
    # writes can fail at once with SQLITE_BUSY, because busy_timeout cannot wait out a lock upgrade.
    immediate = conn.get_execution_options().get(WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def integrity_ok(engine: Engine) -> bool:
    with engine.connect() as conn:
        return conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


def pragmas(engine: Engine) -> dict[str, str | int]:
    """The connection settings in force (journal_mode, foreign_keys, busy_timeout, synchronous)."""
    with engine.connect() as conn:
        return {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")}


def backup(engine: Engine, out: Path) -> None:
    """A consistent copy of the live file at `out`, taken with SQLite's online backup API: pages
    are copied under a read snapshot, so writers elsewhere never see a lock for long and the copy
    is a database as of one moment (WAL content included)."""
    with engine.connect() as conn:
        source = conn.connection.driver_connection
        target = sqlite3.connect(out)
        try:
            source.backup(target)
        finally:
            target.close()
