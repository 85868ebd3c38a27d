"""The store on real databases, SQLite files and a real PostgreSQL alike (`db_target` runs each test on both):
migrations, CRUD and ordering, ownership, runs, a real crash, shares, import/export."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect

from playground.errors import InvalidInput
from playground.evaluation.metrics import lane_metrics
from playground.store import NotFound, StoreUnavailable, TokenArray, default_db_path, default_target, open_store
from playground.store.db import connect, current_revision, head_revision, migrate_file, schema_drift

ROOT = Path(__file__).resolve().parent.parent
LANES = {"standard": {"seed": 1, "temperature": 0.0}, "reasoning": {"seed": 2, "temperature": 0.6}}
RECORD = {"model_id": "HuggingFaceTB/SmolLM2-135M-Instruct", "revision": "abc", "quant": "nf4",
          "placement": {"cpu": "all"}, "versions": {"torch": "2.13.0"}}


@pytest.fixture
def store(db_target):
    with open_store(db_target) as s:
        yield s


def rows(path, sql, *args):
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, args).fetchall()


def sql(target, statement: str) -> list[tuple]:
    """Run raw SQL on either engine, outside the store (what a second program would see)."""
    engine = connect(target)
    try:
        with engine.begin() as conn:
            result = conn.exec_driver_sql(statement)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def columns(target, table: str) -> list[str]:
    engine = connect(target)
    try:
        return [c["name"] for c in inspect(engine).get_columns(table)]
    finally:
        engine.dispose()


def lane_data(n: int, kind: str = "r", offset: float = 0.0) -> dict:
    """n tokens with awkward timings: values whose shortest repr has 17 digits must survive too."""
    thinking = kind == "r"
    return dict(raw_text="x" * n, reasoning_text="x" * n if thinking else "", answer_text="" if thinking else "x" * n,
                token_ids=list(range(100, 100 + n)), token_times=[offset + i * 0.1 + 1e-9 * (i % 7) for i in range(n)],
                token_kinds=kind * n, forced="0" * n)


# --- engine setup and migrations ---------------------------------------------------------------
def test_default_db_path_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PLAYGROUND_DB", str(tmp_path / "x.db"))
    assert default_db_path() == tmp_path / "x.db"
    monkeypatch.delenv("PLAYGROUND_DB")
    monkeypatch.setenv("PLAYGROUND_HOME", str(tmp_path / "home"))
    assert default_db_path() == tmp_path / "home" / "playground.db"
    monkeypatch.delenv("PLAYGROUND_HOME")
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_db_path() == tmp_path / ".local" / "share" / "reasoning-playground" / "playground.db"


def test_open_creates_folders_and_sets_pragmas(tmp_path):
    store = open_store(tmp_path / "data" / "playground.db")
    assert (tmp_path / "data" / "playground.db").exists()
    p = store.pragmas()
    assert p["journal_mode"] == "wal" and p["foreign_keys"] == 1 and p["busy_timeout"] == 5000
    assert p["synchronous"] == 1  # NORMAL
    assert current_revision(store.engine) == head_revision() and schema_drift(store.engine) == []
    assert store.integrity_ok()
    store.close()


def test_upgrade_from_the_first_revision_keeps_rows(db_target):
    migrate_file(db_target, "0001")
    assert "forked_from" not in columns(db_target, "sessions")
    sql(db_target, "INSERT INTO sessions (id, owner, title, created_at, updated_at) VALUES "
                   "('a0000000000000000000000000000001', 'old-owner', 'Made before forks', "
                   "'2024-01-02 03:04:05.000000', '2024-01-02 03:04:05.000000')")
    with open_store(db_target) as store:
        assert {"forked_from"} <= set(columns(db_target, "sessions")) and "replica" in columns(db_target, "runs")
        assert current_revision(store.engine) == head_revision() == "0005"
        assert schema_drift(store.engine) == []
        [old] = store.list_sessions("old-owner")
        assert old.title == "Made before forks" and old.forked_from is None
        assert old.created_at.isoformat() == "2024-01-02T03:04:05+00:00"
        assert store.create_session("old-owner", "New").forked_from is None
    if isinstance(db_target, Path):
        assert rows(db_target, "PRAGMA journal_mode") == [("wal",)]  # persistent: set by the first open


def test_the_running_index_is_partial_on_both_engines(store, db_target):
    [index] = [i for i in inspect(store.engine).get_indexes("runs") if i["name"] == "ix_runs_running"]
    where = index.get("dialect_options", {}).get(f"{store.engine.dialect.name}_where")
    assert "running" in str(where)


def test_default_target_is_the_url_when_set(monkeypatch, tmp_path):
    monkeypatch.setenv("PLAYGROUND_DB", str(tmp_path / "x.db"))
    monkeypatch.delenv("PLAYGROUND_DB_URL", raising=False)
    assert default_target() == tmp_path / "x.db"
    monkeypatch.setenv("PLAYGROUND_DB_URL", "postgres://u:p%40ss@db:5432/play")
    assert default_target() == "postgresql+psycopg://u:p%40ss@db:5432/play"  # psycopg 3, password kept
    monkeypatch.setenv("PLAYGROUND_DB_URL", f"sqlite:///{tmp_path}/y.db")
    assert default_target() == tmp_path / "y.db"


def test_an_unusable_file_says_what_to_do(tmp_path):
    (tmp_path / "garbage.db").write_bytes(b"not a database " * 500)
    for path in (tmp_path, tmp_path / "garbage.db"):
        with pytest.raises(StoreUnavailable, match="PLAYGROUND_DB"):
            open_store(path)


@pytest.mark.postgres
def test_an_unreachable_postgres_says_what_to_do(postgres_cluster):
    from bench.common import free_port

    url = f"postgresql+psycopg://someone:hunter2@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(StoreUnavailable, match="PLAYGROUND_DB_URL") as err:
        open_store(url)
    assert "hunter2" not in str(err.value) and "is PostgreSQL running" not in str(err.value)
    missing = postgres_cluster.url.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(StoreUnavailable, match="no_such_database"):
        open_store(missing)


@pytest.mark.postgres
def test_postgres_connections_wait_out_locks_for_the_busy_timeout(postgres_cluster):
    with open_store(postgres_cluster.fresh_database("settings_check")) as store:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "5s"
            assert conn.exec_driver_sql("SHOW server_encoding").scalar() == "UTF8"
        assert current_revision(store.engine) == head_revision() and schema_drift(store.engine) == []
        assert store.integrity_ok()


# --- sessions --------------------------------------------------------------------------------------
def test_sessions_crud_and_most_recent_first(store):
    a = store.create_session("me", "Alpha")
    b = store.create_session("me", "Beta")
    assert [s.id for s in store.list_sessions("me")] == [b.id, a.id]
    renamed = store.rename_session("me", a.id, "  Alpha 2 ")
    assert renamed.title == "Alpha 2" and renamed.updated_at > a.updated_at
    assert [s.title for s in store.list_sessions("me")] == ["Alpha 2", "Beta"]
    store.add_cell("me", b.id, prompt="bump")  # any change moves a session to the top
    assert [s.id for s in store.list_sessions("me")] == [b.id, a.id]
    assert [s.id for s in store.list_sessions("me", limit=1, offset=1)] == [a.id]
    copy = store.duplicate_session("me", b.id)
    assert copy.title == "Beta (copy)" and copy.forked_from is None and copy.id != b.id
    assert store.get_session("me", copy.id).cells[0].prompt == "bump"
    store.delete_session("me", b.id)
    with pytest.raises(NotFound):
        store.get_session("me", b.id)
    assert {s.id for s in store.list_sessions("me")} == {a.id, copy.id}


def test_search_matches_title_or_prompt_with_literal_wildcards(store):
    plain = store.create_session("me", "Groceries")
    pct = store.create_session("me", "100% sure")
    under = store.create_session("me", "snake_case notes")
    cell = store.create_session("me", "Untitled")
    store.add_cell("me", cell.id, prompt="What is the Capital of France?")
    store.add_cell("me", cell.id, kind="note", note="notes are not searched", prompt="")
    back = store.create_session("me", r"C:\path")

    def ids(q):
        return {s.id for s in store.list_sessions("me", q)}

    assert ids("grocer") == {plain.id} and ids("CAPITAL of") == {cell.id}
    assert ids("%") == {pct.id} and ids("0% s") == {pct.id}
    assert ids("_") == {under.id} and ids("e_c") == {under.id}
    assert ids("\\") == {back.id} and ids("searched") == set()
    assert ids("  ") == ids("") and len(ids("")) == 5


def test_limits_are_checked_at_the_edge(store):
    s = store.create_session("me")
    assert s.title == "Untitled"
    for bad in ("", "   ", "x" * 201, None):
        with pytest.raises(InvalidInput):
            store.rename_session("me", s.id, bad)
    for limit, offset in ((0, 0), (501, 0), (10, -1), (True, 0)):
        with pytest.raises(InvalidInput):
            store.list_sessions("me", limit=limit, offset=offset)
    with pytest.raises(InvalidInput):
        store.create_session("", "no owner")
    with pytest.raises(InvalidInput):
        store.create_share("me", s.id, "short")
    with pytest.raises(InvalidInput):
        store.fork_session("me")


def test_text_no_engine_can_store_is_refused_or_replaced_alike(store):
    sid = store.create_session("me", "NUL").id
    for bad in (dict(prompt="a\x00b"), dict(note="a\x00"), dict(system_prompt="\x00"), dict(expected="4\x00")):
        with pytest.raises(InvalidInput, match="NUL character"):
            store.add_cell("me", sid, **bad)
    with pytest.raises(InvalidInput, match="NUL character"):
        store.rename_session("me", sid, "a\x00b")
    with pytest.raises(InvalidInput, match="MAX_OWNER_CHARS"):
        store.create_session("o" * 201)
    cid = store.add_cell("me", sid, prompt="p", settings={"standard": {"stop": "a\x00b"}, "reasoning": {}}).id
    runs = store.start_execution("me", cid, LANES, RECORD)
    # Model output with a NUL (a byte-level token can decode to one) is kept, the NUL replaced.
    out = dict(lane_data(3, "a"), raw_text="x\x00y", answer_text="x\x00y")
    assert store.checkpoint_run(runs["standard"], **out)
    assert store.finish_run(runs["standard"], status="error", **out, prompt_tokens=1, metrics=None,
                            finish_reason="a remote server's " + "very " * 20 + "long reason", error="bad\x00body")
    run = store.get_session("me", sid).cells[0].latest.runs["standard"]
    assert run.raw_text == run.answer_text == "x\ufffdy" and run.error == "bad\ufffdbody"
    assert len(run.finish_reason) == 64 and run.finish_reason.startswith("a remote server's very")
    assert store.get_session("me", sid).cells[0].settings["standard"]["stop"] == "a\x00b"  # JSON escapes it


# --- cells ---------------------------------------------------------------------------------------
def positions(store, sid):
    return [(c.position, c.prompt) for c in store.get_session("me", sid).cells]


def test_cells_keep_dense_positions(store):
    sid = store.create_session("me").id
    a = store.add_cell("me", sid, prompt="a")
    c = store.add_cell("me", sid, prompt="c")
    b = store.add_cell("me", sid, prompt="b", position=1)
    assert positions(store, sid) == [(0, "a"), (1, "b"), (2, "c")]
    assert store.move_cell("me", a.id, -1) == 0  # already first: nothing moves
    assert store.move_cell("me", c.id, +1) == 2
    assert store.move_cell("me", a.id, +1) == 1
    assert positions(store, sid) == [(0, "b"), (1, "a"), (2, "c")]
    store.delete_cell("me", b.id)
    assert positions(store, sid) == [(0, "a"), (1, "c")]
    store.add_cell("me", sid, prompt="first", position=0)
    assert positions(store, sid) == [(0, "first"), (1, "a"), (2, "c")]
    with pytest.raises(InvalidInput):
        store.add_cell("me", sid, position=4)
    with pytest.raises(InvalidInput):
        store.move_cell("me", a.id, 2)


def test_update_cell_saves_only_changes(store):
    sid = store.create_session("me").id
    cell = store.add_cell("me", sid, prompt="p", settings={"standard": {"seed": 1}, "reasoning": {}})
    assert cell.settings == {"standard": {"seed": 1}, "reasoning": {}}
    same = store.update_cell("me", cell.id, prompt="p")
    assert same == cell  # nothing changed, nothing written
    before = store.list_sessions("me")[0].updated_at
    new = store.update_cell("me", cell.id, prompt="q", system_prompt="Be brief.", settings={"standard": {}})
    assert (new.prompt, new.system_prompt, new.settings) == ("q", "Be brief.", {"standard": {}})
    assert new.updated_at > cell.updated_at and store.list_sessions("me")[0].updated_at > before
    stored = store.get_session("me", sid).cells[0]
    assert (stored.prompt, stored.system_prompt, stored.updated_at) == ("q", "Be brief.", new.updated_at)
    with pytest.raises(InvalidInput):
        store.update_cell("me", cell.id, position=3)
    with pytest.raises(InvalidInput):
        store.update_cell("me", cell.id, kind="poem")


def test_rerunning_keeps_earlier_executions(store):
    sid = store.create_session("me").id
    cell = store.add_cell("me", sid, prompt="p")
    first = store.start_execution("me", cell.id, LANES, RECORD)
    store.finish_run(first["standard"], status="done", **lane_data(3, "a"), prompt_tokens=5, metrics={},
                     finish_reason="stop", error=None)
    second = store.start_execution("me", cell.id, {"reasoning": LANES["reasoning"]}, RECORD)
    full = store.get_session("me", sid).cells[0]
    assert [e.number for e in full.executions] == [1, 2] and full.latest.number == 2
    assert list(full.executions[0].runs) == ["standard", "reasoning"] and list(full.latest.runs) == ["reasoning"]
    assert full.executions[0].runs["standard"].status == "done"
    assert full.latest.runs["reasoning"].id == second["reasoning"]
    assert full.latest.runs["reasoning"].record == {**RECORD, "settings": LANES["reasoning"]}
    note = store.add_cell("me", sid, kind="note", note="just words")
    with pytest.raises(InvalidInput):
        store.start_execution("me", note.id, LANES, RECORD)
    with pytest.raises(InvalidInput):
        store.start_execution("me", cell.id, {"fast": {}}, RECORD)


# --- ownership -----------------------------------------------------------------------------------
def test_every_method_refuses_another_owner(store):
    sid = store.create_session("me", "Mine").id
    cid = store.add_cell("me", sid, prompt="secret").id
    token = store.create_share("me", sid, "t" * 43)
    calls = [
        lambda o, s, c, t: store.rename_session(o, s, "x"), lambda o, s, c, t: store.delete_session(o, s),
        lambda o, s, c, t: store.duplicate_session(o, s), lambda o, s, c, t: store.fork_session(o, session_id=s),
        lambda o, s, c, t: store.get_session(o, s), lambda o, s, c, t: store.add_cell(o, s),
        lambda o, s, c, t: store.update_cell(o, c, prompt="y"), lambda o, s, c, t: store.move_cell(o, c, 1),
        lambda o, s, c, t: store.delete_cell(o, c), lambda o, s, c, t: store.start_execution(o, c, LANES, RECORD),
        lambda o, s, c, t: store.create_share(o, s, "u" * 43), lambda o, s, c, t: store.revoke_share(o, t),
        lambda o, s, c, t: store.list_shares(o, s),
    ]
    for call in calls:
        with pytest.raises(NotFound) as theirs:
            call("you", sid, cid, token)
        with pytest.raises(NotFound) as missing:  # exactly the answer for ids that never existed
            call("me", uuid.uuid4().hex, uuid.uuid4().hex, "w" * 43)
        assert str(theirs.value) == str(missing.value)
    assert store.list_sessions("you") == [] and store.list_sessions("you", "secret") == []
    full = store.get_session("me", sid)  # nothing above changed anything
    assert full.title == "Mine" and [c.prompt for c in full.cells] == ["secret"] and not full.cells[0].executions
    assert [s.token for s in store.list_shares("me", sid)] == [token] and store.shared_session(token).id == sid


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    with open_store(tmp_path_factory.mktemp("prop") / "p.db") as s:
        yield s


ACTIONS = st.lists(st.tuples(st.sampled_from(["create", "rename", "delete", "duplicate", "cell"]),
                             st.integers(0, 2), st.integers(0, 50)), max_size=20)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=ACTIONS)
def test_list_sessions_never_shows_another_owners_sessions(shared_store, actions):
    owners = [f"{uuid.uuid4().hex}-{i}" for i in range(3)]  # fresh owners: examples share one file
    model: dict[str, str] = {}  # session id -> owner
    for action, who, pick in actions:
        owner = owners[who]
        ids = sorted(model)
        target = ids[pick % len(ids)] if ids else None
        mine = target is not None and model[target] == owner
        if action == "create":
            model[shared_store.create_session(owner, f"s{pick}").id] = owner
            continue
        if target is None:
            continue
        try:
            if action == "rename":
                shared_store.rename_session(owner, target, f"r{pick}")
            elif action == "delete":
                shared_store.delete_session(owner, target)
                del model[target]
            elif action == "duplicate":
                model[shared_store.duplicate_session(owner, target).id] = owner
            else:
                shared_store.add_cell(owner, target, prompt=f"s{pick}")
            assert mine
        except NotFound:
            assert not mine
        for o in owners:
            assert {s.id for s in shared_store.list_sessions(o, limit=500)} == {k for k, v in model.items() if v == o}
            assert all(s.owner == o for s in shared_store.list_sessions(o, "s", limit=500))


# --- runs ----------------------------------------------------------------------------------------
def test_a_run_round_trips_every_field_exactly(store):
    sid = store.create_session("me").id
    cid = store.add_cell("me", sid, prompt="p").id
    runs = store.start_execution("me", cid, LANES, RECORD)
    rid = runs["reasoning"]
    for n in (1, 5, 12):
        assert store.checkpoint_run(rid, **lane_data(n, offset=0.3))
        run = store.get_session("me", sid).cells[0].latest.runs["reasoning"]
        assert run.status == "running" and run.generated_tokens == n and run.token_times == lane_data(n, offset=0.3)[
            "token_times"]
    kinds = ["reasoning"] * 8 + ["answer"] * 6
    times = [0.1 + 0.2, 1 / 3, 2.000000000000001, 1e-300, 12345.678901234567] + [7.5 + i / 7 for i in range(9)]
    forced = [False] * 7 + [True] + [False] * 6
    metrics = lane_metrics(11, 0.0, times, kinds, forced, first_answer_time=times[8], t_end=9.0,
                           finish_reason="stop").to_dict()
    assert store.finish_run(rid, status="done", raw_text="<think>hm</think>yes ☃", reasoning_text="hm",
                            answer_text="yes ☃", token_ids=[0, 2**31 - 1, *range(12)], token_times=times,
                            token_kinds=kinds, forced=forced, prompt_tokens=11, metrics=metrics,
                            finish_reason="stop", error=None)
    run = store.get_session("me", sid).cells[0].latest.runs["reasoning"]
    assert (run.status, run.raw_text, run.reasoning_text, run.answer_text) == (
        "done", "<think>hm</think>yes ☃", "hm", "yes ☃")
    assert run.token_ids == [0, 2**31 - 1, *range(12)] and isinstance(run.token_ids, TokenArray)
    assert run.token_times == times and list(run.token_times) == times and run.token_times.tolist() == times
    assert run.kinds == kinds and run.token_kinds == "r" * 8 + "a" * 6 and run.forced_flags == forced
    assert (run.prompt_tokens, run.generated_tokens, run.reasoning_tokens, run.answer_tokens) == (11, 14, 8, 6)
    assert run.metrics == metrics and run.finish_reason == "stop" and run.error is None
    assert run.record == {**RECORD, "settings": LANES["reasoning"]} and run.execution == 1
    assert run.started_at <= run.finished_at == run.updated_at
    again = lane_metrics(11, 0.0, run.token_times, run.kinds, run.forced_flags, times[8], 9.0, "stop")
    assert again.to_dict() == metrics  # metrics recompute from the stored run alone
    # A finished run is final: late checkpoints and second finishes write nothing.
    assert not store.checkpoint_run(rid, **lane_data(2))
    assert not store.finish_run(rid, status="error", **lane_data(2), prompt_tokens=1, metrics=None,
                                finish_reason=None, error="late")
    assert store.get_session("me", sid).cells[0].latest.runs["reasoning"] == run
    with pytest.raises(InvalidInput):
        store.checkpoint_run(runs["standard"], **{**lane_data(3), "token_kinds": "rr"})
    with pytest.raises(InvalidInput):
        store.finish_run(runs["standard"], status="interrupted", **lane_data(1), prompt_tokens=1, metrics=None,
                         finish_reason=None, error=None)
    assert not store.checkpoint_run("no-such-run", **lane_data(1))


def test_the_final_record_is_stored_at_finish_and_by_set_record(store):
    sid = store.create_session("me").id
    cid = store.add_cell("me", sid, prompt="p").id
    runs = store.start_execution("me", cid, LANES, RECORD)
    learned = {**RECORD, "settings": LANES["reasoning"], "batch_runs": 3, "zero_gpu": True}
    assert store.finish_run(runs["reasoning"], status="done", **lane_data(2), prompt_tokens=1, metrics={},
                            finish_reason="stop", error=None, record=learned)
    assert store.finish_run(runs["standard"], status="done", **lane_data(2), prompt_tokens=1, metrics={},
                            finish_reason="stop", error=None)  # no record: the one written at the start stays
    stored = store.get_session("me", sid).cells[0].latest.runs
    assert stored["reasoning"].record == learned
    assert stored["standard"].record == {**RECORD, "settings": LANES["standard"]}
    assert not store.finish_run(runs["reasoning"], status="done", **lane_data(2), prompt_tokens=1, metrics={},
                                finish_reason="stop", error=None, record={"late": True})
    assert store.get_session("me", sid).cells[0].latest.runs["reasoning"].record == learned
    # What a run learns after a lane ended (another lane's timings) reaches that lane's row too.
    assert store.set_record(runs["standard"], {**learned, "settings": LANES["standard"]})
    assert store.get_session("me", sid).cells[0].latest.runs["standard"].record["batch_runs"] == 3
    assert not store.set_record("no-such-run", learned)
    for bad in (["not", "a", "dict"], None):
        with pytest.raises(InvalidInput, match="record must be a dict"):
            store.set_record(runs["standard"], bad)
    with pytest.raises(InvalidInput, match="record must be a dict"):
        store.finish_run(runs["standard"], status="done", **lane_data(2), prompt_tokens=1, metrics={},
                         finish_reason="stop", error=None, record=["not", "a", "dict"])


def test_mark_interrupted_keeps_checkpointed_tokens(store, db_target):
    sid = store.create_session("me").id
    cid = store.add_cell("me", sid, prompt="p").id
    runs = store.start_execution("me", cid, LANES, RECORD)
    store.checkpoint_run(runs["reasoning"], **lane_data(7))
    store.finish_run(runs["standard"], status="stopped", **lane_data(2, "a"), prompt_tokens=3, metrics={},
                     finish_reason="stopped", error=None)
    store.close()
    with open_store(db_target) as again:
        assert again.mark_interrupted() == 1 and again.mark_interrupted() == 0
        latest = again.get_session("me", sid).cells[0].latest.runs
        run = latest["reasoning"]
        assert run.status == "interrupted" and run.token_ids == lane_data(7)["token_ids"]
        assert run.token_times == lane_data(7)["token_times"] and run.finished_at == run.updated_at
        assert latest["standard"].status == "stopped"


CRASHER = """
import sys
from playground.store import open_store
store = open_store(sys.argv[1])
sid = store.create_session("crash", "Crash").id
cid = store.add_cell("crash", sid, prompt="p").id
rid = store.start_execution("crash", cid, {"standard": {}, "reasoning": {}}, {"seed": 0})["reasoning"]
print("SESSION", sid, flush=True)
ids, times = [], []
while True:
    ids.append(len(ids) + 7)
    times.append(len(times) * 0.013)
    n = len(ids)
    store.checkpoint_run(rid, raw_text="x" * n, reasoning_text="x" * n, answer_text="", token_ids=ids,
                         token_times=times, token_kinds="r" * n, forced="0" * n)
    print("CHECKPOINT", n, flush=True)
