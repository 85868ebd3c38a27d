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
    assert "version 7; this playground reads versions 1, 2" in capsys.readouterr().err
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


# --- grade: by hand, every grader kind (exit 0 pass, 1 fail, 2 bad input) ------------------------
GYM_ENTRY = json.dumps({"kind": "gym", "task": "syllogism",
                        "entry": {"question": "Does it follow?", "answer": "Yes", "metadata": {}}})


@pytest.mark.parametrize("grader, expected, right, wrong", [
    (["--grader", "exact"], "Paris", "paris.", "Lyon"),
    (["--grader", "numeric", "--tolerance", "0.5"], "10", "about 10.4", "10.6"),
    (["--grader", "regex"], r"(?i)\bhello\b", "Hello there", "hi"),
    (["--grader", "choice"], "C", "The answer is (C).", "(B)"),
    (["--grader", "math"], r"\frac{1}{2}", r"so $\boxed{0.5}$", "0.6"),
    (["--grader", "gym", "--task", "basic_arithmetic"], "30", "<answer>30</answer>", "<answer>31</answer>"),
    (["--grader", GYM_ENTRY], "Yes", "<answer>Yes</answer>", "<answer>No</answer>"),
    (["--grader", "python"], "assert f(3) == 9", "```python\ndef f(x):\n    return x * x\n```", "def f(x): return x"),
])
def test_grade_every_kind_by_hand(capsys, grader, expected, right, wrong):
    assert main(["grade", *grader, "--", expected, right]) == 0
    out = capsys.readouterr().out
    assert "verdict:   pass" in out and "extracted: " in out and "detail:    " in out
    assert main(["grade", *grader, "--", expected, wrong]) == 1
    assert "verdict:   fail" in capsys.readouterr().out


@pytest.mark.parametrize("args, words", [
    (["--grader", "bogus", "--", "1", "1"], "use one of exact, numeric"),
    (["--grader", "math", "--", "???", "1"], "no value the math grader can read"),
    (["--grader", "numeric", "--", "no digits", "1"], "has no number"),
    (["--grader", "regex", "--", "(unclosed", "x"], "not a valid regular expression"),
    (["--grader", "gym", "--task", "no_such_task", "--", "1", "1"], "no Reasoning Gym task"),
    (["--grader", "{not json", "--", "1", "1"], "looks like JSON"),
    (["--grader", "exact", "--", "", "x"], "needs an expected answer"),
])
def test_grade_bad_input_exits_2_with_the_fix(capsys, args, words):
    assert main(["grade", *args]) == 2
    assert words in capsys.readouterr().err


def test_grade_reads_a_long_answer_from_stdin():
    r = subprocess.run([sys.executable, "-m", "playground", "grade", "--grader", "numeric", "--", "42", "-"],
                       input="many lines\n" * 100 + "so 42", capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and "extracted: 42" in r.stdout


# --- report: the verdict, its charts and every graded cell, self-contained ----------------------
def graded_session(path: Path) -> str:
    """Three graded cells (one with hostile text) and one ungraded, run with fixed answers."""
    cells = [("What is 2+2? <script>alert(1)</script>", "4", "numeric", "4", "4"),
             ("Halve 1.", "\\frac{1}{2}", "math", "0.7", "$\\boxed{0.5}$"),
             ("Pick one.", "B", "choice", "(B)", "(C)"),
             ("Say hi.", None, None, "hi", "hello")]
    with open_store(path) as store:
        s = store.create_session(OWNER, "Report <b>me</b>")
        for prompt, expected, grader, std, rsn in cells:
            cell = store.add_cell(OWNER, s.id, prompt=prompt, expected=expected,
                                  grader={"kind": grader} if grader else None)
            ids = store.start_execution(OWNER, cell.id, {"standard": {}, "reasoning": {}}, {"model_id": "m"})
            for lane, answer in (("standard", std), ("reasoning", rsn)):
                store.finish_run(ids[lane], status="done", raw_text=answer, reasoning_text="", answer_text=answer,
                                 token_ids=[1, 2], token_times=[0.1, 0.2], token_kinds=["answer", "answer"],
                                 forced=[False, False], prompt_tokens=3, metrics={"total_s": 1.0},
                                 finish_reason="eos", error=None)
        return s.id


def test_report_writes_the_verdict_charts_and_graded_cells(db, tmp_path, capsys):
    sid = graded_session(db)
    out = tmp_path / "report.html"
    assert main(["report", sid, "--out", str(out)]) == 0
    page = out.read_text()
    assert "Did reasoning pay?" in page and "Graded cells (3)" in page
    assert "too few graded cells to tell" in page and "95% interval" in page
    assert 'http-equiv="Content-Security-Policy"' in page and "plotly.js v" in page  # one file, offline
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)" in page
    assert "<b>me</b>" not in page
    # each graded cell's row says what each lane's grader read, and whether reasoning fixed or broke it
    for needed in ("fixed", "broke", "same", "\\frac{1}{2}"):
        assert needed in page
    charts = json.loads(page.split('<script type="application/json" id="share-charts">')[1].split("</script>")[0])
    bars = charts["chart-verdict-accuracy"]["data"]
    assert all(b["error_y"]["type"] == "data" for b in bars)
    # to a folder, by the session's title
    assert main(["report", sid, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "report-b-me-b-report.html").exists()
    assert main(["report", "nope"]) == 1
    assert "error:" in capsys.readouterr().err


def test_export_and_import_keep_a_cells_turns(db, tmp_path, capsys):
    sid = make_session(db)
    with open_store(db) as store:
        cell = store.get_session(OWNER, sid).cells[0]
        run_ids = store.start_execution(OWNER, cell.id, {"standard": {}, "reasoning": {}}, {"model_id": "m"},
                                        parent=1, prompt="And times ten?")
        for run_id in run_ids.values():
            store.finish_run(run_id, status="done", raw_text="40", reasoning_text="", answer_text="40",
                             token_ids=[1], token_times=[0.1], token_kinds=["answer"], forced=[False],
                             prompt_tokens=9, metrics=None, finish_reason="eos", error=None)
    out = tmp_path / "s.json"
    assert main(["export", sid, "--owner", OWNER, "--format", "json", "--out", str(out)]) == 0
    assert main(["import", str(out), "--owner", "someone-else"]) == 0
    new_id = capsys.readouterr().out.strip()
    with open_store(db) as store:
        [copy] = store.get_session("someone-else", new_id).cells
        assert [(e.turn, e.prompt(copy.prompt)) for e in copy.turns] == [(1, "What is 2+2?"), (2, "And times ten?")]
    md = tmp_path / "s.md"
    assert main(["export", sid, "--owner", OWNER, "--format", "md", "--out", str(md)]) == 0
    assert "**Turn 2**" in md.read_text() and "And times ten?" in md.read_text()
