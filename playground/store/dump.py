"""Backups: a consistent copy of every session, and restoring one into an empty database.

Two forms. SQLite's own (`backup_file`): the online backup API copies the live file page by page
under one read snapshot, a database as of one moment that restores by copying it back (server
stopped). And a JSON Lines dump (`write_dump`) for either engine, PostgreSQL's backup here: one
header line, then every row of every session table (sessions, cells, runs, shares; parents
first), read in ONE transaction (a snapshot on both engines), so the dump is a moment, not a
smear of one. Rows keep their ids, owners and share tokens; token arrays travel as base64 of
their packed bytes, datetimes as ISO 8601 UTC. `load_dump` writes them into an empty database of
either engine (SQLite to PostgreSQL is a dump and a load). `pg_dump` remains the operator's tool
for the whole PostgreSQL database (roles, other tables, point-in-time recovery with WAL archiving).

A dump holds owner identities, which are browser secrets: keep backups as private as the database.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, LargeBinary, func, insert, select

from playground.errors import InvalidInput

from . import sqlite
from .db import current_revision, head_revision, is_postgres
from .models import CellRow, RunRow, SessionRow, ShareRow, UTCDateTime

DUMP_FORMAT = "reasoning-playground/backup"
DUMP_VERSION = 1
TABLES = tuple(row.__table__ for row in (SessionRow, CellRow, RunRow, ShareRow))  # parents before children
ROWS_PER_BATCH = 500  # rows read per fetch and written per executemany: memory stays flat for any size


def _tmp(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def backup_file(engine: Engine, out: Path) -> None:
    """SQLite only: the live database copied to `out` with the online backup API, then checked."""
    if is_postgres(engine):
        raise InvalidInput("A file copy is SQLite's backup: for PostgreSQL write a dump (.jsonl), or use pg_dump.")
    tmp = _tmp(out)
    tmp.unlink(missing_ok=True)
    sqlite.backup(engine, tmp)
    copy = sqlite.connect(tmp)
    try:
        if not sqlite.integrity_ok(copy):
            raise InvalidInput(f"The copy at {tmp} failed SQLite's integrity check: the source may be damaged.")
    finally:
        copy.dispose()
    os.replace(tmp, out)  # readers of `out` see the old backup or the whole new one, never half


def _encode(table, row) -> dict:
    out = {}
    for col, value in zip(table.c, row, strict=True):
        if value is not None and isinstance(col.type, LargeBinary):
            value = base64.b64encode(value).decode()
        elif isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat()
        out[col.name] = value
    return out


def _decode(table, values: dict) -> dict:
    unknown = set(values) - set(table.c.keys())
    if unknown:
        raise InvalidInput(f"The dump's {table.name} rows have columns this version lacks: {sorted(unknown)}.")
    out = {}
    for name, value in values.items():
        col = table.c[name]
        if value is not None and isinstance(col.type, LargeBinary):
            value = base64.b64decode(value)
        elif value is not None and isinstance(col.type, UTCDateTime):
            value = datetime.fromisoformat(value)
        out[name] = value
    return out


def dump_lines(engine: Engine) -> Iterator[str]:
    """The dump, one JSON text per line: the header, then every row, all read in one transaction."""
    with engine.connect() as conn, conn.begin():
        if is_postgres(engine):
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        counts = {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in TABLES}
        yield json.dumps({"format": DUMP_FORMAT, "version": DUMP_VERSION, "revision": current_revision(engine),
                          "dumped_at": datetime.now(UTC).isoformat(), "rows": counts})
        for table in TABLES:
            result = conn.execution_options(yield_per=ROWS_PER_BATCH).execute(select(table))
            for row in result:
                yield json.dumps({"table": table.name, "row": _encode(table, row)}, ensure_ascii=False)


def _open(path: Path, mode: str, gz: bool):
    return gzip.open(path, mode + "t", encoding="utf-8") if gz else open(path, mode, encoding="utf-8")


def write_dump(engine: Engine, out: Path) -> dict[str, int]:
    """The dump written to `out` (gzip when it ends in .gz), atomically; returns rows per table."""
    tmp = _tmp(out)
    lines = dump_lines(engine)
    header = next(lines)
    with _open(tmp, "w", out.suffix == ".gz") as f:
        f.write(header + "\n")
        for line in lines:
            f.write(line + "\n")
    os.replace(tmp, out)
    return json.loads(header)["rows"]


def read_dump(path: Path) -> Iterator[str]:
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"  # gzip's magic: what the file is, whatever its name
    with _open(path, "r", gz) as f:
        yield from f


def load_dump(engine: Engine, lines: Iterable[str]) -> dict[str, int]:
    """Write a dump's rows into `engine`'s database, which must hold no session yet, in one transaction
    (a bad line leaves it empty). Returns rows written per table."""
    lines = iter(lines)
    header = _header(next(lines, ""))
    tables = {t.name: t for t in TABLES}
    written = dict.fromkeys(tables, 0)
    with engine.execution_options(**{sqlite.WRITE: True}).begin() as conn:
        if conn.execute(select(func.count()).select_from(tables["sessions"])).scalar_one():
            raise InvalidInput("The database already holds sessions: restore into an empty one (a new "
                               "PLAYGROUND_DB file or PLAYGROUND_DB_URL database), then point the server at it.")
        batch, table = [], None
        for number, line in enumerate(lines, start=2):
            item = _item(line, number, tables)
            if item is None:
                continue
            if table is not None and item[0] is not table and batch:
                conn.execute(insert(table), batch)
                batch = []
            table = item[0]
            batch.append(_decode(table, item[1]))
            written[table.name] += 1
            if len(batch) >= ROWS_PER_BATCH:
                conn.execute(insert(table), batch)
                batch = []
        if batch:
            conn.execute(insert(table), batch)
        if written != header["rows"]:  # raised inside the transaction: nothing of it stays
            raise InvalidInput(f"The dump is incomplete: its header promised {header['rows']} rows, it held "
                               f"{written}: the file was cut short.")
    return written


def _header(line: str) -> dict:
    try:
        header = json.loads(line)
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != DUMP_FORMAT:
        raise InvalidInput("This is not a playground backup (a .jsonl dump from `python -m playground backup`).")
    if header.get("version") != DUMP_VERSION or header.get("revision") != head_revision():
        raise InvalidInput(f"This dump is version {header.get('version')} of schema {header.get('revision')}; this "
                           f"playground reads version {DUMP_VERSION} of schema {head_revision()}: restore it with "
                           "the version that made it, then back up again after upgrading.")
    return header


def _item(line: str, number: int, tables: dict):
    if not line.strip():
        return None
    try:
        item = json.loads(line)
        return tables[item["table"]], dict(item["row"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise InvalidInput(f"Line {number} of the dump is not a row of a known table: the file is damaged.") from None


SQLITE_MAGIC = b"SQLite format 3\x00"
BACKUP_FORMATS = ("db", "jsonl")


def backup(store, out: Path, fmt: str | None = None) -> tuple[Path, dict[str, int] | None]:
    """`python -m playground backup OUT`: a SQLite file copy ("db", SQLite's default) or a dump ("jsonl",
    PostgreSQL's). OUT may be a folder: the file is named by the time. Returns (path, rows or None)."""
    fmt = fmt or ("jsonl" if store.postgres else "db")
    if fmt not in BACKUP_FORMATS:
        raise InvalidInput(f"format={fmt!r}: back up as one of {', '.join(BACKUP_FORMATS)}.")
    out = Path(out).expanduser()
    if out.is_dir():
        out = out / f"playground-{datetime.now(UTC):%Y%m%d-%H%M%S}.{fmt}"
    if not out.parent.is_dir():
        raise InvalidInput(f"The folder {out.parent} does not exist: create it, or name another place.")
    if fmt == "db":
        backup_file(store.engine, out)
        return out, None
    return out, write_dump(store.engine, out)


def restore(store, source: Path) -> dict[str, int]:
    """`python -m playground restore SOURCE`: every session of a dump, or of a SQLite backup file (a
    copy of it is brought to this schema first; the file itself is never changed), into this
    store's empty database, ids, owners and share tokens kept."""
    import shutil
    import tempfile

    from .db import migrate

    source = Path(source).expanduser()
    if not source.is_file():
        raise InvalidInput(f"{source} is not a file: name a backup made by `python -m playground backup`.")
    with open(source, "rb") as f:
        is_sqlite = f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    if not is_sqlite:
        return load_dump(store.engine, read_dump(source))
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "source.db"
        shutil.copyfile(source, copy)
        engine = sqlite.connect(copy)
        try:
            migrate(engine)
            return load_dump(store.engine, dump_lines(engine))
        finally:
            engine.dispose()
