"""Access rules over HTTP: login where it is on, share pages without it, per-visitor run limits."""

from __future__ import annotations

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from bench.common import ServerProcess
from playground.app.service import Playground
from playground.backends.local.engine import Engine
from playground.config import Settings
from playground.errors import InvalidInput
from playground.lanes import LaneSettings


@pytest.fixture(scope="module")
def login_server(tmp_path_factory, models_dir):
    home = tmp_path_factory.mktemp("login-home")
    (home / "models").symlink_to(models_dir)
    srv = ServerProcess(home, env={"PLAYGROUND_AUTH": "ann:pw-ann,bob:pw-bob"})
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_login_is_required_for_the_app_but_not_for_health_or_share_pages(login_server):
    url = login_server.url
    # The page shell loads (it draws the login form); everything the app serves is behind the login.
    for path in ("/config", "/gradio_api/info"):
        assert httpx.get(url + path).status_code == 401
    with httpx.Client(base_url=url) as browser:
        assert browser.post("/login", data={"username": "ann", "password": "pw-ann"}).status_code == 200
        assert browser.get("/config").status_code == 200
    with pytest.raises(ValueError):
        Client(url, verbose=False)  # an API client without credentials cannot even connect
    assert httpx.get(url + "/healthz").json()["ok"] is True
    assert httpx.get(url + "/s/" + "x" * 43).status_code == 404  # share routes answer without login
    # Everything else stays behind the login, the plain routes included.
    assert httpx.post(url + "/api/import", json={}).status_code == 401
    assert httpx.get(url + "/api/sessions/abc/export").status_code == 401
    assert httpx.post(url + "/s/" + "x" * 43 + "/fork").status_code == 401


def test_with_login_a_shared_page_is_still_readable_without_login(login_server):
    ann = Client(login_server.url, auth=("ann", "pw-ann"), verbose=False)
    session = ann.predict("shared notes", api_name="/new_session")
    ann.predict(session["id"], "A prompt anyone with the link may read.", "", api_name="/add_cell")
    from playground.sharing.schema import new_share_token
    from playground.store import open_store

    token = new_share_token()
    with open_store(login_server.home / "playground.db") as store:
        store.create_share("user:ann", session["id"], token)
    page = httpx.get(f"{login_server.url}/s/{token}")
    assert page.status_code == 200 and "anyone with the link may read" in page.text


def test_wrong_password_is_refused(login_server):
    response = httpx.post(login_server.url + "/login", data={"username": "ann", "password": "nope"})
    assert response.status_code == 400 and "Incorrect credentials" in response.text


def test_with_login_sessions_belong_to_the_user_not_the_browser(login_server):
    ann1 = Client(login_server.url, auth=("ann", "pw-ann"), verbose=False)
    ann2 = Client(login_server.url, auth=("ann", "pw-ann"), verbose=False)  # another browser, same user
    bob = Client(login_server.url, auth=("bob", "pw-bob"), verbose=False)
    session = ann1.predict("ann's notes", api_name="/new_session")
    assert any(s["id"] == session["id"] for s in ann2.predict("", api_name="/sessions"))
    assert all(s["id"] != session["id"] for s in bob.predict("", api_name="/sessions"))
    with pytest.raises(AppError):
        bob.predict(session["id"], api_name="/get_session")


def test_runs_per_visitor_are_limited_server_side(loaded_nf4, tmp_path):
    pg = Playground(Settings(runs_per_visitor_per_hour=2, home=tmp_path))
    pg.loaded, pg.backend = loaded_nf4, Engine(loaded_nf4)
    lanes = {"standard": LaneSettings(max_new_tokens=2)}
    for i in range(2):
        pg.start_run(f"k{i}", "hi", None, lanes, owner="visitor-a").collect()
    with pytest.raises(InvalidInput) as err:
        pg.start_run("k3", "hi", None, lanes, owner="visitor-a")
    assert "runs_per_visitor_per_hour" in str(err.value)
    pg.start_run("k4", "hi", None, lanes, owner="visitor-b").collect()  # others are not affected


@pytest.fixture
def one_run_at_a_time(tmp_path, models_dir):
    """A server that admits one run at a time, so a second visitor really waits in the queue (at the
    shipped `auto` the step scheduler lets both runs share decode steps and nobody queues)."""
    (tmp_path / "models").symlink_to(models_dir)
    srv = ServerProcess(tmp_path, env={"PLAYGROUND_MAX_CONCURRENT_RUNS": "1"})
    try:
        srv.wait_ready(timeout=600)
        yield srv
    finally:
        srv.stop()


def test_a_waiting_visitor_sees_their_place_in_the_queue(one_run_at_a_time):
    from gradio_client.utils import Status

    server = one_run_at_a_time

    first, second = Client(server.url, verbose=False), Client(server.url, verbose=False)
    long = {"max_new_tokens": 400, "min_new_tokens": 400}
    jobs = []
    for client in (first, second):
        session = client.predict("queue", api_name="/new_session")
        cell = client.predict(session["id"], "Tell a long story.", "", api_name="/add_cell")
        jobs.append((client, cell["id"], client.submit(cell["id"], "Tell a long story.", "", long, long,
                                                       api_name="/run_cell")))
    import time

    deadline, ranks = time.time() + 60, []
    while time.time() < deadline and not ranks:
        st = jobs[1][2].status()
        if st.code == Status.IN_QUEUE and st.rank is not None:
            ranks.append(st.rank)
        time.sleep(0.1)
    # Stop both until both end: the second may still be queued on the first Stop (a queued API call
    # has no run to stop yet), so keep stopping it once its turn comes instead of waiting out 800 tokens.
    deadline = time.time() + 120
    while time.time() < deadline and not all(job.done() for _c, _id, job in jobs):
        for client, cell_id, job in jobs:
            if not job.done():
                client.predict(cell_id, api_name="/stop_cell")
        time.sleep(0.5)
    for _client, _cell, job in jobs:
        job.result(timeout=5)
    assert ranks and ranks[0] >= 0  # the second visitor waited behind the first and was told where
