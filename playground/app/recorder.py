"""One backend run saved as it happens, for a notebook cell, a batch chunk or a sweep point (no gradio).

A run carries one or more *executions*: a cell run alone is one (its lanes are the run's rows); a
batch chunk is one per job (rows keyed "<index>:<lane>"). The Recorder stores each of them alike:
- start: one "running" row per lane (store.start_execution) with the record known before the run;
- checkpoint: every running lane's partial text and timings at least every CHECKPOINT_INTERVAL_S;
- finish: each lane's final state and metrics as soon as it ends, with the FINAL reproducibility
  record, so what the run learned on the way is what gets stored (the scheduler's shared_steps and
  batch_rows, ZeroGPU's flag, a remote server's response times and token-count sources);
- grade: each lane's answer text against the cell's expected answer, once all its lanes ended;
- close: on any exit (the consumer gone, an error) the run is stopped and every lane still
  running is finished as stopped, so nothing generated is lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from playground.backends.base import RunLike
from playground.errors import StoreBusy, StoreUnavailable
from playground.evaluation.graders import Grade
from playground.evaluation.metrics import result_metrics
from playground.evaluation.verdict import answer_grade, grade_record, has_grader
from playground.lanes import LaneResult

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 1.0


def lane_payload(r: LaneResult) -> dict:
    """A lane's partial or final state in the store's terms (times relative to the run start)."""
    n = min(len(r.token_ids), len(r.token_times), len(r.token_kinds), len(r.forced))
    return dict(raw_text=r.text, reasoning_text=r.reasoning, answer_text=r.answer,
                token_ids=list(r.token_ids[:n]), token_times=[round(t - r.t_start, 6) for t in r.token_times[:n]],
                token_kinds=list(r.token_kinds[:n]), forced=list(r.forced[:n]))


def execution_record(record: dict, rows: dict[str, str], run_rows: set[str]) -> dict:
    """A run's record as one of its executions sees it: each field the record keeps per row of the
    run (settings, prompts, requests, per-lane timings) narrowed to the execution's rows and keyed
    by its own lane names; every other field as it is."""
    out = {}
    for name, value in record.items():
        if isinstance(value, dict) and value and set(value) <= run_rows:
            value = {lane: value[key] for lane, key in rows.items() if key in value}
        out[name] = value
    return out


@dataclass(eq=False)  # compared and hashed by identity: the batch maps each back to its job
class Execution:
    """One stored execution inside a backend run."""

    cell: object  # the cell it runs (store CellInfo or CellFull): its id, expected answer and grader
    rows: dict[str, str]  # lane -> the key of its row in the run (the lane itself for a cell run alone)
    # Fields of this execution alone (a sweep point's budget, the rows of its batch); where the run's own
    # record says something too (the scheduler counts the rows of visitors' runs as well), the run wins.
    record: dict = field(default_factory=dict)
    run_ids: dict[str, str] = field(default_factory=dict)  # lane -> stored run id, once started
    graded: bool = False
    parent: int | None = None  # the execution of the turn this one continues (a follow-up); None: turn 1
    prompt: str | None = None  # what the user asked at this turn (None: the cell's prompt)


class Recorder:
    """Saves `run`'s executions for `owner` as they happen. Call start() before iterating the run,
    step() after each of its updates, and close() on every way out (in a finally)."""

    def __init__(self, store, owner: str, run: RunLike, executions: Sequence[Execution], record: dict,
                 run_code: Callable[[str, str], Grade] | None = None):
        self.store = store
        self.owner = owner
        self.run = run
        self.executions = list(executions)
        self.run_code = run_code  # the python grader's runner; None where code grading is off
        self._start_record = record  # the backend's record of the run before it started
        self._started: dict[Execution, dict] = {}  # each execution's record as stored at the start
        self._finished: dict[str, dict] = {}  # stored run id -> the record its finish wrote
        self._reported: set[Execution] = set()  # executions step() or close() handed back as complete
        self._last_checkpoint = time.perf_counter()

    def start(self) -> None:
        """One "running" row per lane of every execution. A failure stops the run and finishes what
        was started (as stopped) before it propagates: no row is left running."""
        try:
            for ex in self.executions:
                record = {**self._view(self._start_record, ex), **ex.record}
                ex.run_ids = self.store.start_execution(self.owner, ex.cell.id, self._settings(ex), record,
                                                        parent=ex.parent, prompt=ex.prompt)
                self._started[ex] = record
        except BaseException:
            self.run.stop()
            try:
                self.close()
            except Exception:
                log.exception("could not finish the runs started before the failure")
            raise
        self._last_checkpoint = time.perf_counter()

    def step(self) -> list[Execution]:
        """Finish every lane that ended, checkpoint the rest when one is due, and return the executions
        whose lanes have now all ended (each once; grade them with grade())."""
        ended = False
        for ex, lane, key, run_id in self._lanes():
            r = self.run.results.get(key)
            if run_id not in self._finished and r is not None and r.status != "running":
                self._finish(ex, lane, r)
                ended = True
        now = time.perf_counter()
        if now - self._last_checkpoint >= CHECKPOINT_INTERVAL_S:
            self._last_checkpoint = now
            self._checkpoint()
        return self._complete() if ended else []

    def close(self) -> list[Execution]:
        """Stop the run, finish every lane still running as stopped (a lane that never started as an
        empty stopped run), grade what is not graded yet, and return the executions step() did not.
        A lane that fails to save on its own account does not keep the others from being saved."""
        self.run.stop()  # a no-op when the run already ended; stops it when the consumer went away
        errors = []
        for ex, lane, key, run_id in self._lanes():
            if run_id in self._finished:
                continue
            r = self.run.results.get(key)
            try:
                if r is None:  # never started (the consumer left while it waited): an empty stopped run
                    self._finish_unstarted(ex, lane, key)
                else:
                    if r.status == "running":
                        r.status, r.finish_reason = "stopped", "stopped"
                    self._finish(ex, lane, r)
            except StoreUnavailable:
                raise  # the database itself refuses (full, locked past its timeout): so would the next write
            except Exception as exc:  # this lane's own data: the others are still saved
                errors.append(exc)
        if errors:
            raise errors[0]
        rest = self._complete()
        for ex in self._started:
            self.grade(ex)
        return rest

    def grade(self, ex: Execution) -> dict[str, Grade]:
        """Grade each ended lane's answer against the cell's expected answer and cache it on its run
        (once per execution). A grade is derived data: a failure to grade is logged, never raised."""
        if ex.graded or not has_grader(ex.cell):
            return {}
        ex.graded = True
        grades = {}
        for lane, key in ex.rows.items():
            r = self.run.results.get(key)
            if r is None or r.status == "running":
                continue
            try:
                grades[lane] = g = answer_grade(ex.cell, r.status, r.answer, self.run_code)
                self.store.set_grade(ex.run_ids[lane], grade_record(ex.cell, g))
            except Exception:
                log.exception("grading the %s lane of cell %s failed", lane, ex.cell.id)
        return grades

    def tokens(self, ex: Execution) -> int:
        """Tokens the execution's lanes generated."""
        return sum(len(r.token_ids) for key in ex.rows.values() if (r := self.run.results.get(key)) is not None)

    # --- inside -------------------------------------------------------------------------------
    def _lanes(self):
        for ex in self._started:
            for lane, key in ex.rows.items():
                yield ex, lane, key, ex.run_ids[lane]

    def _view(self, record: dict, ex: Execution) -> dict:
        return execution_record(record, ex.rows, set(self.run.prompts))

    def _settings(self, ex: Execution) -> dict[str, dict]:
        return {lane: self.run.settings[key].to_dict() for lane, key in ex.rows.items()}

    def _final_record(self, ex: Execution, lane: str) -> dict:
        # What was stored at the start, what the run learned since, and the row's own lane settings
        # (start_execution keeps each row's settings in its record the same way).
        record = {**self._started[ex], **self._view(self.run.record or {}, ex)}
        return {**record, "settings": self._settings(ex)[lane]}

    def _finish(self, ex: Execution, lane: str, r: LaneResult) -> None:
        record = self._final_record(ex, lane)
        self.store.finish_run(ex.run_ids[lane], status=r.status, prompt_tokens=r.prompt_tokens,
                              metrics=result_metrics(r).to_dict(), finish_reason=r.finish_reason, error=r.error,
                              record=record, **lane_payload(r))
        self._finished[ex.run_ids[lane]] = record

    def _finish_unstarted(self, ex: Execution, lane: str, key: str) -> None:
        record = self._final_record(ex, lane)
        self.store.finish_run(ex.run_ids[lane], status="stopped", prompt_tokens=len(self.run.prompts[key].input_ids),
                              metrics=None, finish_reason="stopped", error=None, raw_text="", reasoning_text="",
                              answer_text="", token_ids=[], token_times=[], token_kinds=[], forced=[],
                              record=record)
        self._finished[ex.run_ids[lane]] = record

    def _checkpoint(self) -> None:
        """Save the running lanes. A checkpoint is insurance against a crash, not the result: a database
        locked past its busy timeout costs this one and the run goes on (the finish writes everything).
        A full disk does stop the run: nothing more could be kept, so generating on would be waste."""
        try:
            for _ex, _lane, key, run_id in self._lanes():
                r = self.run.results.get(key)
                if run_id not in self._finished and r is not None:
                    self.store.checkpoint_run(run_id, **lane_payload(r))
        except StoreBusy as exc:
            log.warning("checkpoint skipped, the run goes on: %s", exc)

    def _complete(self) -> list[Execution]:
        done = [ex for ex in self._started if ex not in self._reported
                and all(run_id in self._finished for run_id in ex.run_ids.values())]
        for ex in done:
            # A lane that ended first stored what was known then; its execution's last lane may have
            # learned more since (a remote lane's count source, say): every row ends with the whole record.
            for lane, run_id in ex.run_ids.items():
                record = self._final_record(ex, lane)
                if record != self._finished[run_id]:
                    self.store.set_record(run_id, record)
                    self._finished[run_id] = record
        self._reported.update(done)
        return done