"""


def test_a_killed_process_leaves_an_interrupted_run_with_its_tokens(db_target):
    path = db_target
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", CRASHER, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        sid, last = None, 0
        for line in proc.stdout:
            word, value = line.split()
            if word == "SESSION":
                sid = value
            else:
                last = int(value)
                if last >= 25:
                    break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and sid is not None and last >= 25
    with open_store(path) as store:
        assert store.integrity_ok()
        assert store.mark_interrupted() == 2  # both lanes were running
        runs = store.get_session("crash", sid).cells[0].latest.runs
        run = runs["reasoning"]
        assert run.status == "interrupted" and run.generated_tokens >= last
        n = run.generated_tokens
        assert run.token_ids == [i + 7 for i in range(n)] and run.token_times == [i * 0.013 for i in range(n)]
        assert run.raw_text == "x" * n and run.token_kinds == "r" * n
        assert runs["standard"].status == "interrupted" and runs["standard"].generated_tokens == 0
        assert store.integrity_ok()


def test_concurrent_writers_all_land(store):
    sid = store.create_session("me").id
    errors = []

    def worker(i):
        try:
            cid = store.add_cell("me", sid, prompt=f"w{i}").id
            rid = store.start_execution("me", cid, LANES, RECORD)["standard"]
            for n in range(1, 15):
                store.checkpoint_run(rid, **lane_data(n, "a"))
            store.finish_run(rid, status="done", **lane_data(15, "a"), prompt_tokens=1, metrics={},
                             finish_reason="stop", error=None)
        except Exception as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    cells = store.get_session("me", sid).cells
    assert sorted(c.position for c in cells) == list(range(8))
    assert all(c.latest.runs["standard"].generated_tokens == 15 for c in cells)


# --- copies and shares -----------------------------------------------------------------------------
def test_duplicate_and_import_copy_runs_under_new_ids(store):
    sid = store.create_session("me", "Source").id
    cid = store.add_cell("me", sid, prompt="p").id
    runs = store.start_execution("me", cid, LANES, RECORD)
    store.finish_run(runs["standard"], status="done", **lane_data(4, "a"), prompt_tokens=2, metrics={"m": 1},
                     finish_reason="stop", error=None)
    store.checkpoint_run(runs["reasoning"], **lane_data(3))
    source = store.get_session("me", sid)
    copies = []
    for copy in (store.get_session("me", store.duplicate_session("me", sid, "Twin").id),
                 store.get_session("other", store.import_sessions("other", [source])[0].id)):
        assert copy.id != sid and copy.title in ("Twin", "Source") and copy.cells[0].id != cid
        done, flying = copy.cells[0].latest.runs["standard"], copy.cells[0].latest.runs["reasoning"]
        assert done.id != runs["standard"] and done.token_times == lane_data(4, "a")["token_times"]
        assert done.metrics == {"m": 1} and done.started_at == source.cells[0].latest.runs["standard"].started_at
        # A run in flight is copied as interrupted: nothing will ever finish the copy.
        assert flying.status == "interrupted" and flying.token_ids == lane_data(3)["token_ids"]
        copies.append(copy)
    store.update_cell("me", copies[0].cells[0].id, prompt="changed")  # copies are independent
    assert store.get_session("me", sid).cells[0].prompt == "p"
    assert store.get_session("me", sid).cells[0].latest.runs["reasoning"].status == "running"


def test_shares_read_without_owner_until_revoked(store, db_target):
    sid = store.create_session("me", "Shared").id
    store.add_cell("me", sid, prompt="look")
    token = "s" * 43
    assert store.create_share("me", sid, token) == token
    with pytest.raises(InvalidInput):
        store.create_share("me", sid, token)  # a token names one link
    seen = store.shared_session(token)
    assert seen.title == "Shared" and [c.prompt for c in seen.cells] == ["look"]
    assert seen.owner == ""  # an owner may be a browser secret: never shown to a viewer
    fork = store.fork_session("you", share_token=token, title="Mine now")
    assert fork.owner == "you" and fork.forked_from == sid and fork.title == "Mine now"
    assert [c.prompt for c in store.get_session("you", fork.id).cells] == ["look"]
    with pytest.raises(NotFound):
        store.shared_session("u" * 43)
    [info] = store.list_shares("me", sid)
    assert info.token == token and info.revoked_at is None
    store.revoke_share("me", token)
    store.revoke_share("me", token)  # twice is harmless
    with pytest.raises(NotFound):
        store.shared_session(token)
    with pytest.raises(NotFound):
        store.fork_session("you", share_token=token)
    assert store.list_shares("me", sid)[0].revoked_at is not None
    store.create_share("me", sid, "v" * 43)
    store.delete_session("me", sid)
    assert sql(db_target, "SELECT count(*) FROM shares") == [(0,)]
    assert sql(db_target, "SELECT count(*) FROM cells") == [(1,)]
    with pytest.raises(NotFound):
        store.shared_session("v" * 43)
    assert store.get_session("you", fork.id).forked_from == sid  # a fork outlives its source


# --- grading columns (0003) ---------------------------------------------------------------------
def test_upgrade_from_0002_keeps_cells_ungraded(db_target):
    migrate_file(db_target, "0002")
    sql(db_target, "INSERT INTO sessions (id, owner, title, created_at, updated_at) VALUES "
                   "('s1', 'me', 'Old', '2024-01-02 03:04:05.000000', '2024-01-02 03:04:05.000000')")
    sql(db_target, "INSERT INTO cells (id, session_id, position, kind, prompt, system_prompt, note, settings, "
                   "created_at, updated_at) VALUES ('c1', 's1', 0, 'prompt', '2+2?', NULL, '', '{}', "
                   "'2024-01-02 03:04:05.000000', '2024-01-02 03:04:05.000000')")
    with open_store(db_target) as store:
        cols = columns(db_target, "cells")
        assert cols[-2:] == ["expected", "grader"] and "grade" in columns(db_target, "runs")
        [cell] = store.get_session("me", "s1").cells
        assert (cell.prompt, cell.expected, cell.grader) == ("2+2?", None, None)
        assert schema_drift(store.engine) == []


def test_expected_grader_and_grade_round_trip(store):
    sid = store.create_session("me").id
    cell = store.add_cell("me", sid, prompt="2+2?", expected="4", grader={"kind": "numeric", "tolerance": 0.0})
    assert (cell.expected, cell.grader) == ("4", {"kind": "numeric", "tolerance": 0.0})
    store.update_cell("me", cell.id, expected="5", grader={"kind": "exact"})
    runs = store.start_execution("me", cell.id, LANES, RECORD)
    assert store.set_grade(runs["standard"], {"status": "pass", "extracted": "5", "detail": "", "key": "k"})
    full = store.get_session("me", sid)
    c = full.cells[0]
    assert (c.expected, c.grader) == ("5", {"kind": "exact"})
    assert c.latest.runs["standard"].grade["status"] == "pass" and c.latest.runs["reasoning"].grade is None
    copy = store.duplicate_session("me", sid)
    assert store.get_session("me", copy.id).cells[0].latest.runs["standard"].grade["extracted"] == "5"
    [imported] = store.import_sessions("me", [full])
    assert store.get_session("me", imported.id).cells[0].expected == "5"
    assert not store.set_grade("no-such-run", None)
    with pytest.raises(InvalidInput, match="grader"):
        store.update_cell("me", cell.id, grader={"kind": "fuzzy"})
    with pytest.raises(InvalidInput, match="MAX_EXPECTED_CHARS"):
        store.update_cell("me", cell.id, expected="x" * 100_000)


# --- conversation turns (0005) ------------------------------------------------------------------
def test_upgrade_from_0004_makes_every_old_execution_a_first_turn(db_target):
    migrate_file(db_target, "0004")
    sql(db_target, "INSERT INTO sessions (id, owner, title, created_at, updated_at) VALUES "
                   "('s1', 'me', 'Old', '2024-01-02 03:04:05.000000', '2024-01-02 03:04:05.000000')")
    sql(db_target, "INSERT INTO cells (id, session_id, position, kind, prompt, system_prompt, note, settings, "
                   "created_at, updated_at) VALUES ('c1', 's1', 0, 'prompt', '2+2?', NULL, '', '{}', "
                   "'2024-01-02 03:04:05.000000', '2024-01-02 03:04:05.000000')")
    with open_store(db_target) as store:  # an execution from before turns: made by the store at 0005,
        store.start_execution("me", "c1", LANES, RECORD)  # then stripped back to what 0004 stored
    sql(db_target, "UPDATE runs SET turn_prompt = NULL, parent = NULL")
    with open_store(db_target) as store:
        assert columns(db_target, "runs")[-3:] == ["turn", "parent", "turn_prompt"]
        assert schema_drift(store.engine) == []
        [cell] = store.get_session("me", "s1").cells
        [old] = cell.turns
        assert (old.turn, old.parent, old.prompt(cell.prompt)) == (1, None, "2+2?")
        store.start_execution("me", "c1", LANES, RECORD, parent=1, prompt="And 3+3?")  # continued like a new one
        [cell] = store.get_session("me", "s1").cells
        assert [(e.turn, e.prompt(cell.prompt)) for e in cell.turns] == [(1, "2+2?"), (2, "And 3+3?")]


def test_rows_from_before_0005_read_as_first_turns(tmp_path):
    path = tmp_path / "v4.db"
    migrate_file(path, "0004")
    sql(path, "INSERT INTO sessions (id, owner, title, created_at, updated_at) VALUES "
              "('s1', 'me', 'Old', '2024-01-02 03:04:05.000000', '2024-01-02 03:04:05.000000')")
    sql(path, "INSERT INTO cells (id, session_id, position, kind, prompt, system_prompt, note, settings, "
              "created_at, updated_at) VALUES ('c1', 's1', 0, 'prompt', '2+2?', NULL, '', '{}', "
              "'2024-01-02 03:04:05.000000', '2024-01-02 03:04:05.000000')")
    sql(path, "INSERT INTO runs (id, cell_id, execution, lane, status, prompt_tokens, generated_tokens, "
              "reasoning_tokens, answer_tokens, started_at, updated_at, record, raw_text, reasoning_text, "
              "answer_text, token_ids, token_times, token_kinds, forced) VALUES ('r1', 'c1', 1, 'standard', "
              "'done', 5, 0, 0, 0, '2024-01-02 03:04:05.000000', '2024-01-02 03:04:05.000000', '{}', '', "
              "'', '', x'', x'', '', '')")
    with open_store(path) as store:
        [cell] = store.get_session("me", "s1").cells
        assert [(e.number, e.turn, e.parent, e.prompt(cell.prompt)) for e in cell.turns] == [(1, 1, None, "2+2?")]


def test_turns_versions_and_branches(store):
    sid = store.create_session("me").id
    cell = store.add_cell("me", sid, prompt="first")
    store.start_execution("me", cell.id, LANES, RECORD, prompt="first")  # 1: turn 1
    store.start_execution("me", cell.id, LANES, RECORD, parent=1, prompt="second")  # 2: turn 2
    store.start_execution("me", cell.id, LANES, RECORD, parent=1, prompt="second")  # 3: turn 2 re-run (a version)
    store.start_execution("me", cell.id, LANES, RECORD, parent=3, prompt="third")  # 4: turn 3
    full = store.get_session("me", sid).cells[0]
    assert [(e.number, e.turn, e.parent) for e in full.turns] == [(1, 1, None), (3, 2, 1), (4, 3, 3)]
    assert [e.number for e in full.conversation(2)] == [1, 2]  # the earlier version, still readable
    # Editing turn 2's prompt starts a branch under turn 1; the old branch's turn 3 stays as a version.
    store.start_execution("me", cell.id, LANES, RECORD, parent=1, prompt="second, edited")  # 5
    full = store.get_session("me", sid).cells[0]
    assert [e.prompt(full.prompt) for e in full.turns] == ["first", "second, edited"]
    assert [e.prompt(full.prompt) for e in full.conversation(4)] == ["first", "second", "third"]
    # Turns travel with copies and imports (execution numbers are kept, so parents still point right).
    for copy in (store.duplicate_session("me", sid), store.import_sessions("me", [store.get_session("me", sid)])[0]):
        c = store.get_session("me", copy.id).cells[0]
        assert [(e.number, e.turn, e.parent) for e in c.conversation(4)] == [(1, 1, None), (3, 2, 1), (4, 3, 3)]
    with pytest.raises(NotFound, match="earlier turn"):
        store.start_execution("me", cell.id, LANES, RECORD, parent=99, prompt="x")
    with pytest.raises(InvalidInput, match="parent"):
        store.start_execution("me", cell.id, LANES, RECORD, parent=0, prompt="x")
    assert len(store.get_session("me", sid).cells[0].executions) == 5  # nothing saved by the refusals


def test_get_cell_full_is_one_cell_of_get_session(store):
    sid = store.create_session("me").id
    a, b = store.add_cell("me", sid, prompt="a"), store.add_cell("me", sid, prompt="b")
    store.start_execution("me", b.id, LANES, RECORD, prompt="b")
    store.start_execution("me", b.id, LANES, RECORD, parent=1, prompt="b2")
    assert store.get_cell_full("me", b.id) == store.get_session("me", sid).cells[1]
    assert store.get_cell_full("me", a.id).executions == ()
    with pytest.raises(NotFound):
        store.get_cell_full("you", b.id)
