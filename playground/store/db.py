"""Which database, its engine, and the Alembic migrations, configured in code.

Two engines run the same schema and the same repository code: SQLite (the embedded default, a
file: PLAYGROUND_DB, else <PLAYGROUND_HOME>/playground.db) and PostgreSQL (PLAYGROUND_DB_URL,
`postgresql+psycopg://user:pass@host:5432/db`, for several replicas on one database). Each
engine's room (sqlite.py, postgres.py) maps its own faults to the same named errors.
`migrate(engine)` brings the schema to a revision (head by default) inside one transaction, so a
failed upgrade leaves the database as it was. No alembic.ini is needed: the script folder is
found next to this file.
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from playground.config import DB_FILENAME, default_home

from . import postgres, sqlite
from .sqlite import WRITE

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DB_URL_ENV = "PLAYGROUND_DB_URL"
SQLITE_URL_PREFIX = "sqlite:///"


def default_db_path() -> Path:
    """PLAYGROUND_DB, else <PLAYGROUND_HOME>/playground.db (home: see config.default_home)."""
    if os.environ.get("PLAYGROUND_DB"):
        return Path(os.environ["PLAYGROUND_DB"]).expanduser()
    return default_home() / DB_FILENAME


def default_target() -> str | Path:
    """PLAYGROUND_DB_URL when set (a PostgreSQL URL, or sqlite:///path), else the SQLite file."""
    url = os.environ.get(DB_URL_ENV, "").strip()
    return resolve_target(url) if url else default_db_path()


def resolve_target(target: str | Path) -> str | Path:
    """A PostgreSQL URL stays a (normalized) URL; sqlite:///path and plain paths become a Path."""
    if isinstance(target, str) and postgres.is_postgres_url(target):
        return postgres.normalize_url(target)
    if isinstance(target, str) and target.startswith(SQLITE_URL_PREFIX):
        return Path(target.removeprefix(SQLITE_URL_PREFIX)).expanduser()
    return Path(target).expanduser()


def describe(target: str | Path) -> str:
    """What logs and messages call the database: a file path, or the URL with its password masked."""
    return postgres.safe_url(target) if isinstance(target, str) else str(target)


def connect(target: str | Path) -> Engine:
    target = resolve_target(target)
    return postgres.connect(target) if isinstance(target, str) else sqlite.connect(target)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        # configparser would read a % in a password as interpolation.
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to `revision`, all steps in one write transaction (PostgreSQL's DDL is
    transactional too); on PostgreSQL one replica at a time."""
    cfg = alembic_config(engine)
    with engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
        if is_postgres(engine):
            postgres.lock_for_migration(conn)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def migrate_file(target: str | Path, revision: str = "head") -> None:
    """migrate() for a file path or URL, for tools and tests that never hold an engine."""
    engine = connect(target)
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
