"""Faults on a real SQLite file and a real PostgreSQL: another process holding the write lock (a row
lock on PostgreSQL), a full disk, and (PostgreSQL) the server stopped under a live store.

Each test uses the real store, or the real app (`python app.py`) and gradio_client, and ends with
PRAGMA integrity_check. The lock is a real one (a second process in BEGIN EXCLUSIVE); the full disk
is a real one where this machine lets us mount a small tmpfs, and an injected SQLITE_FULL error
otherwise (the same error SQLite raises, thrown where the write would happen).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from sqlalchemy import event

from bench.common import ServerProcess
from playground.app.notebook import Notebook
from playground.app.service import Playground
from playground.backends.local.engine import Engine
from playground.errors import StoreBusy, StoreFull, StoreUnavailable
from playground.lanes import LaneSettings
from playground.store import BUSY_TIMEOUT_S, open_store

pytestmark = pytest.mark.timeout(400)

OWNER = "fault-owner"
LOCK_S = 3.0  # "a few seconds": well inside the busy timeout, so writes must wait it out

# A second process that takes the database's write lock, says so, holds it, and lets go.
LOCK_HOLDER = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
con.execute("CREATE TABLE IF NOT EXISTS lock_probe (x)")  # a pending write, as a real writer has
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("ROLLBACK")
print("released", flush=True)
"""


@contextmanager
def locked(db: Path, seconds: float):
    """The file's write lock held by another process for `seconds`; yields that process."""
    proc = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(db), str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        try:
            proc.wait(timeout=seconds + 30)
        finally:
            if proc.poll() is None:
                proc.kill()


def lock_is_held(db: Path) -> bool:
    """True when a writer that does not wait at all is refused: the lock is really taken."""
    con = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return True
    finally:
        con.close()


def integrity(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def finish_args(n: int = 3) -> dict:
    return dict(raw_text="abc", reasoning_text="", answer_text="abc", token_ids=list(range(n)),
                token_times=[0.1 * i for i in range(n)], token_kinds="a" * n, forced=[False] * n)


# --- the write lock held by another process --------------------------------------------------------

def test_store_writes_wait_out_another_process_holding_the_lock(tmp_path):
    db = tmp_path / "pg.db"
    store = open_store(db)
    try:
        session = store.create_session(OWNER, "locked")
        cell = store.add_cell(OWNER, session.id, prompt="before the lock")
        assert LOCK_S < BUSY_TIMEOUT_S
        with locked(db, LOCK_S) as holder:
            assert lock_is_held(db)
            # Readers are not blocked in WAL mode: the page keeps loading while another process writes.
            assert [s.id for s in store.list_sessions(OWNER)] == [session.id]
            assert holder.poll() is None  # ...and the lock was still held while we read
            # Every kind of write the app makes, each started while the lock is held: they wait and succeed.
            added = store.add_cell(OWNER, session.id, prompt="written while locked")
            run_ids = store.start_execution(OWNER, cell.id, {"standard": {}}, {"model_id": "m"})
            assert store.checkpoint_run(run_ids["standard"], **finish_args(2))
            assert store.finish_run(run_ids["standard"], status="done", prompt_tokens=5, metrics=None,
                                    finish_reason="stop", error=None, **finish_args(3))
            assert holder.stdout.readline().strip() == "released"  # it let go only after holding it
        full = store.get_session(OWNER, session.id)
        assert [c.id for c in full.cells] == [cell.id, added.id]
        run = full.cells[0].latest.runs["standard"]
        assert run.status == "done" and list(run.token_ids) == [0, 1, 2]
        assert store.integrity_ok()
    finally:
        store.close()
    assert integrity(db) == "ok"


def test_a_lock_held_past_the_busy_timeout_fails_clearly_and_the_retry_succeeds(tmp_path):
    db = tmp_path / "pg.db"
    store = open_store(db)
    try:
        session = store.create_session(OWNER, "long lock")
        with locked(db, BUSY_TIMEOUT_S + 2):
            with pytest.raises(StoreBusy) as err:
                store.add_cell(OWNER, session.id, prompt="lost?")
        message = str(err.value)
        assert str(db) in message and "locked by another connection" in message and "Try again" in message
        assert store.get_session(OWNER, session.id).cells == ()  # refused whole, not half-written
        store.add_cell(OWNER, session.id, prompt="the retry")  # the lock is gone: the same write succeeds
        assert [c.prompt for c in store.get_session(OWNER, session.id).cells] == ["the retry"]
    finally:
        store.close()
    assert integrity(db) == "ok"


def test_a_real_run_through_the_app_while_another_process_holds_the_lock(server):
    db = server.home / "playground.db"
    client = Client(server.url, verbose=False)
    prompt = "Count from one to twenty in words."
    session = client.predict("locked run", api_name="/new_session")
    cell = client.predict(session["id"], prompt, "", api_name="/add_cell")
    lanes = {"max_new_tokens": 120, "min_new_tokens": 120}
    job = client.submit(cell["id"], prompt, "", lanes, lanes, api_name="/run_cell")
    deadline = time.monotonic() + 120
    while not any((u.get("standard") or {}).get("text") for u in job.outputs()):
        assert time.monotonic() < deadline and not job.done(), "the run never streamed a token"
        time.sleep(0.05)
    # Mid-run: the next checkpoints and the final save all meet the lock.
    with locked(db, LOCK_S):
        assert lock_is_held(db)
        final = job.result(timeout=120)
    assert {final[lane]["status"] for lane in ("standard", "reasoning")} == {"done"}
    saved = client.predict(session["id"], api_name="/get_session")["cells"][0]
    assert saved["executions"] == 1
    for lane in ("standard", "reasoning"):
        assert saved["latest"][lane]["status"] == "done"
        assert saved["latest"][lane]["answer"] == final[lane]["answer"]
        assert saved["latest"][lane]["tokens"] == final[lane]["metrics"]["generated_tokens"] == 120
    assert integrity(db) == "ok"


# --- a full disk -----------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MiB filesystem (tmpfs) to fill, where this machine allows mounting one (root with
    CAP_SYS_ADMIN); the injected-error tests below cover the same behaviour everywhere else."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode}): the injected "
                    "disk-full tests cover this")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of `disk` with one file; delete it to give the space back."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == 28  # ENOSPC: the disk is full now
    try:
        while True:  # the last partial block
            os.write(fd, b"\0" * 512)
    except OSError:
        pass
    os.close(fd)
    return filler


