"""Runs of several visitors generated together: one batched `generate` instead of one after another.

A paired run is already a batch of two rows (its lanes). When visitors wait for the model, the
runs pending at the moment it frees up are stacked into one larger batch (up to `max_runs` runs,
`max_concurrent_runs` in the settings): each decode step then serves them all, which on a GPU
costs about what one run costs, and on a CPU still less than running them in turn.

Each run keeps its own queue of updates, its own LaneResults and its own Stop (its rows end at
once, the others go on). A run that starts while a batch is generating waits for the next one:
rows cannot join a generate in flight.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

from playground.backends.local.engine import Engine, Run
from playground.lanes import LaneResult, LaneUpdate

log = logging.getLogger(__name__)

KEY_SEP = "\x1f"  # between a run's index and its lane in the batch's row keys: never in a lane name
RELEASE_WAIT_S = 10.0  # how long a consumer that leaves waits for the batch to let go of its run
_END = object()


class _Member:
    def __init__(self, run: Run):
        self.run = run
        self.updates: queue.Queue = queue.Queue()
        self.released = threading.Event()  # the scheduler no longer touches this run


class RunScheduler:
    """Feeds pending runs to the engine in batches of up to `max_runs`, from one thread of its own."""

    @classmethod
    def attach(cls, engine: Engine, max_runs: int) -> Engine:
        """Make `engine` send its runs through a scheduler of up to `max_runs` runs per generate."""
        engine.scheduler = cls(engine, max_runs)
        return engine

    def __init__(self, engine: Engine, max_runs: int):
        self.engine = engine
        self.max_runs = max(1, max_runs)
        self._pending: list[_Member] = []
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None

    def execute(self, run: Run) -> Iterator[LaneUpdate]:
        """Queue `run` and yield its updates as the batch it joins produces them."""
        member = _Member(run)
        with self._cv:
            self._pending.append(member)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="run-scheduler", daemon=True)
                self._thread.start()
            self._cv.notify()
        try:
            while True:
                item = member.updates.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # A consumer that goes away (closed tab, cancelled event) stops its rows, and waits until the
            # batch has finished its lanes, so whoever saves them next reads a settled result.
            run.stop()
            with self._cv:
                waiting = member in self._pending
                if waiting:
                    self._pending.remove(member)
            if waiting:  # it never reached the model
                self._finish_unstarted(member)
            elif not member.released.wait(RELEASE_WAIT_S):
                log.warning("a batch kept a stopped run for more than %.0f s", RELEASE_WAIT_S)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._pending:
                    if not self._cv.wait(timeout=30.0) and not self._pending:
                        self._thread = None  # idle: the next run starts a fresh thread
                        return
            # The batch is taken once the model is free, so it holds every run that waited meanwhile.
            with self.engine.lock:
                with self._cv:
                    batch = self._pending[:self.max_runs]
                    del self._pending[:len(batch)]
                try:
                    self._run_batch_locked(batch)
                except BaseException as exc:  # a bug here must reach the waiting visitors, not hang them
                    log.exception("batch failed")
                    for m in batch:
                        if not m.released.is_set():
                            m.updates.put(exc)
                            m.released.set()

    def _run_batch_locked(self, batch: list[_Member]) -> None:
        live = []
        for m in batch:
            if m.run.stop_event.is_set():  # stopped while it waited: it never runs
                self._finish_unstarted(m)
            else:
                live.append(m)
        if not live:
            return
        prompts, settings, stops, owner = {}, {}, {}, {}
        for i, m in enumerate(live):
            for lane, prompt in m.run.prompts.items():
                key = f"{i}{KEY_SEP}{lane}"
                prompts[key], settings[key] = prompt, m.run.settings[lane]
                stops[key], owner[key] = m.run.stop_event, (m, lane)
        combined = Run(self.engine, prompts, settings)
        started = False
        for u in self.engine.generate_rows(combined, row_stops=stops):
            if not started:  # the batch's results exist now: each run gets its own lanes
                started = True
                self._attach(live, combined)
            m, lane = owner[u.lane]
            m.updates.put(replace(u, lane=lane))  # u.lane is the row's key in the batch
            if m.run.finished and not m.released.is_set():
                m.updates.put(_END)
                m.released.set()
        for m in live:
            if not m.released.is_set():
                m.updates.put(_END)
                m.released.set()
        if len(live) > 1:
            log.info("batched %d runs (%d rows) in one generate", len(live), len(prompts))

    def _attach(self, live: list[_Member], combined: Run) -> None:
        for i, m in enumerate(live):
            results = {}
            for lane in m.run.prompts:
                r = combined.results[f"{i}{KEY_SEP}{lane}"]
                r.lane = lane  # what charts and exports name it; updates still carry the row key
                results[lane] = r
            m.run.t_start, m.run.results = combined.t_start, results
            m.run.record = {**self.engine.reproducibility_record(m.run), "batch_runs": len(live),
                            "batch_rows": len(combined.prompts)}

    def _finish_unstarted(self, m: _Member) -> None:
        t = time.perf_counter()
        m.run.t_start = t
        for lane, prompt in m.run.prompts.items():
            m.run.results[lane] = LaneResult(lane, len(prompt.input_ids), m.run.settings[lane], t,
                                             status="stopped", finish_reason="stopped", t_end=t)
            m.updates.put(LaneUpdate(lane, "done", t, finish_reason="stopped"))
        m.updates.put(_END)
        m.released.set()
