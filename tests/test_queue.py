"""The run queue of the real server: visitors wait their turn in order, see their place, and can
leave the queue before their run starts without touching the run in progress (over the API with
job.cancel(); in the page with Stop, which cancels a run still waiting for its turn).

Four visitors (four gradio_client connections, so four distinct owners) on `queue_server`, which
runs one run at a time (PLAYGROUND_MAX_CONCURRENT_RUNS=1), so the queue fills as it does when every
place of a larger server is taken: A runs a long cell; B, C and D queue behind it in that order; C
cancels while waiting. What happened is read back from the server's database: who ran, when, and
who never did. At the shipped default ("auto") a visitor who arrives during a long run does not
queue at all: the last test, on the `server` fixture.
"""

from __future__ import annotations

import time

import pytest
from gradio_client import Client
from gradio_client.utils import Status

from bench.common import ServerProcess
from playground.store import open_store

pytestmark = pytest.mark.timeout(300)

LONG = {"max_new_tokens": 160, "min_new_tokens": 160}
SHORT = {"max_new_tokens": 8}


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Visitor:
    def __init__(self, server, name: str, prompt: str):
        self.client = Client(server.url, verbose=False)
        self.prompt = prompt
        self.session = self.client.predict(f"queue {name}", api_name="/new_session")["id"]
        self.cell = self.client.predict(self.session, prompt, "", api_name="/add_cell")["id"]
        self.job = None

    def submit(self, lanes: dict):
        self.job = self.client.submit(self.cell, self.prompt, "", lanes, lanes, api_name="/run_cell")
        return self.job

    def place(self) -> int | None:
        """The visitor's place in the queue as the server last told it (0 = next), or None."""
        st = self.job.status()
        return st.rank if st.code == Status.IN_QUEUE else None


def one_run_at_a_time(home, models_dir):
    (home / "models").symlink_to(models_dir, target_is_directory=True)
    srv = ServerProcess(home, env={"PLAYGROUND_MAX_CONCURRENT_RUNS": "1", "PLAYGROUND_FETCH_EMBEDDED": "0"})
    srv.wait_ready(timeout=600)
    return srv


@pytest.fixture(scope="module")
def queue_server(models_dir, tmp_path_factory):
    srv = one_run_at_a_time(tmp_path_factory.mktemp("queue-home"), models_dir)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def fresh_queue_server(models_dir, tmp_path):
    """A server of its own: after an earlier page test on the shared one, a Stop pressed while waiting
    was seen to miss the queued run on CI; this test asserts the cancel on a server nothing else used."""
    srv = one_run_at_a_time(tmp_path, models_dir)
    try:
        yield srv
    finally:
        srv.stop()


def test_waiting_visitors_are_served_in_order_and_can_leave_the_queue(queue_server):
    server = queue_server
    a, b, c, d = (Visitor(server, n, f"Visitor {n}: tell a story about the number {i}.")
                  for i, n in enumerate("ABCD"))
    a.submit(LONG)
    wait_for(lambda: any((u.get("standard") or {}).get("text") for u in a.job.outputs()), 120, "A's first tokens")
    # B, C, D queue behind A in that order; each is told its place, and the places follow the order.
    places = {}
    for v in (b, c, d):
        v.submit(SHORT)
        places[v] = wait_for(lambda v=v: (v.place(),) if v.place() is not None else None, 30,
                             "a place in the queue")[0]
    assert [places[v] for v in (b, c, d)] == [0, 1, 2], places
    assert not a.job.done()  # all of this happened while A's run was in progress

    # C leaves the queue before its turn.
    assert c.job.cancel()
    wait_for(c.job.done, 30, "C's cancelled job to end")
    assert c.job.outputs() == []  # not a single update: the run never started

    final_a = a.job.result(timeout=180)
    final_b = b.job.result(timeout=180)
    final_d = d.job.result(timeout=180)
    for final, n in ((final_a, 160), (final_b, None), (final_d, None)):
        assert {final[lane]["status"] for lane in ("standard", "reasoning")} == {"done"}
        if n:  # A's run was not disturbed by the queue moving behind it: every token it asked for
            assert final["standard"]["metrics"]["generated_tokens"] == n

    with open_store(server.home / "playground.db") as store:
        def runs_of(v):
            cell = store.get_session(store.owner_of_session(v.session), v.session).cells[0]
            return [r for ex in cell.executions for r in ex.runs.values()]

        ran = {v: runs_of(v) for v in (a, b, d)}
        # C never ran: no run rows at all (nothing was generated, so there is nothing to keep).
        assert runs_of(c) == []
        for runs in ran.values():
            assert len(runs) == 2 and {r.status for r in runs} == {"done"}
        # One at a time, in the order they came: B started after A finished, D after B.
        assert min(r.started_at for r in ran[b]) >= max(r.finished_at for r in ran[a])
        assert min(r.started_at for r in ran[d]) >= max(r.finished_at for r in ran[b])
        assert ran[a][0].generated_tokens == 160  # the saved run is whole too


# --- the same in the page --------------------------------------------------------------------------

def long_run_in_progress(server):
    """Visitor A (an API client) holds the model with a long run; returns (client, cell id, job)."""
    a = Visitor(server, "A", "Tell a long story about the sea.")
    a.submit({"max_new_tokens": 1500, "min_new_tokens": 1500})
    wait_for(lambda: any((u.get("standard") or {}).get("text") for u in a.job.outputs()), 120, "A's first tokens")
    return a


