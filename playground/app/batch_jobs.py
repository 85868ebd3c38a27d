"""Batch runs: run every prompt cell of a session (or a thinking-budget sweep) with progress, stop
and resume, several cells in flight at once. No gradio. (Importing the cells from a file is
playground.app.batch_files; visitors' runs batched together is playground.backends.local.scheduler.)

A *job* is one execution of one cell: both lanes for "Run all", the reasoning lane alone at one
thinking budget for a sweep point. Each job is one engine run of its own, owned by whoever started
the batch, and `batch_size` of them are in flight at once: the engine's step scheduler lets their
rows join the running batch at the next decode step, so when a job ends the next one starts at
once, without waiting for the slowest of a chunk (and the scheduler's fairness, counted per owner,
keeps a visitor who presses Run once from waiting behind a whole batch). Each job is stored by the
same Recorder a notebook run is (playground.app.recorder), so a batched execution is
indistinguishable in the store from one run alone, except for its record: "batch_rows" (the job's
own rows), "batch_in_flight" (the jobs at once) and the scheduler's "shared_steps" (how many rows,
of any run, shared its decode steps; its timings include them).

Resume: a job is skipped when the cell's latest execution of the same kind (a plain run, or a
sweep point at the same budget) finished "done" in every lane with the same settings, model,
quantization and rendered prompt.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace

from playground.app.recorder import Execution, Recorder
from playground.backends.base import LocalBackend
from playground.errors import InvalidInput
from playground.evaluation.verdict import SWEEP_KEY, is_sweep, sweep_budget
from playground.lanes import LANES, LaneSettings, validate_settings
from playground.prompting.prompts import build_prompt

MAX_BATCH_SIZE = 16  # cells in flight: 32 rows; more gains little on a GPU and pads long prompts
DEFAULT_BATCH_SIZE = 4  # four cells = a batch of eight rows
DEFAULT_BUDGETS: tuple[int | None, ...] = (0, 64, 256, 1024, None)
MAX_SWEEP_BUDGETS = 12


@dataclass
class Job:
    cell: object  # CellFull
    lanes: dict[str, LaneSettings]
    prompts: dict = field(default_factory=dict)  # lane -> LanePrompt
    budget: object = "none"  # "none" for a plain run; an int or None (unlimited) for a sweep point

    @property
    def sweep(self) -> bool:
        return self.budget != "none"


@dataclass(frozen=True)
class BatchProgress:
    """One step of a batch: what a progress bar shows."""

    total: int  # jobs in the plan
    done: int  # jobs finished (run or skipped)
    skipped: int  # jobs resumed from the store without running
    tokens: int  # tokens generated so far in this batch
    elapsed_s: float
    eta_s: float | None  # from the pace of the jobs actually run
    message: str
    finished: bool = False
    stopped: bool = False

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


def batch_engine(pg) -> LocalBackend:
    """The local backend batch runs need (rendered prompts as runs of keyed rows, a tokenizer for them).
    A remote endpoint streams each lane as its own request: it has neither, so batches refuse it."""
    engine = pg.require_backend()
    if engine.kind != "local":
        raise InvalidInput("Run all and budget sweeps run on a local model: switch 'Runs go to' to Local model "
                           "(a remote endpoint runs cells one at a time with Run).")
    return engine


def cell_lanes(cell, defaults: tuple[LaneSettings, LaneSettings], max_new_tokens: int) -> dict[str, LaneSettings]:
    """Both lanes' settings of a cell: its saved values over the model's recommended defaults."""
    names = set(LaneSettings.__dataclass_fields__)
    out = {}
    for lane, d in zip(LANES, defaults):
        saved = (cell.settings or {}).get(lane) or {}
        values = {**d.to_dict(), **{k: v for k, v in saved.items() if k in names and
                                    (v is not None or k == "thinking_budget")}}
        out[lane] = validate_settings(LaneSettings(**values), max_new_tokens, lane)
    return out


def plan_jobs(session, engine, defaults, max_new_tokens: int, *, budgets: Sequence | None = None,
              cell_ids: Sequence[str] | None = None) -> list[Job]:
    """Every prompt cell of the session (or of cell_ids) as jobs: one per cell, or one per cell and
    budget for a sweep (reasoning lane only)."""
    jobs = []
    for cell in session.cells:
        if cell.kind != "prompt" or not cell.prompt.strip() or (cell_ids is not None and cell.id not in cell_ids):
            continue
        lanes = cell_lanes(cell, defaults, max_new_tokens)
        if budgets is None:
            jobs.append(_with_prompts(Job(cell, lanes), engine))
            continue
        for b in budgets:
            s = lanes["reasoning"]
            jobs.append(_with_prompts(Job(cell, {"reasoning": LaneSettings(**{**s.to_dict(), "thinking_budget": b})},
                                          budget=b), engine))
    return jobs


def check_budgets(budgets) -> list[int | None]:
    """A sweep's budgets: whole numbers ≥ 0 or None (unlimited), at most MAX_SWEEP_BUDGETS."""
    if not budgets or len(budgets) > MAX_SWEEP_BUDGETS:
        raise InvalidInput(f"Give 1–{MAX_SWEEP_BUDGETS} thinking budgets (MAX_SWEEP_BUDGETS), e.g. 0, 64, 256, "
                           "1024, unlimited.")
    out = []
    for b in budgets:
        if b is None or (isinstance(b, str) and b.strip().lower() in ("", "none", "unlimited", "inf")):
            out.append(None)
            continue
        try:
            n = int(str(b).strip())
        except ValueError:
            raise InvalidInput(f"budget {b!r} is not a whole number or 'unlimited'.") from None
        if n < 0:
            raise InvalidInput(f"budget {n} is negative: use 0 or more.")
        out.append(n)
    return list(dict.fromkeys(out))  # in order, each once


