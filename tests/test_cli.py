"""The operator CLI (`python -m playground …`) on a real SQLite file chosen by PLAYGROUND_DB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from playground.cli import main, short_owner
from playground.sharing.schema import SCHEMA
from playground.store import open_store

ROOT = Path(__file__).resolve().parent.parent
OWNER = "owner-0123456789abcdef"


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cli.db"
    monkeypatch.setenv("PLAYGROUND_DB", str(path))
    return path


def make_session(path: Path, title: str = "CLI session") -> str:
    with open_store(path) as store:
        s = store.create_session(OWNER, title)
        cell = store.add_cell(OWNER, s.id, prompt="What is 2+2?")
        run_ids = store.start_execution(OWNER, cell.id, {"standard": {}, "reasoning": {}}, {"model_id": "m"})
        for lane, run_id in run_ids.items():
            kinds = ["reasoning", "answer"] if lane == "reasoning" else ["answer", "answer"]
            store.finish_run(run_id, status="done", raw_text="4", reasoning_text="hmm" if lane == "reasoning" else "",
                             answer_text="4", token_ids=[1, 2], token_times=[0.1, 0.2], token_kinds=kinds,
                             forced=[False, False], prompt_tokens=3, metrics=None, finish_reason="eos", error=None)
        return s.id


def test_sessions_lists_an_owners_sessions(db, capsys):
    sid = make_session(db)
    make_session(db, "Another one")
    assert main(["sessions", "--owner", OWNER, "--query", "cli"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith(sid) and out[0].endswith("CLI session")
    assert OWNER not in out[0] and short_owner(OWNER) in out[0]  # shortened: an owner id is a secret
    assert main(["sessions", "--owner", "nobody"]) == 0
    assert "no sessions" in capsys.readouterr().err


def test_export_then_import_round_trips(db, tmp_path, capsys):
    sid = make_session(db)
    out = tmp_path / "s.json"
    assert main(["export", sid, "--owner", OWNER, "--format", "json", "--out", str(out)]) == 0
    assert main(["import", str(out), "--owner", "someone-else"]) == 0
    new_id = capsys.readouterr().out.strip()
    with open_store(db) as store:
        assert store.get_session("someone-else", new_id).title == "CLI session"
    again = tmp_path / "again.json"
    assert main(["export", new_id, "--owner", "someone-else", "--out", str(again)]) == 0
    first, second = json.loads(out.read_text()), json.loads(again.read_text())
    first.pop("exported_at"), second.pop("exported_at")
    assert first == second


@pytest.mark.parametrize("fmt, marker", [("md", "<details><summary>Reasoning</summary>"), ("html", "plotly.js v")])
def test_export_formats_to_a_folder_and_stdout(db, tmp_path, capsys, fmt, marker):
    sid = make_session(db, "Report: Q3/Q4")
    assert main(["export", sid, "--owner", OWNER, "--format", fmt, "--out", str(tmp_path)]) == 0
    written = tmp_path / f"report-q3-q4.{fmt}"
    assert marker in written.read_text()
    capsys.readouterr()
    assert main(["export", sid, "--owner", OWNER, "--format", fmt]) == 0
    assert marker in capsys.readouterr().out


def test_errors_are_one_clear_line(db, tmp_path, capsys):
    sid = make_session(db)
    assert main(["export", sid, "--owner", "not-the-owner"]) == 1
    assert "No such session" in capsys.readouterr().err
    bad = tmp_path / "v7.json"
    bad.write_text(json.dumps({"schema": SCHEMA, "version": 7}))
    assert main(["import", str(bad), "--owner", OWNER]) == 1
    assert "version 7; this playground reads version 1" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "missing.json"), "--owner", OWNER]) == 1
    assert "cannot read" in capsys.readouterr().err
    with open_store(db) as store:
        assert [s.id for s in store.list_sessions(OWNER)] == [sid]  # nothing was added


def test_python_dash_m_playground(db):
    sid = make_session(db)
    env = dict(os.environ, PLAYGROUND_DB=str(db))
    r = subprocess.run([sys.executable, "-m", "playground", "sessions", "--owner", OWNER], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sid in r.stdout
    usage = subprocess.run([sys.executable, "-m", "playground"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=120)
    assert usage.returncode == 2 and "sessions" in usage.stderr and "serve" in usage.stderr


def test_operator_lists_and_exports_without_knowing_the_owner(db, capsys):
    sid = make_session(db, "Mine")
    with open_store(db) as store:
        other = store.create_session("owner-of-another-browser", "Theirs").id
    assert main(["sessions"]) == 0
    out = capsys.readouterr().out
    assert sid in out and other in out
    assert main(["export", sid, "--format", "md"]) == 0
    assert "Mine" in capsys.readouterr().out
    assert main(["export", sid, "--owner", "not-the-owner", "--format", "md"]) == 1
    assert main(["export", "no-such-session", "--format", "json"]) == 1