def page_of_new_visitor(browser, server, store):
    """Visitor B in Chromium with its own owner cookie and one short prompt cell; returns (context, page, ids)."""
    from playground.web.identity import COOKIE_NAME, load_secret, new_owner_id, sign

    owner = new_owner_id()
    session = store.create_session(owner, "waiting in the page")
    short = {"standard": {"max_new_tokens": 8}, "reasoning": {"max_new_tokens": 8}}
    cell = store.add_cell(owner, session.id, prompt="Name a colour.", settings=short)
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    context.add_cookies([{"name": COOKIE_NAME, "value": sign(owner, load_secret(server.home)), "url": server.url}])
    page = context.new_page()
    page.goto(f"{server.url}/?session={session.id}")
    page.wait_for_selector(".prompt-cell .run-btn", timeout=60_000)
    return context, page, (owner, session.id, cell.id)


@pytest.fixture
def server_store(queue_server):
    with open_store(queue_server.home / "playground.db") as s:
        yield s


def executions(store, ids) -> int:
    owner, session_id, _cell = ids
    return len(store.get_session(owner, session_id).cells[0].executions)


def test_the_page_shows_a_waiting_visitor_their_place_and_then_runs(browser, queue_server, server_store):
    server = queue_server
    a = long_run_in_progress(server)
    context, page, ids = page_of_new_visitor(browser, server, server_store)
    try:
        cell = page.locator(".prompt-cell").first
        cell.locator(".run-btn").click()
        # gradio's queue line on the lane's status: "queue: 1/1 | 2.1s" (place / people waiting).
        page.wait_for_function("el => /queue: 1\\/1/.test(el.innerText)",
                               arg=cell.locator(".lane-standard").first.element_handle(), timeout=30_000)
        assert executions(server_store, ids) == 0  # still waiting: nothing of B's has run
        a.client.predict(a.cell, api_name="/stop_cell")
        assert a.job.result(timeout=60)["standard"]["status"] == "stopped"
        page.wait_for_function("el => /done/.test(el.innerText)",
                               arg=cell.locator(".lane-standard .prose.lane-status").element_handle(), timeout=120_000)
        assert executions(server_store, ids) == 1
    finally:
        a.client.predict(a.cell, api_name="/stop_cell")
        context.close()


def test_stop_in_the_page_while_waiting_cancels_the_queued_run(browser, fresh_queue_server):
    server = fresh_queue_server
    with open_store(server.home / "playground.db") as server_store:
        stop_while_waiting(browser, server, server_store)


def stop_while_waiting(browser, server, server_store):
    a = long_run_in_progress(server)
    context, page, ids = page_of_new_visitor(browser, server, server_store)
    cell = page.locator(".prompt-cell").first
    try:
        cell.locator(".run-btn").click()
        page.wait_for_function("el => /queue:/.test(el.innerText)",
                               arg=cell.locator(".lane-standard").first.element_handle(), timeout=30_000)
        cell.locator(".stop-btn").click()
        page.wait_for_timeout(1000)
        a.client.predict(a.cell, api_name="/stop_cell")
        a.job.result(timeout=60)
        page.wait_for_timeout(5000)  # B's turn has come and gone
        assert executions(server_store, ids) == 0
    finally:
        a.client.predict(a.cell, api_name="/stop_cell")
        cell.locator(".stop-btn").click()
        context.close()


def test_at_the_shipped_default_a_visitor_arriving_during_a_long_run_does_not_wait_for_it(server):
    a = long_run_in_progress(server)
    try:
        b = Visitor(server, "B", "Name a colour.")
        final_b = b.submit(SHORT).result(timeout=120)
        assert {final_b[lane]["status"] for lane in ("standard", "reasoning")} == {"done"}
        assert not a.job.done()  # B ran to the end while A's 1,500 tokens were still coming
    finally:
        a.client.predict(a.cell, api_name="/stop_cell")
    assert a.job.result(timeout=60)["standard"]["status"] == "stopped"


def test_the_idle_queue_sleeps_between_looks_instead_of_spinning():
    """gradio's queue looks for new events every 1 ms and for progress every 10 ms, even with nothing
    to do, which costs the generate thread on a small machine. enable_queue slows both loops down;
    counted here over half a second of gradio's own loops (upper bounds: a slow machine counts fewer)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor
    from unittest import mock

    import gradio as gr
    from gradio import queueing

    from playground.ui.app import PROGRESS_POLL_S, QUEUE_POLL_S, enable_queue

    with gr.Blocks() as demo:
        gr.Markdown("idle")
    enable_queue(demo, concurrency=1, max_size=8)
    queue = demo._queue
    real_sleep = asyncio.sleep
    naps: list[float] = []

    class CountingAsyncio:
        """gradio's queueing module sees this as `asyncio`: its sleeps are counted, the rest is asyncio."""

        def __getattr__(self, name):
            return getattr(asyncio, name)

        @staticmethod
        async def sleep(delay, *args, **kwargs):
            naps.append(delay)
            await real_sleep(delay, *args, **kwargs)

    async def idle_for(seconds: float):
        with mock.patch.object(queueing, "asyncio", CountingAsyncio()):
            loops = [asyncio.create_task(queue.start_processing()), asyncio.create_task(queue.start_progress_updates())]
            await real_sleep(seconds)
            queue.stopped = True
            await asyncio.wait(loops, timeout=2)

    # In a thread of its own: other tests' clients may leave an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, idle_for(0.5)).result(timeout=30)
    assert queue.max_size == 8
    assert naps and set(naps) <= {QUEUE_POLL_S, PROGRESS_POLL_S}, set(naps)
    assert len(naps) <= 0.5 / QUEUE_POLL_S + 0.5 / PROGRESS_POLL_S + 4, len(naps)
