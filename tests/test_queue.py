"""The run queue of the real server: visitors wait their turn in order, see their place, and can
leave the queue before their run starts without touching the run in progress.

Four visitors (four gradio_client connections, so four distinct owners) on the `server` fixture,
which runs one generation at a time (max_concurrent_runs=1): A runs a long cell; B, C and D queue
behind it in that order; C cancels while waiting. What happened is read back from the server's
database: who ran, when, and who never did.
"""

from __future__ import annotations

import time

import pytest
from gradio_client import Client
from gradio_client.utils import Status

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


def test_waiting_visitors_are_served_in_order_and_can_leave_the_queue(server):
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
