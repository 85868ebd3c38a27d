"""open_store: the one way into the store, migrated to head, with every failure to open said plainly."""

from __future__ import annotations

from pathlib import Path

from alembic.util import CommandError
from sqlalchemy.exc import DBAPIError

from playground.errors import StoreUnavailable

from .db import connect, default_target, describe, migrate, resolve_target
from .store import SessionStore


def open_store(target: str | Path | None = None, replica: str | None = None) -> SessionStore:
    """Open the database `target` (a SQLite file path, or a PostgreSQL URL; default: PLAYGROUND_DB_URL,
    else the SQLite file of default_db_path()), creating and migrating it to head. `replica` names
    this server process when several share the database (see replicas.py)."""
    target = resolve_target(target) if target is not None else default_target()
    where, setting = describe(target), "PLAYGROUND_DB_URL" if isinstance(target, str) else "PLAYGROUND_DB"
    try:
        engine = connect(target)
    except OSError as exc:
        raise StoreUnavailable(f"Cannot create the database folder {Path(target).parent}: {exc}. Set PLAYGROUND_DB "
                               "(or PLAYGROUND_HOME) to a writable place.") from exc
    try:
        migrate(engine)
    except StoreUnavailable:  # the engine's own hook already said what is wrong and what to do
        engine.dispose()
        raise
    except DBAPIError as exc:
        engine.dispose()
        fix = ("If the file is damaged, move it aside (a new one is made); else set PLAYGROUND_DB to a writable file."
               if setting == "PLAYGROUND_DB" else
               "Check that the user in PLAYGROUND_DB_URL may create tables in that database.")
        raise StoreUnavailable(f"Cannot open the database {where}: {exc.orig}. {fix}") from exc
    except CommandError as exc:  # e.g. a revision this checkout does not have
        engine.dispose()
        raise StoreUnavailable(f"The database {where} has a schema this version cannot read ({exc}): it was made "
                               f"by a newer playground. Upgrade, or set {setting} to another database.") from exc
    except BaseException:
        engine.dispose()
        raise
    return SessionStore(engine, replica)
