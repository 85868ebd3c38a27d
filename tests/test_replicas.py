"""Several replicas on one database: each owns its runs, a live one marks a dead one's runs interrupted
by its lease, and two real app replicas on one real PostgreSQL serve the same sessions."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import httpx
import pytest

from bench.common import ServerProcess
from bench.pgcluster import wait_for
from playground.errors import InvalidInput
from playground.store import ReplicaLease, open_store
from playground.store.models import utcnow
from playground.store.replicas import beat, leave, live_replicas, reap_dead

LANES = {"standard": {}, "reasoning": {}}
LEASE_S = 30.0


def running_cell(store, owner="me"):
    sid = store.create_session(owner).id
    cid = store.add_cell(owner, sid, prompt="p").id
    return sid, store.start_execution(owner, cid, LANES, {"model_id": "m"})


def statuses(store, sid, owner="me"):
    return {lane: r.status for lane, r in store.get_session(owner, sid).cells[0].latest.runs.items()}


def test_a_live_replica_marks_only_a_dead_ones_runs_interrupted(db_target):
    with open_store(db_target, replica="a") as a, open_store(db_target, replica="b") as b:
        beat(a.engine, "a", now=utcnow() - timedelta(seconds=LEASE_S + 1))  # a's last beat: past the lease
        beat(b.engine, "b")
        sid_a, runs_a = running_cell(a)
        sid_b, _ = running_cell(b)
        a.checkpoint_run(runs_a["reasoning"], raw_text="xy", reasoning_text="xy", answer_text="", token_ids=[1, 2],
                         token_times=[0.1, 0.2], token_kinds="rr", forced="00")
        assert live_replicas(b.engine, LEASE_S) == ["b"]
        assert reap_dead(b.engine, LEASE_S) == 2 and reap_dead(b.engine, LEASE_S) == 0
        assert statuses(b, sid_a) == {"standard": "interrupted", "reasoning": "interrupted"}
        assert statuses(b, sid_b) == {"standard": "running", "reasoning": "running"}  # b's own: live
        kept = b.get_session("me", sid_a).cells[0].latest.runs["reasoning"]
        assert kept.token_ids == [1, 2] and kept.finished_at == kept.updated_at  # the checkpoint's tokens, kept
        assert b.checkpoint_run(runs_a["standard"], raw_text="", reasoning_text="", answer_text="", token_ids=[],
                                token_times=[], token_kinds="", forced="") is False  # a late write is refused


def test_runs_of_an_unknown_replica_are_reaped_and_runs_of_none_are_left(db_target):
    with open_store(db_target, replica="ghost") as ghost, open_store(db_target) as plain:
        sid_ghost, _ = running_cell(ghost)  # never beat: no row in replicas
        sid_plain, _ = running_cell(plain)  # no replica at all (a tool, or a run from before 0004)
        assert reap_dead(plain.engine, LEASE_S) == 2
        assert set(statuses(plain, sid_ghost).values()) == {"interrupted"}
        assert set(statuses(plain, sid_plain).values()) == {"running"}
        # A replica restarting under its name marks its own earlier runs; everyone's, with no name.
        sid_again, _ = running_cell(ghost)
        assert ghost.mark_interrupted(replica="ghost") == 2 and plain.mark_interrupted(replica="ghost") == 0
        assert set(statuses(ghost, sid_again).values()) == {"interrupted"}
        assert plain.mark_interrupted() == 2


def test_the_lease_beats_on_its_own_and_leaves_cleanly(db_target):
    with open_store(db_target, replica="beating") as store:
        lease = ReplicaLease(store.engine, "beating", lease_s=2.0)  # a beat every 1/3 s
        assert lease.start() == 0
        try:
            assert live_replicas(store.engine, 2.0) == ["beating"]
            time.sleep(2.5)  # longer than the lease: only the heartbeat keeps it alive
            assert live_replicas(store.engine, 2.0) == ["beating"]
            with open_store(db_target, replica="other") as other:
                sid, _ = running_cell(store)
                assert reap_dead(other.engine, 2.0) == 0 and set(statuses(other, sid).values()) == {"running"}
        finally:
            lease.stop()
        assert live_replicas(store.engine, 2.0) == []
        leave(store.engine, "beating")  # leaving twice is harmless
    with pytest.raises(InvalidInput, match="REPLICA_ID_CHARS"):
        ReplicaLease(store.engine, "x" * 101, lease_s=30)


# --- two real replicas of the app on one real PostgreSQL ---------------------------------------------

SECRET = "replica-test-secret-" + "0" * 40
REPLICA_LEASE_S = 3  # short, so the test sees a dead replica's runs marked within seconds


@pytest.fixture
def replicas(postgres_cluster, models_dir, tmp_path):
    url = postgres_cluster.fresh_database("two_replicas")
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(models_dir, target_is_directory=True)
    # bf16 (quant none): two replicas quantizing to NF4 at once is the slow part of starting them here.
    env = {"PLAYGROUND_DB_URL": url, "PLAYGROUND_SECRET": SECRET, "PLAYGROUND_FETCH_EMBEDDED": "0",
           "PLAYGROUND_REPLICA_LEASE_S": str(REPLICA_LEASE_S), "PLAYGROUND_QUANT": "none"}
    pair = [ServerProcess(home, env={**env, "PLAYGROUND_REPLICA_ID": name}) for name in ("web-1", "web-2")]
    try:
        for srv in pair:
            srv.wait_ready(timeout=600)  # both load the model at once: slow on a busy 2-core box
        yield url, pair
    finally:
        for srv in pair:
            if srv.proc.poll() is None:
                srv.stop()


def owner_cookie(url: str) -> str:
    page = httpx.get(url + "/", timeout=30)
    return f"pg_owner={page.cookies['pg_owner']}"


@pytest.mark.postgres
@pytest.mark.timeout(1200)  # two servers start on 2 cores
def test_two_replicas_share_sessions_and_a_killed_one_leaves_its_run_interrupted(replicas):
    from gradio_client import Client

    url, (one, two) = replicas
    for srv, name in ((one, "web-1"), (two, "web-2")):
        health = httpx.get(srv.url + "/healthz", timeout=10)
        assert health.json()["replica"] == name and health.json()["database"] == "postgresql"
        assert health.headers["x-playground-replica"] == name
    cookie = owner_cookie(one.url)  # one browser; the proxy may send it to either replica
    c1 = Client(one.url, headers={"Cookie": cookie}, verbose=False)
    c2 = Client(two.url, headers={"Cookie": cookie}, verbose=False)
    session = c1.predict("Made on web-1", api_name="/new_session")
    cell = c1.predict(session["id"], "What is 2 + 2?", "", api_name="/add_cell")
    # Saved through one: listed, run and shared through the other.
    assert session["id"] in [s["id"] for s in c2.predict("", api_name="/sessions")]
    short = {"max_new_tokens": 6}
    done = c2.predict(cell["id"], "What is 2 + 2?", "", short, short, api_name="/run_cell")
    assert done["standard"]["status"] == done["reasoning"]["status"] == "done"
    saved = c1.predict(session["id"], api_name="/get_session")["cells"][0]
    assert saved["latest"]["standard"]["answer"] == done["standard"]["answer"]
    share = httpx.post(f"{two.url}/api/sessions/{session['id']}/share", headers={"Cookie": cookie}, timeout=30)
    assert share.status_code == 200, share.text
    page = httpx.get(one.url + share.json()["url"], timeout=30)
    assert page.status_code == 200 and "Made on web-1" in page.text

    # web-1 dies (SIGKILL, mid-run): its run ends up interrupted, and web-2 serves on.
    long = {"max_new_tokens": 400, "min_new_tokens": 400}
    job = c1.submit(cell["id"], "Tell a long story.", "", long, long, api_name="/run_cell")

    def checkpointed():  # the second execution exists and web-1 has saved some of its tokens
        saved = c2.predict(session["id"], api_name="/get_session")["cells"][0]
        return saved["executions"] == 2 and saved["latest"]["standard"]["tokens"] > 0

    wait_for(checkpointed, 300, "web-1 checkpointing its run", poll_s=0.5)
    assert not job.done()
    os.kill(one.proc.pid, signal.SIGKILL)
    one.proc.wait(timeout=30)

    def interrupted():
        latest = c2.predict(session["id"], api_name="/get_session")["cells"][0]["latest"]
        return all(latest[lane]["status"] == "interrupted" for lane in ("standard", "reasoning")) and latest

    latest = wait_for(interrupted, REPLICA_LEASE_S * 20, "web-2 marking web-1's run interrupted", poll_s=0.5)
    assert 0 < latest["standard"]["tokens"] < 400  # what web-1 checkpointed is kept
    again = c2.predict(cell["id"], "What is 3 + 3?", "", short, short, api_name="/run_cell")
    assert again["standard"]["status"] == "done"
    assert httpx.get(two.url + "/healthz", timeout=10).json()["ok"] is True
    assert "Traceback" not in two.log_path.read_text()
