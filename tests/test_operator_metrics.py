"""/metrics for operators: counters that move with real runs, on the real store and the real server."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from playground.errors import StoreBusy
from playground.store import open_store
from playground.web.metrics import Telemetry


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} from the exposition text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scrape: dict, name: str, **labels) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


def payload(n: int) -> dict:
    return dict(raw_text="a" * n, reasoning_text="", answer_text="a" * n, token_ids=list(range(n)),
                token_times=[0.2 + 0.1 * i for i in range(n)], token_kinds="a" * n, forced="0" * n)


def test_the_store_moves_the_counters(db_target):
    telemetry = Telemetry("r1")
    with open_store(db_target, replica="r1") as store:
        store.listener = telemetry
        sid = store.create_session("me").id
        cid = store.add_cell("me", sid, prompt="p").id
        runs = store.start_execution("me", cid, {"standard": {}, "reasoning": {}}, {"backend": "local"})
        telemetry.watch(lambda: 3, lambda: 1, lambda: store.running_count("r1"))
        assert store.checkpoint_run(runs["reasoning"], **payload(4))
        assert store.checkpoint_run(runs["reasoning"], **payload(9))
        mid = samples(telemetry.render()[0].decode())
        assert value(mid, "playground_runs_started_total", backend="local", lane="standard") == 1
        assert value(mid, "playground_tokens_generated_total", lane="reasoning") == 9  # deltas, not sums
        assert value(mid, "playground_active_rows") == 2 and value(mid, "playground_queue_depth") == 3
        store.finish_run(runs["reasoning"], status="done", **payload(12), prompt_tokens=1,
                         metrics={"ttft_s": 0.2, "total_s": 1.3}, finish_reason="stop", error=None)
        store.finish_run(runs["standard"], status="stopped", **payload(2), prompt_tokens=1, metrics=None,
                         finish_reason="stopped", error=None)
        assert not store.finish_run(runs["standard"], status="done", **payload(2), prompt_tokens=1, metrics=None,
                                    finish_reason="stop", error=None)  # a late finish counts nothing
        end = samples(telemetry.render()[0].decode())
        assert value(end, "playground_tokens_generated_total", lane="reasoning") == 12
        assert value(end, "playground_tokens_generated_total", lane="standard") == 2
        assert value(end, "playground_runs_finished_total", backend="local", lane="reasoning", status="done") == 1
        assert value(end, "playground_runs_finished_total", backend="local", lane="standard", status="stopped") == 1
        assert value(end, "playground_time_to_first_token_seconds_count", backend="local", lane="reasoning") == 1
        assert value(end, "playground_run_duration_seconds_sum", backend="local", lane="reasoning") == 1.3
        assert value(end, "playground_active_rows") == 0
        assert value(end, "playground_replica_info", replica="r1") == 1


def test_store_errors_are_counted_by_kind_and_a_broken_listener_costs_nothing(tmp_path):
    import sqlite3

    from sqlalchemy import event

    telemetry = Telemetry("r1")
    with open_store(tmp_path / "e.db") as store:
        store.listener = telemetry
        sid = store.create_session("me").id

        def locked(*_args):
            raise sqlite3.OperationalError("database is locked")

        event.listen(store.engine, "before_cursor_execute", locked)
        with pytest.raises(StoreBusy):
            store.add_cell("me", sid, prompt="x")
        event.remove(store.engine, "before_cursor_execute", locked)
        assert value(samples(telemetry.render()[0].decode()), "playground_store_errors_total", kind="busy") == 1

        class Broken:
            def __getattr__(self, name):
                raise RuntimeError("a bug in the listener")

        store.listener = Broken()
        cid = store.add_cell("me", sid, prompt="still works").id
        assert store.start_execution("me", cid, {"standard": {}}, {"backend": "local"})


def scrape(url: str) -> dict:
    response = httpx.get(url + "/metrics", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def test_a_scrape_during_a_real_run_sees_the_counters_move(server):
    from gradio_client import Client

    before = scrape(server.url)
    client = Client(server.url, verbose=False)
    session = client.predict("metrics", api_name="/new_session")
    cell = client.predict(session["id"], "Tell a story.", "", api_name="/add_cell")
    lanes = {"max_new_tokens": 120, "min_new_tokens": 120}
    job = client.submit(cell["id"], "Tell a story.", "", lanes, lanes, api_name="/run_cell")
    deadline = time.monotonic() + 300
    mid = before
    while value(mid, "playground_tokens_generated_total", lane="reasoning") == value(
            before, "playground_tokens_generated_total", lane="reasoning"):
        assert time.monotonic() < deadline and not job.done(), "no checkpoint was counted during the run"
        time.sleep(0.3)
        mid = scrape(server.url)
    for lane in ("standard", "reasoning"):
        assert value(mid, "playground_runs_started_total", backend="local", lane=lane) == value(
            before, "playground_runs_started_total", backend="local", lane=lane) + 1
    assert value(mid, "playground_active_rows") >= 1  # this run's rows are in generation
    assert value(mid, "playground_model_load_seconds", model=httpx.get(server.url + "/healthz").json()["model"]) > 0
    job.result(timeout=300)
    after = scrape(server.url)
    for lane in ("standard", "reasoning"):
        key = dict(backend="local", lane=lane, status="done")
        assert value(after, "playground_runs_finished_total", **key) == value(
            before, "playground_runs_finished_total", **key) + 1
        assert value(after, "playground_tokens_generated_total", lane=lane) - value(
            before, "playground_tokens_generated_total", lane=lane) == 120
        hist = dict(backend="local", lane=lane)
        assert value(after, "playground_time_to_first_token_seconds_count", **hist) == value(
            before, "playground_time_to_first_token_seconds_count", **hist) + 1
    assert value(after, "playground_active_rows") == 0