def assert_disk_full_message(message: str) -> None:
    assert "Unexpected" not in message, message
    assert "is full" in message and "not saved" in message and "Free some space" in message, message


def test_disk_full_in_the_real_app_on_a_real_filesystem(small_disk, tmp_path, models_dir):
    db = small_disk / "playground.db"
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(models_dir)  # reuse the converted model: no second conversion
    server = ServerProcess(home, env={"PLAYGROUND_DB": str(db)})
    try:
        server.wait_ready()
        client = Client(server.url, verbose=False)
        session = client.predict("disk full", api_name="/new_session")
        cell = client.predict(session["id"], "Name a colour.", "", api_name="/add_cell")
        short = {"max_new_tokens": 8}
        first = client.predict(cell["id"], "Name a colour.", "", short, short, api_name="/run_cell")
        assert first["standard"]["status"] == "done"

        # 1) Full before the run: saving the cell's new prompt fails, nothing runs, the user is told why.
        filler = fill(small_disk)
        with pytest.raises(AppError) as err:
            client.predict(cell["id"], "Name an animal.", "", short, short, api_name="/run_cell")
        assert_disk_full_message(str(err.value))
        filler.unlink()

        # 2) Full in the middle of a run: the next checkpoint fails, the run ends, the user is told why.
        long = {"max_new_tokens": 600, "min_new_tokens": 600}
        job = client.submit(cell["id"], "Tell a long story.", "", long, long, api_name="/run_cell")
        deadline = time.monotonic() + 120
        while not any((u.get("standard") or {}).get("text") for u in job.outputs()):
            assert time.monotonic() < deadline and not job.done(), "the run never streamed a token"
            time.sleep(0.05)
        filler = fill(small_disk)
        with pytest.raises(AppError) as err:
            job.result(timeout=120)
        assert_disk_full_message(str(err.value))

        # The server keeps serving while the disk is full: health, reads, the saved state.
        assert httpx.get(server.url + "/healthz", timeout=10).json()["ok"] is True
        saved = client.predict(session["id"], api_name="/get_session")["cells"][0]
        assert saved["prompt"] == "Tell a long story." and saved["executions"] == 2
        mid = saved["latest"]
        for lane in ("standard", "reasoning"):
            # What the last checkpoint saved is kept: the run can be read back as far as it got.
            assert mid[lane]["status"] == "running" and mid[lane]["tokens"] < 600
        assert integrity(db) == "ok"

        # 3) Space is back: the next write succeeds and a run is saved whole.
        filler.unlink()
        again = client.predict(cell["id"], "Name a fruit.", "", short, short, api_name="/run_cell")
        assert again["standard"]["status"] == again["reasoning"]["status"] == "done"
        saved = client.predict(session["id"], api_name="/get_session")["cells"][0]
        assert saved["prompt"] == "Name a fruit." and saved["executions"] == 3
        assert saved["latest"]["standard"]["answer"] == again["standard"]["answer"]
    finally:
        server.stop()
    assert integrity(db) == "ok"
    # A restart recovers the run the full disk cut short, as after a crash: interrupted, tokens kept.
    with open_store(db) as store:
        assert store.mark_interrupted() == 2
        ex = store.get_session(store.owner_of_session(session["id"]), session["id"]).cells[0].executions[1]
        assert {r.status for r in ex.runs.values()} == {"interrupted"}


