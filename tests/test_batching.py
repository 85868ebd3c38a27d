"""Runs of several visitors in one batched generate (max_concurrent_runs > 1), on the real model.

The tests hold the engine's lock while runs arrive, as a generation in progress would, so the
runs are waiting together when the model frees up: that is when a batch forms."""

from __future__ import annotations

import threading
import time

import pytest

from playground.backends.local.engine import Engine
from playground.backends.local.scheduler import RunScheduler
from playground.lanes import LaneSettings

PROMPTS = ["Name a colour.", "What is 2 + 2?", "Say hello to Ann.", "Name a fruit."]


@pytest.fixture(scope="module")
def batching_engine(loaded_nf4):
    return RunScheduler.attach(Engine(loaded_nf4), 3)


def lanes(n: int, **kw) -> dict[str, LaneSettings]:
    return {"standard": LaneSettings(max_new_tokens=n, **kw), "reasoning": LaneSettings(max_new_tokens=n + 4, **kw)}


def consume(run, out: dict, key, stop_after: int | None = None):
    def go():
        for n, _update in enumerate(run):
            if stop_after is not None and n == stop_after:
                run.stop()
        out[key] = run
    t = threading.Thread(target=go)
    t.start()
    return t


def wait_pending(engine, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(engine.scheduler._pending) < n:
        assert time.monotonic() < deadline, "runs never reached the scheduler"
        time.sleep(0.01)


def batch_of(engine, runs: list, stop_after: dict | None = None) -> dict:
    """Submit `runs` while the model is busy, then free it: they wait together and form one batch."""
    out: dict = {}
    with engine.lock:
        threads = [consume(r, out, i, (stop_after or {}).get(i)) for i, r in enumerate(runs)]
        wait_pending(engine, len(runs))
    for t in threads:
        t.join(timeout=300)
    return out


def test_waiting_runs_share_one_generate_and_each_gets_its_own_lanes(batching_engine, engine):
    runs = [batching_engine.start(p, None, lanes(10)) for p in PROMPTS[:3]]
    out = batch_of(batching_engine, runs)
    for i, prompt in enumerate(PROMPTS[:3]):
        run = out[i]
        assert run.record["batch_runs"] == 3 and run.record["batch_rows"] == 6
        assert set(run.results) == {"standard", "reasoning"}
        for lane, r in run.results.items():
            assert r.lane == lane and r.status == "done"
            assert len(r.token_ids) == len(r.token_times) == len(r.token_kinds) <= run.settings[lane].max_new_tokens
            assert r.text and r.t_start == run.t_start
        # Each row decodes its own prompt: the first token is the one it picks alone (later ones may
        # differ: a wider left-padded batch changes the matrix shapes, and near-ties can flip).
        alone = engine.start(prompt, None, lanes(1)).collect()
        for lane in ("standard", "reasoning"):
            assert run.results[lane].token_ids[0] == alone[lane].token_ids[0]


def test_stop_ends_one_visitors_rows_and_the_others_run_on(batching_engine):
    runs = [batching_engine.start(p, None, lanes(60, min_new_tokens=60)) for p in PROMPTS[:3]]
    out = batch_of(batching_engine, runs, stop_after={1: 4})
    stopped = out[1]
    assert {r.status for r in stopped.results.values()} == {"stopped"}
    assert all(len(r.token_ids) < 60 for r in stopped.results.values())
    for i in (0, 2):
        assert {r.status for r in out[i].results.values()} == {"done"}
        assert len(out[i].results["standard"].token_ids) == 60


def test_a_run_stopped_while_waiting_never_runs(batching_engine):
    run = batching_engine.start(PROMPTS[3], None, lanes(8))
    out: dict = {}
    with batching_engine.lock:
        t = consume(run, out, 0)
        wait_pending(batching_engine, 1)
        run.stop()
    t.join(timeout=60)
    assert {r.status for r in out[0].results.values()} == {"stopped"}
    assert all(not r.token_ids for r in run.results.values())


def test_more_waiting_runs_than_a_batch_holds_are_served_in_order(batching_engine):
    runs = [batching_engine.start(p, None, lanes(6)) for p in PROMPTS]  # 4 runs, batches of 3
    out = batch_of(batching_engine, runs)
    sizes = [out[i].record["batch_runs"] for i in range(4)]
    assert sizes == [3, 3, 3, 1]
    assert out[3].t_start > max(out[i].t_start for i in range(3))
    assert all(r.status == "done" for run in out.values() for r in run.results.values())
