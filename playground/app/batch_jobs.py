"""Batch runs: run every prompt cell of a session (or a thinking-budget sweep) with progress, stop
and resume, several cells per batched `generate`. No gradio. (Importing the cells from a file is
playground.app.batch_files; visitors' runs batched together is playground.backends.local.scheduler.)

A *job* is one execution of one cell: both lanes for "Run all", the reasoning lane alone at one
thinking budget for a sweep point. Jobs are grouped `batch_size` at a time into ONE engine run
whose rows are keyed "<index>:<lane>" (the engine runs any set of keyed rows left-padded in
one generate, each row with its own sampling and budget), and each job is stored by the same
Recorder a notebook run is (playground.app.recorder), as one execution of that run. So a batched
execution is indistinguishable in the store from one run alone, except for record["batch_rows"],
which says how many rows shared the generate (its timings include them).

Resume: a job is skipped when the cell's latest execution of the same kind (a plain run, or a
sweep point at the same budget) finished "done" in every lane with the same settings, model,
quantization and rendered prompt.
"""

from __future__ import annotations

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

MAX_BATCH_SIZE = 16  # cells per generate: 32 rows; more gains little on a GPU and pads long prompts
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
    """The local backend batch runs need (keyed rows in one generate, a tokenizer for the prompts).
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
    same_kind = [e for e in job.cell.executions
                 if is_sweep(e) == job.sweep and (not job.sweep or sweep_budget(e) == job.budget)]
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
def run_jobs(pg, store, owner: str, jobs: Sequence[Job], *, batch_size: int = DEFAULT_BATCH_SIZE,
             stop: threading.Event | None = None, run_code=None, resume: bool = True) -> Iterator[BatchProgress]:
    """Run the jobs `batch_size` at a time, yielding progress after every finished job (and before
    the first). A set `stop` ends the current generate within a decode step; what ran is kept
    ("stopped" lanes are rerun on resume). Closing the generator stops it the same way."""
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
    for start in range(0, len(todo), batch_size):
        if stop.is_set():
            break
        chunk = todo[start:start + batch_size]
        for job in chunk:
            pg.check_run_input(job.cell.prompt, job.cell.system_prompt, job.lanes)
            if pg.settings.runs_per_visitor_per_hour:
                pg._count_run(owner)  # the per-visitor limit counts every cell of a batch as a run
        for finished_job, tokens in _run_chunk(engine, store, owner, chunk, stop, run_code):
            state.done += 1
            state.ran += 1
            state.tokens += tokens
            yield progress(f"{_label(finished_job)} done")
    yield progress("stopped: run again to resume" if stop.is_set() else "all done", finished=True)


def _label(job: Job) -> str:
    pos = getattr(job.cell, "position", 0) + 1
    return f"cell {pos}" + (f" at budget {job.budget if job.budget is not None else 'unlimited'}"
                            if job.sweep else "")


def _key(index: int, lane: str) -> str:
    return f"{index}:{lane}"


def _run_chunk(engine, store, owner, chunk: list[Job], stop: threading.Event, run_code) -> Iterator[tuple[Job, int]]:
    """One batched generate over every lane of every job in the chunk, saved by one Recorder; yields
    each job (with the tokens it generated) once its lanes have all finished, stored and graded."""
    prompts = {_key(i, lane): p for i, job in enumerate(chunk) for lane, p in job.prompts.items()}
    lanes = {_key(i, lane): s for i, job in enumerate(chunk) for lane, s in job.lanes.items()}
    run = engine.start_prompts(prompts, lanes)
    jobs = {}
    for i, job in enumerate(chunk):
        extra = {"batch_rows": len(prompts), **({SWEEP_KEY: {"budget": job.budget}} if job.sweep else {})}
        jobs[Execution(job.cell, {lane: _key(i, lane) for lane in job.lanes}, extra)] = job
    recorder = Recorder(store, owner, run, list(jobs), engine.reproducibility_record(run), run_code)
    recorder.start()
    try:
        for _update in run:
            if stop.is_set():
                run.stop()
            for ex in recorder.step():
                recorder.grade(ex)
                yield jobs[ex], recorder.tokens(ex)
    finally:
        rest = recorder.close()
    for ex in rest:  # jobs whose last lane ended with the run itself
        yield jobs[ex], recorder.tokens(ex)