def _with_prompts(job: Job, engine) -> Job:
    c = job.cell
    job.prompts = {lane: build_prompt(engine.tokenizer, engine.style, lane, c.prompt, c.system_prompt)
                   for lane in job.lanes}
    return job


def already_done(job: Job, loaded) -> bool:
    """The resume rule (module docstring)."""
    # A job runs the cell's first turn: a follow-up after it (turn 2 and on) is not a rerun of it.
    same_kind = [e for e in job.cell.executions if e.turn == 1
                 and is_sweep(e) == job.sweep and (not job.sweep or sweep_budget(e) == job.budget)]
    if not same_kind:
        return False
    ex = same_kind[-1]
    if set(ex.runs) != set(job.lanes):
        return False
    for lane, run in ex.runs.items():
        r = run.record or {}
        if run.status != "done" or r.get("settings") != job.lanes[lane].to_dict():
            return False
        if (r.get("model_id"), r.get("quant")) != (loaded.model_id, loaded.quant):
            return False
        if ((r.get("prompts") or {}).get(lane) or {}).get("text") != job.prompts[lane].text:
            return False
    return True


# --- running ------------------------------------------------------------------------------------
JOIN_S = 30.0  # how long a batch that ends early waits for its jobs in flight to let go of the store
STOP_POLL_S = 0.1  # how often a batch waiting for its next job looks at its stop event


def run_jobs(pg, store, owner: str, jobs: Sequence[Job], *, batch_size: int = DEFAULT_BATCH_SIZE,
             stop: threading.Event | None = None, run_code=None, resume: bool = True) -> Iterator[BatchProgress]:
    """Run the jobs with `batch_size` in flight, yielding progress after every finished job (and
    before the first). A set `stop` ends the jobs in flight within a decode step and starts no more;
    what ran is kept ("stopped" lanes are rerun on resume). Closing the generator stops it the same way."""
    if not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InvalidInput(f"batch_size={batch_size!r}: use 1–{MAX_BATCH_SIZE} (MAX_BATCH_SIZE).")
    stop = stop or threading.Event()
    engine = batch_engine(pg)
    t0 = time.perf_counter()
    todo = [j for j in jobs if not (resume and already_done(j, engine.loaded))]
    skipped = len(jobs) - len(todo)
    state = SimpleNamespace(done=skipped, ran=0, tokens=0)

    def progress(message: str, finished: bool = False) -> BatchProgress:
        elapsed = time.perf_counter() - t0
        left = len(jobs) - state.done
        eta = elapsed / state.ran * left if state.ran else None
        return BatchProgress(len(jobs), state.done, skipped, state.tokens, elapsed, eta, message,
                             finished, stop.is_set())

    yield progress(f"{skipped} cell run(s) already done with these settings: skipped" if skipped
                   else f"{len(todo)} to run")
    flight = _Flight(engine, store, owner, batch_size, run_code)
    waiting = iter(todo)
    try:
        while True:
            while len(flight.threads) < batch_size and not stop.is_set():
                job = next(waiting, None)
                if job is None:
                    break
                pg.check_run_input(job.cell.prompt, job.cell.system_prompt, job.lanes)
                if pg.settings.runs_per_visitor_per_hour:
                    pg._count_run(owner)  # the per-visitor limit counts every cell of a batch as a run
                flight.start(job, stop)
            if not flight.threads:
                break
            finished_job, tokens = flight.next_done(stop)
            state.done += 1
            state.ran += 1
            state.tokens += tokens
            yield progress(f"{_label(finished_job)} done")
    finally:
        flight.close()
    yield progress("stopped: run again to resume" if stop.is_set() else "all done", finished=True)