# --- the same, injected (any machine) ----------------------------------------------------------------

@pytest.fixture(scope="module")
def pg(loaded_nf4):
    p = Playground()
    p.loaded, p.backend = loaded_nf4, Engine(loaded_nf4)
    return p


@contextmanager
def disk_full(store, statement_prefix: str = ""):
    """Every write statement (or those starting with `statement_prefix`) fails as SQLite fails when
    the disk is full, until the block ends and "space returns"."""
    hits = []

    def refuse(_conn, _cursor, statement, _params, _context, _many):
        words = statement.lstrip().upper()
        if words.startswith(("INSERT", "UPDATE", "DELETE")) and words.startswith(statement_prefix.upper()):
            hits.append(statement)
            raise sqlite3.OperationalError("database or disk is full")

    event.listen(store.engine, "before_cursor_execute", refuse)
    try:
        yield hits
    finally:
        event.remove(store.engine, "before_cursor_execute", refuse)


def test_disk_full_injected_at_the_start_of_a_run(pg, tmp_path):
    db = tmp_path / "nb.db"
    with open_store(db) as store:
        nb = Notebook(pg, store)
        session = store.create_session(OWNER, "t")
        cell = store.add_cell(OWNER, session.id, prompt="Name a colour.")
        lanes = {"standard": LaneSettings(max_new_tokens=8), "reasoning": LaneSettings(max_new_tokens=8)}
        with disk_full(store) as hits, pytest.raises(StoreFull) as err:
            list(nb.run_cell(OWNER, cell.id, "k", "Name an animal.", None, lanes))
        assert hits and store.integrity_ok()
        assert_disk_full_message(str(err.value))
        saved = store.get_session(OWNER, session.id).cells[0]
        assert saved.prompt == "Name a colour." and saved.executions == ()  # nothing half-saved
        list(nb.run_cell(OWNER, cell.id, "k", "Name an animal.", None, lanes))  # space is back
        saved = store.get_session(OWNER, session.id).cells[0]
        assert saved.prompt == "Name an animal." and {r.status for r in saved.latest.runs.values()} == {"done"}
    assert integrity(db) == "ok"


