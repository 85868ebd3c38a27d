"""The checker pool: bounded workers, a worker that dies while idle replaced without the caller
noticing, and errors inside a check kept apart from a broken worker."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from playground.errors import CheckerFailed
from playground.evaluation.pool import CheckerPool


@pytest.fixture
def pool():
    p = CheckerPool(workers=2)
    yield p
    p.close()


def test_a_worker_killed_while_idle_is_replaced(pool):
    assert pool.call("math", {"expected": "2", "answer": "2"})["equal"] is True
    victim = pool._idle[0].proc
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert pool.call("math", {"expected": "3", "answer": "3"})["equal"] is True
    assert pool.started == 2


def test_never_more_workers_than_the_pool_size(pool):
    errors = []

    def check(i):
        try:
            pool.call("math", {"expected": str(i), "answer": f"$\\boxed{{{i}}}$"})
        except Exception as exc:  # collected for the assert below
            errors.append(exc)

    threads = [threading.Thread(target=check, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and pool.started <= 2 and pool._live <= 2


def test_a_library_error_is_the_answers_and_the_worker_stays(pool):
    with pytest.raises(CheckerFailed, match="no Reasoning Gym task"):
        pool.call("gym_check", {"task": "no_such_task", "config": {}})
    started = pool.started
    assert pool.call("gym_check", {"task": "chain_sum", "config": {}}) is None
    assert pool.started == started  # the same worker answered again
