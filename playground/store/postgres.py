"""The PostgreSQL engine (psycopg 3): the store's engine when several replicas share one database.

`connect(url)` returns an Engine that waits at most BUSY_TIMEOUT_S for a row lock (PostgreSQL's
lock_timeout, the counterpart of SQLite's busy timeout), checks pooled connections before use (a
restarted server leaves dead ones behind), and turns the server's faults into the store's named
errors, each saying what to do: StoreBusy (a lock held too long, a deadlock, no connection slot
left), StoreFull (the disk under the data directory), StoreUnavailable (the server unreachable,
shutting down, or read-only). Text PostgreSQL cannot hold is InvalidInput.
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy import event as sa_event
from sqlalchemy.engine import make_url

from playground.errors import InvalidInput, StoreBusy, StoreFull, StoreUnavailable

from . import codec
from .sqlite import BUSY_TIMEOUT_S

DRIVER = "postgresql+psycopg"
# Reads run in REPEATABLE READ: opening a session reads cells and runs in two statements, and both
# must see one moment (SQLite's read transactions are snapshots too). Read-only snapshots never
# fail with a serialization error; writes stay READ COMMITTED and lock the session row they change.
READ_ISOLATION = "REPEATABLE READ"
# Any transaction left open this long by a stuck client is ended by the server, releasing its locks.
IDLE_IN_TRANSACTION_S = 60
CONNECT_TIMEOUT_S = 10

# SQLSTATE classes and codes (PostgreSQL's appendix A) and what they mean to a visitor.
FULL = {"53100"}  # disk_full
BUSY = {"55P03", "40P01", "40001", "53300", "53200", "57014"}  # lock timeout, deadlock, serialization,
# too many connections, out of memory, statement cancelled
GONE = {"57P01", "57P02", "57P03", "25006"}  # admin/crash shutdown, cannot connect now, read-only
BAD_TEXT = {"22021", "22P05", "22001"}  # bad encoding, NUL in text, value too long


def is_postgres_url(target) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql:", "postgresql+", "postgres:"))


def normalize_url(url: str) -> str:
    """postgres:// and postgresql:// (what hosting providers print) use psycopg 3, the pinned driver."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.get_backend_name() != "postgresql":
        raise InvalidInput(f"{safe_url(url)} is not a PostgreSQL URL: use postgresql+psycopg://user:pass@host/db.")
    if parsed.drivername != DRIVER:
        parsed = parsed.set(drivername=DRIVER)
    return parsed.render_as_string(hide_password=False)


def safe_url(url) -> str:
    """The URL with its password masked: what logs and messages show."""
    try:
        return make_url(str(url)).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as such, never echoed (it may hold a secret)
        return "<unparsable database URL>"


def connect(url: str) -> Engine:
    url = normalize_url(url)
    options = (f"-c lock_timeout={int(BUSY_TIMEOUT_S * 1000)} "
               f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_S * 1000}")
    engine = create_engine(url, connect_args={"options": options, "connect_timeout": CONNECT_TIMEOUT_S},
                           pool_pre_ping=True, json_serializer=codec.dumps, json_deserializer=codec.loads)
    sa_event.listen(engine, "handle_error", _explain_error(safe_url(url)))
    return engine


def _explain_error(where: str):
    """A handle_error hook: the server's SQLSTATE picks the named error; the transaction was rolled
    back whole, so what was saved before is intact and this write did not happen."""

    def hook(context) -> None:
        orig = context.original_exception
        state = getattr(orig, "sqlstate", None)
        if state in FULL:
            raise StoreFull(f"The disk under the PostgreSQL data directory of {where} is full, so this change was "
                            "not saved (what was saved before is intact). Free space on the database server, then "
                            "try again.") from orig
        if state in BUSY:
            raise StoreBusy(f"PostgreSQL at {where} was too busy for this change ({_first_line(orig)}), so it was "
                            f"not saved. Try again; if it keeps happening, look for a session holding locks for "
                            f"more than {BUSY_TIMEOUT_S:g} s (pg_stat_activity) or raise max_connections.") from orig
        if state in BAD_TEXT:
            raise InvalidInput(f"PostgreSQL cannot store this text ({_first_line(orig)}): remove NUL characters "
                               "and invalid characters, or shorten it.") from orig
        if state in GONE or (state is None and _is_connection_error(orig)) or (state or "").startswith("08"):
            raise StoreUnavailable(f"Cannot use the database at {where} ({_first_line(orig)}). Check that "
                                   "PostgreSQL is running and reachable, and that PLAYGROUND_DB_URL names it (host, "
                                   "port, database, user, password).") from orig

    return hook


def _is_connection_error(exc) -> bool:
    import psycopg

    return isinstance(exc, psycopg.OperationalError)


def _first_line(exc) -> str:
    return (str(exc).strip().splitlines() or ["no message"])[0]


def integrity_ok(engine: Engine) -> bool:
    """PostgreSQL checks foreign keys and types itself; a failed page checksum surfaces as an error on
    read. What is left to check here is that the server answers and every cell's session exists."""
    with engine.connect() as conn:
        orphans = conn.exec_driver_sql(
            "SELECT count(*) FROM cells c LEFT JOIN sessions s ON s.id = c.session_id WHERE s.id IS NULL").scalar()
    return orphans == 0


MIGRATION_LOCK = 7_860_019  # any constant: the advisory lock every replica takes before migrating


def lock_for_migration(conn) -> None:
    """Replicas starting together would each try to create the schema: the first to take this
    transaction-scoped lock migrates, the others wait and then find nothing left to do."""
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