def test_disk_full_injected_mid_run_keeps_the_last_checkpoint(pg, tmp_path):
    db = tmp_path / "nb.db"
    with open_store(db) as store:
        nb = Notebook(pg, store)
        session = store.create_session(OWNER, "t")
        cell = store.add_cell(OWNER, session.id, prompt="Tell a long story.")
        long = {lane: LaneSettings(max_new_tokens=400, min_new_tokens=400) for lane in ("standard", "reasoning")}
        stream = nb.run_cell(OWNER, cell.id, "k", "Tell a long story.", None, long)
        checkpointed = 0
        with pytest.raises(StoreFull) as err:
            for _views, _run in stream:
                runs = store.get_session(OWNER, session.id).cells[0].latest.runs
                # Each lane checkpoints in a transaction of its own: wait until both have one on disk.
                checkpointed = min(r.generated_tokens for r in runs.values())
                if checkpointed:  # a checkpoint of every lane is on disk: now the disk fills up
                    with disk_full(store, "UPDATE runs"):
                        for _ in stream:
                            pass
        assert_disk_full_message(str(err.value))
        assert store.integrity_ok()
        runs = store.get_session(OWNER, session.id).cells[0].latest.runs
        for r in runs.values():  # the last checkpoint, whole: text and token arrays agree
            assert r.status == "running" and 0 < r.generated_tokens < 400
            assert len(r.token_ids) == len(r.token_times) == r.generated_tokens and r.raw_text
        assert pg.backend.lock.acquire(timeout=30)  # the generation was stopped, not left running
        pg.backend.lock.release()
        # Space is back: the next write succeeds, and a restart's recovery marks the cut run interrupted.
        assert store.mark_interrupted() == 2
        assert {r.status for r in store.get_session(OWNER, session.id).cells[0].latest.runs.values()} == {
            "interrupted"}
    assert integrity(db) == "ok"


def test_a_lock_held_past_the_busy_timeout_mid_run_costs_checkpoints_not_the_run(pg, tmp_path):
    """Checkpoints that meet a lock longer than BUSY_TIMEOUT_S are skipped; the run finishes and is saved whole."""
    db = tmp_path / "nb.db"
    with open_store(db) as store:
        nb = Notebook(pg, store)
        session = store.create_session(OWNER, "t")
        cell = store.add_cell(OWNER, session.id, prompt="Tell a long story.")
        long = {lane: LaneSettings(max_new_tokens=300, min_new_tokens=300) for lane in ("standard", "reasoning")}
        stream = nb.run_cell(OWNER, cell.id, "k", "Tell a long story.", None, long)
        run = None
        for _views, run in stream:
            if any(r.token_ids for r in run.results.values()):
                break
        with locked(db, BUSY_TIMEOUT_S + 2):
            for _views, run in stream:  # the checkpoints now wait out the busy timeout and give up
                if run.finished:
                    break
        for _ in stream:
            pass
        saved = store.get_session(OWNER, session.id).cells[0].latest.runs
        for lane, r in saved.items():
            assert r.status == "done" and r.generated_tokens == len(run.results[lane].token_ids) == 300
    assert integrity(db) == "ok"


# --- the same faults on PostgreSQL -------------------------------------------------------------------

# A second process that locks one session's row (as a writer to it does), says so, holds it, lets go.
ROW_LOCK_HOLDER = """
import sys, time
import psycopg
with psycopg.connect(sys.argv[1]) as con:
    con.execute("SELECT id FROM sessions WHERE id = %s FOR UPDATE", (sys.argv[2],))
    print("locked", flush=True)
    time.sleep(float(sys.argv[3]))
    con.rollback()
print("released", flush=True)
"""


