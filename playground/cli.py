"""The operator's command line: `python -m playground sessions | export | import | backup | restore | serve`.

It opens the database directly (PLAYGROUND_DB_URL, else PLAYGROUND_DB, else
<PLAYGROUND_HOME>/playground.db), so it is a
tool for whoever runs the server, not for visitors. Owners are browser secrets: listings show
them shortened. Exit status 0 on success, 1 on an expected failure (the message says why), 2 on
a usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playground.config import add_settings_arguments
from playground.errors import PlaygroundError
from playground.sharing import EXPORT_FORMATS, MAX_IMPORT_BYTES, ImportTooLarge, parse_import, render_export

OWNER_SHOWN_CHARS = 8  # enough to tell owners apart in a listing, too little to act as one


def short_owner(owner: str) -> str:
    return owner if len(owner) <= OWNER_SHOWN_CHARS else owner[:OWNER_SHOWN_CHARS] + "…"


def _open():
    from playground.store import open_store

    return open_store()  # PLAYGROUND_DB_URL, else the SQLite file


def cmd_sessions(args) -> int:
    with _open() as store:
        if args.owner:
            rows = store.list_sessions(args.owner, args.query, limit=args.limit)
        else:
            rows = store.list_all_sessions(args.query, limit=args.limit)
    for s in rows:
        print(f"{s.id}  {s.updated_at:%Y-%m-%d %H:%M}  {short_owner(s.owner):<9}  {s.title}")
    if not rows:
        print("no sessions", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    with _open() as store:
        owner = args.owner or store.owner_of_session(args.session_id)
        session = store.get_session(owner, args.session_id)
    body, _media, filename = render_export(session, args.format)
    if args.out is None:
        sys.stdout.write(body)
    else:
        out = Path(args.out)
        if out.is_dir():
            out = out / filename
        out.write_text(body, encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_import(args) -> int:
    path = Path(args.file)
    # Refuse an oversized file before reading it into memory.
    if path.is_file() and path.stat().st_size > MAX_IMPORT_BYTES:
        raise ImportTooLarge(f"{path} has {path.stat().st_size:,} bytes, over the limit of {MAX_IMPORT_BYTES:,} "
                             "(MAX_IMPORT_BYTES).")
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 1
    session = parse_import(data)
    with _open() as store:
        info = store.import_sessions(args.owner, [session])[0]
    print(info.id)
    return 0


def cmd_backup(args) -> int:
    """A consistent copy of the database: SQLite's online backup (a .db file), or a JSON Lines dump of
    every session (PostgreSQL's; `pg_dump` copies the whole server)."""
    from playground.store.dump import backup

    with _open() as store:
        out, rows = backup(store, Path(args.out), args.format)
    what = ", ".join(f"{n:,} {table}" for table, n in rows.items()) if rows else "a SQLite copy, integrity checked"
    print(f"wrote {out} ({what})", file=sys.stderr)
    return 0


def cmd_restore(args) -> int:
    from playground.store.dump import restore

    with _open() as store:
        rows = restore(store, Path(args.source))
    print("restored " + ", ".join(f"{n:,} {table}" for table, n in rows.items()), file=sys.stderr)
    return 0


def cmd_serve(args) -> int:
    from playground.config import apply_to_environ, settings_from_args

    settings = settings_from_args(args)  # flags over PLAYGROUND_*; a bad value exits with one line
    apply_to_environ(settings)
    from playground.web.server import serve

    serve(settings)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m playground", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sessions", help="list sessions (every owner's, or one owner's), most recent first")
    p.add_argument("--owner", help="only this owner id (from the pg_owner cookie, before the dot)")
    p.add_argument("--query", default="", help="match titles and prompts")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_sessions)

    p = sub.add_parser("export", help="write a session as JSON, Markdown or self-contained HTML")
    p.add_argument("session_id")
    p.add_argument("--owner", help="check that the session belongs to this owner id")
    p.add_argument("--format", choices=sorted(EXPORT_FORMATS), default="json")
    p.add_argument("--out", help="file or folder to write (default: standard output)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="add a JSON export as a new session of OWNER; prints its id")
    p.add_argument("file")
    p.add_argument("--owner", required=True)
    p.set_defaults(func=cmd_import)

    add_backup_commands(sub)

    p = sub.add_parser("serve", help="serve the playground (as `python app.py`)")
    add_settings_arguments(p)
    p.set_defaults(func=cmd_serve)
    return parser


def add_backup_commands(sub) -> None:
    p = sub.add_parser("backup", help="write a consistent backup of the database to OUT (a file or folder)")
    p.add_argument("out")
    p.add_argument("--format", choices=("db", "jsonl"),
                   help="db: SQLite's online backup, a file copy (the default on SQLite); jsonl: a dump of every "
                        "session, restorable into either engine (the default on PostgreSQL)")
    p.set_defaults(func=cmd_backup)
    p = sub.add_parser("restore", help="load a backup (a .jsonl dump or a SQLite .db copy) into an EMPTY database")
    p.add_argument("source")
    p.set_defaults(func=cmd_restore)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PlaygroundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
