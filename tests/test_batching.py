"""Runs sharing decode steps (the step scheduler) on the real embedded model.

Rows of any run join the running batch at the next decode step and leave it when they end. Greedy
equality with a run alone is asserted in float32: in bf16 (NF4's compute dtype) a row's K/V come out
of matrix products whose shape depends on the batch, and the last-bit differences can flip a near-tie
(measured: a 24-token lane flipped at token 17 in one of five leave points). In NF4 the tests assert
what holds there: the first token, the lengths, the statuses.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from playground.backends.local.admission import KvRoom
from playground.backends.local.engine import Engine
from playground.lanes import LaneSettings

pytestmark = pytest.mark.timeout(600)

PROMPTS = ["Name a colour.", "What is 2 + 2?", "Say hello to Ann.", "Name a fruit."]


@pytest.fixture(scope="module")
def fp32_engine(loaded_fp32):
    return Engine(loaded_fp32)


def lanes(n: int, **kw) -> dict[str, LaneSettings]:
    return {"standard": LaneSettings(max_new_tokens=n, **kw), "reasoning": LaneSettings(max_new_tokens=n + 4, **kw)}


def consume(run, stop_at: int | None = None, stopped_at: list | None = None) -> threading.Thread:
    """Iterate `run` in a thread of its own (a visitor's); stop it after `stop_at` updates, noting when."""
    def go():
        for n, _update in enumerate(run):
            if stop_at is not None and n == stop_at:
                stopped_at.append(time.perf_counter())
                run.stop()
    t = threading.Thread(target=go)
    t.start()
    return t


def queued(eng, run) -> threading.Thread:
    """Consume `run` in a thread and return once it waits in the scheduler's queue (so arrival order is ours)."""
    t = consume(run)
    deadline = time.monotonic() + 30
    while eng.scheduler.queue_position(run) is None:
        assert time.monotonic() < deadline, "the run never reached the queue"
        time.sleep(0.002)
    return t


def wait_tokens(run, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while sum(len(r.token_ids) for r in list(run.results.values())) < n:
        assert time.monotonic() < deadline, "the run never produced its first tokens"
        time.sleep(0.01)


def join(*threads: threading.Thread) -> None:
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive(), "a run never ended"


def first_end(run) -> float:
    return min(r.t_end for r in run.results.values())


def test_greedy_rows_that_join_mid_flight_produce_their_tokens_alone(fp32_engine):
    eng = fp32_engine
    a = eng.start("Write a long story about a dragon.", None, lanes(40, min_new_tokens=40))
    ta = consume(a)
    wait_tokens(a, 10)
    joiners = [eng.start(p, None, lanes(12)) for p in PROMPTS[:2]]
    threads = [consume(r) for r in joiners]
    join(ta, *threads)
    for run in joiners:  # they joined A's batch mid-flight and shared its steps
        assert a.t_start < run.t_start < first_end(a)
        assert run.record["shared_steps"]["other_runs"] >= 1 and run.record["shared_steps"]["rows_max"] >= 4
    for run, prompt in [(a, "Write a long story about a dragon."), *zip(joiners, PROMPTS)]:
        alone = eng.start(prompt, None, run.settings).collect()
        for lane, r in run.results.items():
            assert r.status == "done" and r.token_ids == alone[lane].token_ids, (prompt, lane)
            assert len(r.token_times) == len(r.token_ids) and r.token_times == sorted(r.token_times)


def test_in_nf4_joining_rows_keep_their_first_token_and_lengths(engine):
    a = engine.start("Write a long story about a dragon.", None, lanes(30, min_new_tokens=30))
    ta = consume(a)
    wait_tokens(a, 6)
    b = engine.start(PROMPTS[2], None, lanes(10, min_new_tokens=10))
    join(ta, consume(b))
    assert a.t_start < b.t_start < first_end(a)
    alone = engine.start(PROMPTS[2], None, lanes(1)).collect()
    for lane, r in b.results.items():
        assert r.status == "done" and len(r.token_ids) == b.settings[lane].max_new_tokens and r.text
        assert r.token_ids[0] == alone[lane].token_ids[0]
    assert [len(r.token_ids) for r in a.results.values()] == [30, 34]


def test_a_stopped_row_leaves_within_one_step_while_the_others_finish(engine):
    runs = [engine.start(p, None, lanes(60, min_new_tokens=60)) for p in PROMPTS[:3]]
    stopped_at: list[float] = []
    threads = [consume(r, stop_at=4 if i == 1 else None, stopped_at=stopped_at) for i, r in enumerate(runs)]
    join(*threads)
    stopped = runs[1]
    assert {r.status for r in stopped.results.values()} == {"stopped"}
    for r in stopped.results.values():
        # No token of the stopped run is stamped after Stop: the step in flight was its last.
        assert not [t for t in r.token_times if t > stopped_at[0]] and len(r.token_ids) < 60
    for i in (0, 2):
        assert {r.status for r in runs[i].results.values()} == {"done"}
        assert [len(r.token_ids) for r in runs[i].results.values()] == [60, 64]
        assert min(r.t_end for r in runs[i].results.values()) > max(r.t_end for r in stopped.results.values())


def test_a_budgeted_row_closes_its_reasoning_at_the_budget_while_others_run(engine):
    tok = engine.tokenizer
    other = engine.start("Write a long story about a dragon.", None, {"standard": LaneSettings(60, min_new_tokens=60)})
    t_other = consume(other)
    wait_tokens(other, 4)
    budgeted = engine.start("Think about 17 * 23.", None,
                            {"reasoning": LaneSettings(max_new_tokens=40, min_new_tokens=40, thinking_budget=5)})
    join(consume(budgeted), t_other)
    res = budgeted.results["reasoning"]
    close_ids = tok("</think>\n\n", add_special_tokens=False)["input_ids"]
    first_forced = res.forced.index(True)
    assert first_forced <= 5 and res.token_ids[first_forced:first_forced + len(close_ids)] == close_ids
    assert sum(res.forced) == len(close_ids) and "</think>" in res.text and res.answer.strip()
    assert budgeted.record["shared_steps"]["other_runs"] == 1
    assert len(other.results["standard"].token_ids) == 60 and not any(other.results["standard"].forced)


def room_for(plan, rows: int, tokens: int):
    """`plan` with its one device shrunk to room for `rows` rows of `tokens` tokens beside the weights
    (each row: its KV and the prefill activations the plan reserves, as models.memory.rows_that_fit counts)."""
    d = plan.devices[0]
    per_row = tokens * plan.kv_bytes_per_token + plan.budget.prompt_tokens * plan.activation_bytes_per_token
    usable = d.assigned_bytes + plan.scratch_bytes + rows * per_row
    return dataclasses.replace(plan, devices=[dataclasses.replace(d, usable_bytes=usable)])


def test_admission_waits_for_room_and_refuses_what_never_fits(loaded_nf4):
    eng = Engine(loaded_nf4)
    a = eng.start(PROMPTS[0], None, lanes(30, min_new_tokens=30))
    a_worst = max(len(p.input_ids) + a.settings[lane].max_new_tokens for lane, p in a.prompts.items())
    # Room for A's two rows and no more: B, as long, waits until A has left.
    eng.scheduler.room = room = KvRoom(room_for(loaded_nf4.plan, 2, a_worst))
    assert room.rows_for(a_worst) == 2
    ta = consume(a)
    wait_tokens(a, 2)
    b = eng.start(PROMPTS[1], None, lanes(20, min_new_tokens=20))
    tb = queued(eng, b)
    assert not b.results and not a.finished  # B waits for room while A runs
    join(ta, tb)
    assert b.t_start >= max(r.t_end for r in a.results.values())
    assert {r.status for r in b.results.values()} == {"done"}
    huge = eng.start(PROMPTS[2], None, lanes(1000))  # could never fit, even alone: refused at once
    results = huge.collect()
    assert {r.status for r in results.values()} == {"error"}
    assert all("KV cache" in r.error and "max new tokens" in r.error and not r.token_ids for r in results.values())


def test_a_visitor_who_runs_once_is_not_starved_by_another_visitors_run_all(loaded_nf4):
    eng = Engine(loaded_nf4, max_runs=2)
    many = [eng.start(p, None, lanes(4), owner="x") for p in PROMPTS + PROMPTS[:2]]  # x's "Run all"
    once = eng.start(PROMPTS[3], None, lanes(4), owner="y")  # y presses Run once, after all of x's
    with eng.lock:  # the model is busy: every run is waiting, in this order, when it frees up
        threads = [queued(eng, r) for r in [*many, once]]
    join(*threads)
    order = sorted([*many, once], key=lambda r: r.t_start)
    # x's first run, then y's only one (y had nothing running), then the rest of x's in their order.
    assert order == [many[0], once, *many[1:]]


def test_auto_concurrency_is_the_runs_the_plan_has_room_for(loaded_nf4):
    from playground.backends.local.admission import CPU_AUTO_MAX_RUNS, auto_concurrent_runs
    from playground.models.memory import rows_that_fit

    plan = loaded_nf4.plan
    budget = plan.budget
    runs = rows_that_fit(plan, budget.tokens_per_row) // len(budget.new_tokens)
    n, why = auto_concurrent_runs(plan, on_cpu=False)
    assert n == min(runs, 64) and f"{runs:,} runs" in why
    assert auto_concurrent_runs(plan, on_cpu=True)[0] == min(runs, CPU_AUTO_MAX_RUNS)
    three = room_for(plan, 3 * len(budget.new_tokens), budget.tokens_per_row)
    assert auto_concurrent_runs(three, on_cpu=True)[0] == 3
    n, why = auto_concurrent_runs(room_for(plan, 1, budget.tokens_per_row), on_cpu=False)
    assert n == 1 and "one at a time" in why


def test_prefill_and_decode_steps_keep_no_autograd_graph(engine):
    """A forward outside generate() records every activation for a backward pass unless told not to; the
    graph is chained through the cache, so it grew with every token (22 GB for a 1,500-token lane)."""
    layer = engine.loaded.model.model.layers[1]
    seen = []

    def record(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        seen.append((args[0].shape[1] == 1, hidden.requires_grad))

    handle = layer.register_forward_hook(record)
    try:
        results = engine.start(PROMPTS[0], None, lanes(6, min_new_tokens=6)).collect()
    finally:
        handle.remove()
    assert {r.status for r in results.values()} == {"done"}
    assert {decode for decode, _ in seen} == {False, True}  # both a prefill and decode steps ran through it
    assert not any(grad for _, grad in seen), seen


def test_an_oom_in_one_decode_step_ends_the_runs_in_it_and_the_next_run_works(engine):
    import torch

    layer = engine.loaded.model.model.layers[2]
    steps = {"n": 0}

    def out_of_memory(module, args, output):
        if args[0].shape[1] == 1:  # a decode step (a prefill feeds the whole prompt)
            steps["n"] += 1
            if steps["n"] == 6:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 1 has a total "
                                             "capacity of 79.19 GiB of which 20.00 MiB is free. (injected)")

    handle = layer.register_forward_hook(out_of_memory)
    try:
        runs = [engine.start(p, None, lanes(40, min_new_tokens=40)) for p in PROMPTS[:2]]
        join(*[consume(r) for r in runs])
    finally:
        handle.remove()
    for run in runs:
        for r in run.results.values():
            assert r.status == "error" and r.finish_reason == "error"
            assert "Out of memory on cuda:1" in r.error and "max new tokens" in r.error
            assert 0 < len(r.token_ids) < 40 and len(r.token_times) == len(r.token_ids)
    model = engine.loaded.model
    after = engine.start(PROMPTS[3], None, lanes(8, min_new_tokens=8)).collect()
    assert engine.loaded.model is model and [len(r.token_ids) for r in after.values()] == [8, 12]
    assert {r.status for r in after.values()} == {"done"}


def test_an_oom_in_a_prefill_ends_only_the_run_joining(engine):
    import torch

    layer = engine.loaded.model.model.layers[2]
    armed = threading.Event()

    def out_of_memory(module, args, output):
        if armed.is_set() and args[0].shape[1] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. GPU 0 has 10.00 MiB free. (injected)")

    a = engine.start("Write a long story about a dragon.", None, lanes(30, min_new_tokens=30))
    handle = layer.register_forward_hook(out_of_memory)
    try:
        ta = consume(a)
        wait_tokens(a, 4)
        armed.set()
        b = engine.start(PROMPTS[0], None, lanes(10)).collect()
        join(ta)
    finally:
        handle.remove()
    assert {r.status for r in b.values()} == {"error"} and all("cuda:0" in r.error for r in b.values())
    assert {r.status for r in a.results.values()} == {"done"}
    assert [len(r.token_ids) for r in a.results.values()] == [30, 34]