@contextmanager
def row_locked(url: str, session_id: str, seconds: float):
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    proc = subprocess.Popen([sys.executable, "-c", ROW_LOCK_HOLDER, dsn, session_id, str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        try:
            proc.wait(timeout=seconds + 30)
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.mark.postgres
def test_postgres_writes_wait_out_a_row_lock_and_fail_clearly_past_the_busy_timeout(postgres_cluster):
    url = postgres_cluster.fresh_database("faults_lock")
    with open_store(url) as store:
        session = store.create_session(OWNER, "locked")
        other = store.create_session(OWNER, "not locked")
        cell = store.add_cell(OWNER, session.id, prompt="before the lock")
        with row_locked(url, session.id, LOCK_S) as holder:
            # Another session's writes and every read go on: the lock is one row, not the database.
            store.add_cell(OWNER, other.id, prompt="elsewhere")
            assert len(store.list_sessions(OWNER)) == 2 and holder.poll() is None
            added = store.add_cell(OWNER, session.id, prompt="written while locked")  # waits, then lands
            run_ids = store.start_execution(OWNER, cell.id, {"standard": {}}, {"model_id": "m"})
            assert store.finish_run(run_ids["standard"], status="done", prompt_tokens=5, metrics=None,
                                    finish_reason="stop", error=None, **finish_args(3))
            assert holder.stdout.readline().strip() == "released"
        assert [c.id for c in store.get_session(OWNER, session.id).cells] == [cell.id, added.id]
        with row_locked(url, session.id, BUSY_TIMEOUT_S + 2):
            with pytest.raises(StoreBusy) as err:
                store.add_cell(OWNER, session.id, prompt="lost?")
        message = str(err.value)
        assert "too busy" in message and "Try again" in message and "pg_stat_activity" in message
        assert len(store.get_session(OWNER, session.id).cells) == 2  # refused whole
        store.add_cell(OWNER, session.id, prompt="the retry")
        assert [c.prompt for c in store.get_session(OWNER, session.id).cells][-1] == "the retry"
        assert store.integrity_ok()


@pytest.fixture(scope="module")
def fault_cluster():
    """A PostgreSQL of its own for faults that would disturb other tests (a stopped server)."""
    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture
def disk_cluster():
    """A PostgreSQL for one test alone: a tablespace on a tmpfs that is unmounted after the test would
    break any later restart of a shared cluster (its WAL redo needs the tablespace's folder)."""
    with throwaway_cluster() as cluster:
        yield cluster


def throwaway_cluster():
    from bench.pgcluster import PostgresCluster, pg_bin

    if pg_bin() is None:
        pytest.skip("PostgreSQL is not installed: run `apt-get install postgresql` (.ci/run does it)")
    return PostgresCluster()


@pytest.fixture
def small_pg_disk():
    """small_disk's 8 MiB tmpfs, but where the cluster's user can reach it (pytest's folders are 0700)."""
    import pwd
    import shutil
    import tempfile

    mount = Path(tempfile.mkdtemp(prefix="playground-pgdisk-", dir="/tmp"))
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        shutil.rmtree(mount, ignore_errors=True)
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode})")
    try:
        space = mount / "pgspace"
        space.mkdir()
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(space, user.pw_uid, user.pw_gid)
        yield mount, space
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(mount, ignore_errors=True)


@pytest.mark.postgres
def test_postgres_disk_full_under_a_real_tablespace(small_pg_disk, disk_cluster):  # the cluster ends first
    fault_cluster = disk_cluster
    # The database lives on the 8 MiB tmpfs (a tablespace there); the WAL stays on the big disk.
    small_disk, space = small_pg_disk
    fault_cluster.sql(f"CREATE TABLESPACE small LOCATION '{space}'", database="postgres")
    fault_cluster.sql("CREATE DATABASE full_disk TABLESPACE small", database="postgres")
    url = fault_cluster.url.rsplit("/", 1)[0] + "/full_disk"
    with open_store(url) as store:
        session = store.create_session(OWNER, "full")
        cell = store.add_cell(OWNER, session.id, prompt="p")
        run_id = store.start_execution(OWNER, cell.id, {"standard": {}}, {"model_id": "m"})["standard"]
        filler = fill(small_disk)
        big = dict(finish_args(3), raw_text=os.urandom(4_000_000).hex())  # needs pages the disk cannot give
        with pytest.raises(StoreFull) as err:
            store.checkpoint_run(run_id, **big)
        message = str(err.value)
        assert "is full" in message and "not saved" in message and "Free space" in message
        assert store.get_session(OWNER, session.id).cells[0].latest.runs["standard"].generated_tokens == 0
        filler.unlink()
        assert store.checkpoint_run(run_id, **dict(finish_args(3), raw_text="fits now"))
        assert store.get_session(OWNER, session.id).cells[0].latest.runs["standard"].raw_text == "fits now"
        assert store.integrity_ok()


@pytest.mark.postgres
def test_postgres_stopped_and_restarted_under_a_live_store(fault_cluster):
    url = fault_cluster.fresh_database("faults_restart")
    with open_store(url) as store:
        session = store.create_session(OWNER, "outage")
        fault_cluster.stop_server()
        try:
            with pytest.raises(StoreUnavailable) as err:
                store.add_cell(OWNER, session.id, prompt="while down")
            assert "PostgreSQL is running" in str(err.value) and "PLAYGROUND_DB_URL" in str(err.value)
        finally:
            fault_cluster.start_server()
        # The pool's dead connections are noticed and replaced: the next call simply works.
        store.add_cell(OWNER, session.id, prompt="after the restart")
        assert [c.prompt for c in store.get_session(OWNER, session.id).cells] == ["after the restart"]