class _Flight:
    """The jobs in flight: each runs in a thread of its own (its run blocks between decode steps) and
    reports to one queue when its lanes are stored and graded, or with what went wrong."""

    def __init__(self, engine, store, owner: str, batch_size: int, run_code):
        self.engine, self.store, self.owner, self.run_code = engine, store, owner, run_code
        self.batch_size = batch_size
        # Keyed by start order (a Job, a plain dataclass, is not hashable).
        self.threads: dict[int, threading.Thread] = {}
        self.runs: dict[int, object] = {}  # each job's engine run, once started
        self._started = 0
        self.halt = threading.Event()  # the batch ended early (an error, the consumer gone)
        self.reports: queue.Queue = queue.Queue()

    def start(self, job: Job, stop: threading.Event) -> None:
        """Start the job's run and store its execution here, in the batch's thread, so a batch's executions
        (a sweep's points, a cell's versions) are stored in the order asked for; its thread runs it."""
        self._started += 1
        n = self._started
        run = self.engine.start_prompts(job.prompts, job.lanes, owner=self.owner)
        extra = {"batch_rows": len(job.prompts), "batch_in_flight": self.batch_size,
                 **({SWEEP_KEY: {"budget": job.budget}} if job.sweep else {})}
        ex = Execution(job.cell, {lane: lane for lane in job.lanes}, extra)
        recorder = Recorder(self.store, self.owner, run, [ex], self.engine.reproducibility_record(run), self.run_code)
        recorder.start()  # on failure it finishes what it started and raises, in the batch's thread
        self.runs[n] = run
        thread = threading.Thread(target=self._run, args=(n, job, recorder, ex, stop), name="batch-job", daemon=True)
        self.threads[n] = thread
        thread.start()

    def next_done(self, stop: threading.Event) -> tuple[Job, int]:
        """The next job to finish and its tokens; a job's failure is raised here, in the batch's thread.
        A set `stop` reaches every run in flight, also one still queued for the model (it has no
        update yet to notice it by)."""
        while True:
            try:
                n, job, tokens, exc = self.reports.get(timeout=STOP_POLL_S)
                break
            except queue.Empty:
                if stop.is_set():
                    self.stop_all()
        self.threads.pop(n).join()
        self.runs.pop(n, None)
        if exc is not None:
            raise exc
        return job, tokens

    def stop_all(self) -> None:
        for run in list(self.runs.values()):
            run.stop()

    def close(self) -> None:
        """Stop what is still in flight and wait until its lanes are saved (as stopped)."""
        self.halt.set()
        self.stop_all()
        for thread in list(self.threads.values()):
            thread.join(JOIN_S)

    def _run(self, n: int, job: Job, recorder: Recorder, ex: Execution, stop: threading.Event) -> None:
        try:
            self.reports.put((n, job, _run_job(self, recorder, ex, stop), None))
        except BaseException as exc:  # handed to the batch's thread, which raises it
            self.reports.put((n, job, 0, exc))


def _label(job: Job) -> str:
    pos = getattr(job.cell, "position", 0) + 1
    return f"cell {pos}" + (f" at budget {job.budget if job.budget is not None else 'unlimited'}"
                            if job.sweep else "")


def _run_job(flight: _Flight, recorder: Recorder, ex: Execution, stop: threading.Event) -> int:
    """One engine run of the job's lanes, saved by its Recorder; the tokens it generated."""
    run = recorder.run
    try:
        for _update in run:
            if stop.is_set() or flight.halt.is_set():
                run.stop()
            for done in recorder.step():
                recorder.grade(done)
    finally:
        recorder.close()
    return recorder.tokens(ex)
