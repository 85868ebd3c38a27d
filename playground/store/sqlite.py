"""The SQLite engine (WAL, foreign keys, busy timeout) and Alembic migrations, configured in code.

`connect(path)` returns an Engine whose every connection has the pragmas set, and whose two
faults a user can act on (the file locked by another program past the busy timeout, a full
disk) come out as StoreBusy / StoreFull with a message that says what to do; `migrate(engine)`
brings the schema to a revision (head by default) inside one transaction, so a failed upgrade
leaves the file as it was. No alembic.ini is needed: the script folder is found next to this file.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event

from playground.config import DB_FILENAME, default_home
from playground.errors import StoreBusy, StoreFull

from . import codec

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# How long a writer waits for another connection's write lock before "database is locked".
BUSY_TIMEOUT_S = 5.0
# Execution option that makes a transaction start with BEGIN IMMEDIATE (see _begin).
WRITE = "playground_write"


def default_db_path() -> Path:
    """PLAYGROUND_DB, else <PLAYGROUND_HOME>/playground.db (home: see config.default_home)."""
    if os.environ.get("PLAYGROUND_DB"):
        return Path(os.environ["PLAYGROUND_DB"]).expanduser()
    return default_home() / DB_FILENAME


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


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to `revision`, all steps in one write transaction."""
    cfg = alembic_config(engine)
    with engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def migrate_file(path: str | Path, revision: str = "head") -> None:
    """migrate() for a file path, for tools and tests that never hold an engine."""
    engine = connect(path)
    try:
        migrate(engine, revision)
    finally:
        engine.dispose()


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema_drift(engine: Engine) -> list[str]:
    """Differences between the migrated schema and models.py (empty when they agree)."""
    from alembic.autogenerate import compare_metadata

    from .models import Base

    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    return [repr(d) for d in diffs]
