"""The operator's command line: `python -m playground sessions | export | report | import | backup |
restore | serve | grade | problems`.

It opens the database directly (PLAYGROUND_DB_URL, else PLAYGROUND_DB, else
<PLAYGROUND_HOME>/playground.db), so it is a
tool for whoever runs the server, not for visitors. Owners are browser secrets: listings show
them shortened. Exit status 0 on success, 1 on an expected failure (the message says why), 2 on
a usage error. `grade` and `problems` need no database: they grade one answer by hand and write
a generated problem set as a batch file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from playground.config import add_settings_arguments
from playground.errors import InvalidInput, PlaygroundError
from playground.sharing import (
    EXPORT_FORMATS,
    MAX_IMPORT_BYTES,
    ImportTooLarge,
    export_filename,
    parse_import,
    render_export,
    report_html,
)

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


def _session(args):
    with _open() as store:
        owner = args.owner or store.owner_of_session(args.session_id)
        return store.get_session(owner, args.session_id)


def _write(body: str, out_arg: str | None, filename: str) -> None:
    if out_arg is None:
        sys.stdout.write(body)
        return
    out = Path(out_arg)
    if out.is_dir():
        out = out / filename
    out.write_text(body, encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)


def cmd_export(args) -> int:
    body, _media, filename = render_export(_session(args), args.format)
    _write(body, args.out, filename)
    return 0


def cmd_report(args) -> int:
    session = _session(args)
    _write(report_html(session), args.out, export_filename(session.title, "html").replace(".html", "-report.html"))
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


GRADE_EXIT = {"pass": 0, "fail": 1, "error": 1, "ungraded": 1}
BAD_INPUT_EXIT = 2


def _grader_spec(args):
    """--grader KIND or a JSON spec, with --tolerance and --task folded in."""
    text = args.grader.strip()
    if text.startswith("{"):
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"--grader looks like JSON but is not ({exc.msg}): give a kind, or a JSON spec.") \
                from None
    else:
        spec = {"kind": text.lower()}
    if args.tolerance is not None:
        spec["tolerance"] = args.tolerance
    if args.task is not None:
        # A hand-typed gym check: the entry is the expected answer alone (enough for tasks whose
        # verifier compares answers; a suite file's row carries the whole entry in its grader).
        spec.update({"kind": "gym", "task": args.task,
                     "entry": {"question": "", "answer": args.expected, "metadata": {}}})
    return spec


def cmd_grade(args) -> int:
    from playground.evaluation.graders import check_grader, grade
    from playground.evaluation.sandbox import run_code_test

    answer = sys.stdin.read() if args.answer == "-" else args.answer
    try:
        spec = check_grader(_grader_spec(args), args.expected)
    except InvalidInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BAD_INPUT_EXIT
    g = grade(spec, args.expected, answer, run_code_test)
    shown = {k: v for k, v in spec.items() if k not in ("entry",)}
    print(f"grader:    {json.dumps(shown, ensure_ascii=False)}")
    print(f"expected:  {args.expected}")
    print(f"extracted: {g.extracted if g.extracted is not None else '(nothing)'}")
    print(f"detail:    {g.detail}")
    print(f"verdict:   {g.status}")
    return GRADE_EXIT[g.status]


def _settings(tasks: list[str], pairs: list[str]) -> list[tuple[str, dict]]:
    """--set KEY=VALUE (every task) or TASK.KEY=VALUE (one task); a value is JSON when it parses."""
    configs: dict[str, dict] = {t: {} for t in tasks}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--set {pair!r}: write KEY=VALUE or TASK.KEY=VALUE, e.g. max_terms=3.")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        task, dot, name = key.strip().rpartition(".")
        targets = [task] if dot else tasks
        if dot and task not in configs:
            raise InvalidInput(f"--set {pair!r}: {task} is not one of the tasks asked for ({', '.join(tasks)}).")
        for t in targets:
            configs[t][name] = value
    return list(configs.items())


def cmd_problems(args) -> int:
    from playground.evaluation import gym

    if args.list:
        for name, options in gym.list_tasks().items():
            print(f"gym:{name}  " + " ".join(f"{k}={json.dumps(v)}" for k, v in options.items()))
        return 0
    if not args.sources:
        raise InvalidInput("Name at least one generator, e.g. gym:basic_arithmetic (--list shows them all).")
    tasks = [gym.parse_source(s) for s in args.sources]
    rows = gym.generate_suite(_settings(tasks, args.set), args.count, args.seed)
    text = gym.suite_jsonl(rows)
    if args.out is None:
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {len(rows)} rows to {args.out}", file=sys.stderr)
    return 0


def _add_problem_commands(sub) -> None:
    p = sub.add_parser("grade", help="grade one answer by hand: prints what was read and the verdict "
                                     "(exit 0 pass, 1 fail, 2 bad input)")
    p.add_argument("--grader", required=True, help="a kind (exact, numeric, regex, choice, math, gym, python) "
                                                   "or a JSON grader spec")
    p.add_argument("--tolerance", type=float, help="numeric grader: the absolute tolerance")
    p.add_argument("--task", help="gym grader: the Reasoning Gym task whose verifier to use")
    p.add_argument("expected", help="the expected answer (a pattern for regex, a test for python)")
    p.add_argument("answer", help="the answer to grade ('-' reads it from standard input)")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("problems", help="write a generated problem set (Reasoning Gym) as a batch file")
    p.add_argument("sources", nargs="*", metavar="gym:TASK", help="one or more generators, e.g. gym:gsm_symbolic")
    p.add_argument("--count", type=int, default=20, help="entries per task (default 20)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same suite (default 0)")
    p.add_argument("--set", action="append", default=[], metavar="[TASK.]KEY=VALUE",
                   help="a difficulty setting, e.g. max_terms=3 or basic_arithmetic.max_digits=2 (repeatable)")
    p.add_argument("--out", help="the .jsonl file to write (default: standard output)")
    p.add_argument("--list", action="store_true", help="list the tasks and their settings")
    p.set_defaults(func=cmd_problems)


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

    p = sub.add_parser("report", help="write a session's verdict, charts and graded cells as one self-contained HTML")
    p.add_argument("session_id")
    p.add_argument("--owner", help="check that the session belongs to this owner id")
    p.add_argument("--out", help="file or folder to write (default: standard output)")
    p.set_defaults(func=cmd_report)

    _add_problem_commands(sub)

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
