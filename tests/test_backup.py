"""Backups and restores through the real command line, on both engines: `python -m playground backup OUT`
then `restore` into a fresh database (of either engine) gives back every session, owner and share."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from playground.errors import InvalidInput
from playground.store import open_store
from playground.store.dump import load_dump, read_dump

ROOT = Path(__file__).resolve().parent.parent
LANES = {"standard": {"seed": 1}, "reasoning": {"seed": 2}}


def cli(target, *args: str) -> subprocess.CompletedProcess:
    """The real CLI with the database chosen as an operator would: PLAYGROUND_DB or PLAYGROUND_DB_URL."""
    env = {k: v for k, v in os.environ.items() if k not in ("PLAYGROUND_DB", "PLAYGROUND_DB_URL")}
    env["PLAYGROUND_DB_URL" if isinstance(target, str) else "PLAYGROUND_DB"] = str(target)
    return subprocess.run([sys.executable, "-m", "playground", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)


def populate(store) -> dict[str, list[str]]:
    """Two owners' sessions with cells, finished and running runs, a grade, a live and a revoked share."""
    made: dict[str, list[str]] = {}
    for owner in ("ann", "bob"):
        for i in range(2):
            sid = store.create_session(owner, f"{owner} {i} ☃").id
            made.setdefault(owner, []).append(sid)
            for j in range(3):
                cid = store.add_cell(owner, sid, prompt=f"q{j}", expected="4", grader={"kind": "numeric"}).id
                runs = store.start_execution(owner, cid, LANES, {"model_id": "m"})
                n = 5 + j
                done = dict(raw_text="<think>a</think>b", reasoning_text="a", answer_text="b",
                            token_ids=list(range(n)), token_times=[0.1 * k + 1e-9 for k in range(n)],
                            token_kinds="r" * (n - 1) + "a", forced="0" * n)
                store.finish_run(runs["standard"], status="done", **done, prompt_tokens=3, metrics={"ttft_s": 0.1},
                                 finish_reason="stop", error=None)
                store.set_grade(runs["standard"], {"status": "pass", "key": "k"})
                if j == 2:
                    store.checkpoint_run(runs["reasoning"], **done)  # still running when backed up
            store.add_cell(owner, sid, kind="note", note="a note")
    store.create_share("ann", made["ann"][0], "a" * 43)
    store.create_share("ann", made["ann"][1], "b" * 43)
    store.revoke_share("ann", "b" * 43)
    return made


def snapshot(store, made) -> dict:
    return {owner: [store.get_session(owner, sid) for sid in sids] for owner, sids in made.items()} | {
        "shares": [store.list_shares("ann", sid) for sid in made["ann"]]}


@pytest.fixture
def fresh_target(request, tmp_path):
    """A second, empty database: `sqlite` or `postgres` (chosen by the test's parameter)."""
    if request.param == "sqlite":
        return tmp_path / "restored" / "playground.db"
    return request.getfixturevalue("postgres_cluster").fresh_database(f"r_{uuid.uuid4().hex[:12]}")


@pytest.mark.parametrize("fresh_target", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_backup_then_restore_gives_back_every_session(db_target, fresh_target, tmp_path):
    with open_store(db_target) as store:
        made = populate(store)
        before = snapshot(store, made)
    done = cli(db_target, "backup", str(tmp_path))
    assert done.returncode == 0, done.stderr
    [backup] = [p for p in tmp_path.iterdir() if p.name.startswith("playground-")]
    # SQLite's default is a file copy; PostgreSQL's a JSON Lines dump of every row.
    assert backup.suffix == (".db" if isinstance(db_target, Path) else ".jsonl")
    assert "wrote" in done.stderr
    restored = cli(fresh_target, "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert "restored 4 sessions, 16 cells, 24 runs, 2 shares" in restored.stderr
    with open_store(fresh_target) as again:
        assert snapshot(again, made) == before  # ids, owners, timestamps, every token and timing
        assert again.shared_session("a" * 43).title == "ann 0 ☃"
        with pytest.raises(Exception, match="revoked"):
            again.shared_session("b" * 43)
        assert again.integrity_ok()
    twice = cli(fresh_target, "restore", str(backup))
    assert twice.returncode == 1 and "restore into an empty one" in twice.stderr


def test_a_gzipped_dump_of_sqlite_restores_and_a_cut_one_restores_nothing(tmp_path):
    source = tmp_path / "src.db"
    with open_store(source) as store:
        made = populate(store)
        before = snapshot(store, made)
    out = tmp_path / "all.jsonl.gz"
    done = cli(source, "backup", str(out), "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    lines = list(read_dump(out))
    assert len(lines) == 1 + 4 + 16 + 24 + 2 and gzip.open(out).read(1) == b"{"
    with open_store(tmp_path / "cut.db") as empty:
        with pytest.raises(InvalidInput, match="cut short"):
            load_dump(empty.engine, lines[:-3])
        assert empty.list_all_sessions() == []  # one transaction: nothing of a bad dump stays
        with pytest.raises(InvalidInput, match="not a playground backup"):
            load_dump(empty.engine, ['{"schema": "something else"}'])
        load_dump(empty.engine, lines)
        assert snapshot(empty, made) == before


def test_a_sqlite_backup_taken_under_writes_is_one_moment(tmp_path):
    source = tmp_path / "busy.db"
    with open_store(source) as store:
        sid = store.create_session("w", "writes").id
        stop = threading.Event()

        def write():
            while not stop.is_set():
                store.add_cell("w", sid, prompt="x" * 2000)

        writer = threading.Thread(target=write)
        writer.start()
        try:
            from playground.store.dump import backup

            path, rows = backup(store, tmp_path / "copy.db")
        finally:
            stop.set()
            writer.join()
        assert rows is None and not (tmp_path / "copy.db.partial").exists()
    with open_store(path) as copy:
        assert copy.integrity_ok()
        cells = copy.get_session("w", sid).cells
        assert [c.position for c in cells] == list(range(len(cells)))  # dense: no half-applied write


def test_backup_says_what_is_wrong(tmp_path):
    target = tmp_path / "p.db"
    open_store(target).close()
    missing = cli(target, "backup", str(tmp_path / "no" / "such" / "folder" / "x.db"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    not_a_file = cli(target, "restore", str(tmp_path / "nothing.jsonl"))
    assert not_a_file.returncode == 1 and "is not a file" in not_a_file.stderr
