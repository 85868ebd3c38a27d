"""Iteration-level scheduling: a run's rows join the running batch at the next decode step, and a row
that finishes or is stopped leaves it at once, freeing its cache.

One thread per engine, the step loop, owns the model while any row runs (it holds the engine's
lock then, so a model swap waits for the batch to empty). Each turn of the loop:

  1. drops the rows of runs that were stopped;
  2. admits waiting runs while they fit: at most `max_runs` runs, and the batch's worst-case KV
     cache (admission.KvRoom) within the room the memory plan left on the devices;
  3. prefills the admitted runs' rows together and picks their first tokens;
  4. runs one decode step over every row and hands each run its tokens.

Fairness, at admission: the next run to start is the oldest waiting run of the owner who has the
fewest rows running; ties go to the owner whose waiting run came first. So one visitor's 200-cell
"Run all" (which keeps a few cells in flight) never holds back a visitor who presses Run once:
that visitor has nothing running and goes first. A run that does not fit waits, and nothing
behind it skips ahead (arrival order within that rule), so a large run is never starved either.

Why our own loop and not transformers' continuous batching (init_continuous_batching, paged
cache): on this project's CPU it ran about 20× slower than generate on the embedded model (200
tokens: 93 s vs 4.7 s, FACTS.md; bench.cb measures it against this loop), and it keeps only
temperature, top-k and top-p per request, where every lane needs its own seeded generator, min
tokens and a thinking budget's forced close. Here a decode step is one forward of the model over
the running rows (stepper.DecodeBatch) and each row picks its own token (rows.pick_tokens).

Each run gets its updates on a queue of its own and turns them into text in its consumer's thread
(decoding.LocalLane), as a single generate did; its record says how many rows shared its steps.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterator

from playground.backends.local.admission import KvRoom
from playground.backends.local.decoding import LocalLane
from playground.backends.local.rows import Row, pick_tokens
from playground.backends.local.stepper import DecodeBatch
from playground.lanes import LaneResult, LaneUpdate

log = logging.getLogger(__name__)

RELEASE_WAIT_S = 10.0  # how long a consumer that leaves waits for the loop to let go of its run
IDLE_EXIT_S = 30.0  # an idle step loop ends after this; the next run starts a fresh one
EXIT_JOIN_S = 5.0  # at interpreter exit, how long to wait for a step loop to put torch down
_END = object()
_LOOPS: weakref.WeakSet = weakref.WeakSet()  # every scheduler with a step loop, for the exit hook


class Ticket:
    """One run waiting for, or in, the batch: its rows, its queue of updates, and the steps it shared."""

    def __init__(self, run, seq: int, close_ids: dict[str, list[int]]):
        self.run = run
        self.seq = seq  # arrival order
        self.owner = getattr(run, "owner", None) or ("run", seq)  # an ownerless run is its own owner
        self.events: queue.Queue = queue.Queue()  # lists of events (flush), then _END
        self.outbox: list[tuple] = []
        self.rows = [Row(lane, p, run.settings[lane], close_ids[lane], self) for lane, p in run.prompts.items()]
        self.worst = [r.worst_tokens for r in self.rows]
        self.released = threading.Event()  # the loop no longer touches this run
        self.steps = self.rows_sum = self.rows_max = 0
        self.shared_with: set[int] = set()  # other runs that shared at least one step

    def put(self, kind: str, key: str | None = None, payload=None, t: float = 0.0, forced: bool = False) -> None:
        self.outbox.append((kind, key, payload, t, forced))

    def flush(self) -> None:
        """Hand the consumer everything since the last flush as one item: it applies a step's events to
        every lane before it yields any, so whoever reads the run between updates sees its lanes at
        the same step (a checkpoint never saves one lane a step ahead of the other)."""
        if self.outbox:
            self.events.put(self.outbox)
            self.outbox = []


class StepScheduler:
    """Feeds rows of any number of runs through one DecodeBatch, step by step (module docstring)."""

    def __init__(self, engine, max_runs: int, room: KvRoom | None, lock: threading.Lock | None = None,
                 idle_exit_s: float = IDLE_EXIT_S):
        self.engine = engine
        self.max_runs = max(1, max_runs)
        self.room = room
        self.lock = lock
        self.idle_exit_s = idle_exit_s
        self.batch = DecodeBatch(engine.loaded.model)
        self._pending: list[Ticket] = []
        self._active: list[Ticket] = []
        self._seq = 0
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False

    # --- the consumer's side (the thread iterating the run) ----------------------------------
    def execute(self, run) -> Iterator[LaneUpdate]:
        """Queue `run` and yield its updates as the steps it shares produce them."""
        ticket = self._submit(run)
        lanes: dict[str, LocalLane] = {}
        try:
            while True:
                item = ticket.events.get()
                if item is _END:
                    return
                updates: list[LaneUpdate] = []
                for kind, key, payload, t, forced in item:
                    if kind == "start":
                        eng = self.engine
                        lanes = {lane: LocalLane(run.results[lane], run.prompts[lane], eng.tokenizer, eng.skip_ids)
                                 for lane in run.prompts}
                    elif kind == "token":
                        updates.append(lanes[key].on_token(payload, t, forced))
                    elif kind in ("eos", "length"):
                        updates += lanes[key].finish("done", "stop" if kind == "eos" else "length", t)
                    elif kind == "stopped":
                        updates += lanes[key].finish("stopped", "stopped", t)
                    elif kind == "error":
                        updates += lanes[key].finish("error", "error", t, error=payload)
                yield from updates
        finally:
            # A consumer that goes away (closed tab, cancelled event) stops its rows and waits until the
            # loop has let go of them, so whoever saves the run next reads a settled result.
            run.stop()
            self._leave(ticket)
            for st in lanes.values():
                if st.result.status == "running":
                    list(st.finish("stopped", "stopped", time.perf_counter()))

    def _submit(self, run) -> Ticket:
        tok = self.engine.tokenizer
        close = {lane: tok(p.close_text, add_special_tokens=False)["input_ids"] if p.close_text else []
                 for lane, p in run.prompts.items()}
        with self._cv:
            self._seq += 1
            ticket = Ticket(run, self._seq, close)
            refusal = self.room.refusal(ticket.worst) if self.room else None
            if refusal:  # it could never fit, even alone: say so now rather than queue it forever
                self._close_unstarted(ticket, "error", refusal)
                return ticket
            self._pending.append(ticket)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="step-loop", daemon=True)
                self._thread.start()
                _LOOPS.add(self)
            self._cv.notify()
        return ticket

    def _leave(self, ticket: Ticket) -> None:
        with self._cv:
            waiting = ticket in self._pending
            if waiting:  # it never reached the model: its lanes end empty, as stopped
                self._pending.remove(ticket)
                self._close_unstarted(ticket, "stopped")
        if not ticket.released.wait(RELEASE_WAIT_S):
            log.warning("the step loop kept a stopped run for more than %.0f s", RELEASE_WAIT_S)

    def queue_position(self, run) -> int | None:
        """How many waiting runs are ahead of `run` in arrival order (0: next), None once it runs."""
        with self._cv:
            return next((i for i, t in enumerate(self._pending) if t.run is run), None)

    # --- the step loop ---------------------------------------------------------------------------
    def _loop(self) -> None:
        holding = False
        try:
            while True:
                with self._cv:
                    if self._closing:
                        return
                    while not self._pending and not self.batch.rows:
                        if holding:  # idle: a model swap may take the lock now
                            self.lock.release()
                            holding = False
                        if not self._cv.wait(self.idle_exit_s) and not self._pending:
                            self._thread = None
                            return
                if self.lock is not None and not holding:
                    self.lock.acquire()
                    holding = True
                try:
                    self._turn()
                except Exception as exc:  # a bug here must reach the waiting visitors, not hang them
                    log.exception("the step loop failed")
                    self._fail(self._active + self._drain_pending(), exc)
        finally:
            if holding:
                self.lock.release()

    def close(self) -> None:
        """Stop every run and end the step loop (the interpreter is exiting): a daemon thread still in
        torch when the process ends makes it abort ("terminate called without an active exception")."""
        with self._cv:
            self._closing = True
            thread = self._thread
            for ticket in self._pending + self._active:
                ticket.run.stop()
            self._cv.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(EXIT_JOIN_S)

    def _turn(self) -> None:
        """One turn of the loop: steps 1–4 of the module docstring."""
        stopped = [r for r in self.batch.rows if r.owner.run.stop_event.is_set()]
        if stopped:
            self._end_rows(stopped, "stopped", time.perf_counter())
        admitted = self._admit()
        if admitted:
            rows = [r for t in admitted for r in t.rows]
            try:
                cache, mask, logits = self.batch.forward_prompts(rows, self.engine.pad_id)
            except Exception as exc:  # only the runs being prefilled saw it; the batch is untouched
                self._fail(admitted, exc)
            else:
                try:
                    self.batch.merge(rows, cache, mask)
                except Exception as exc:  # a merge cut short leaves the cache half-written
                    self._fail(self._active, exc)
                else:
                    self._deliver(rows, logits)
                    for ticket in admitted:  # first tokens now, not after the step that follows
                        ticket.flush()
        if self.batch.rows:
            try:
                logits = self.batch.step()
            except Exception as exc:  # a failed step leaves the cache half-written: every row in it ends
                self._fail(self._active, exc)
            else:
                self._count_sharing()
                self._deliver(self.batch.rows, logits)
        for ticket in list(self._active):  # one item per run per turn: its lanes move together
            ticket.flush()

    def _admit(self) -> list[Ticket]:
        """Waiting runs that start now: fewest rows running per owner first, while they fit."""
        chosen: list[Ticket] = []
        with self._cv:
            for ticket in [t for t in self._pending if t.run.stop_event.is_set()]:  # stopped while it waited:
                self._pending.remove(ticket)  # it never runs, even while the batch is full
                self._close_unstarted(ticket, "stopped")
            while self._pending and len(self._active) + len(chosen) < self.max_runs:
                ticket = self._next(chosen)
                worst = [r.worst_tokens for r in self.batch.rows] + [w for t in chosen for w in t.worst]
                if self.room is not None and not self.room.fits(worst + ticket.worst):
                    break  # it waits for room; nothing behind it skips ahead
                self._pending.remove(ticket)
                chosen.append(ticket)
        for ticket in chosen:
            self._start(ticket)
        return chosen

    def _next(self, chosen: list[Ticket]) -> Ticket:
        running = Counter(t.owner for t in self._active for r in t.rows if not r.done)
        running.update(t.owner for t in chosen for _ in t.rows)
        oldest: dict = {}
        for t in self._pending:  # in arrival order: the first seen is each owner's oldest
            oldest.setdefault(t.owner, t)
        return min(oldest.values(), key=lambda t: (running[t.owner], t.seq))

    def _open(self, ticket: Ticket) -> None:
        """The run's results and record exist from here on; its consumer is told."""
        run, t = ticket.run, time.perf_counter()
        run.t_start = t
        run.results = {lane: LaneResult(lane, len(p.input_ids), run.settings[lane], t)
                       for lane, p in run.prompts.items()}
        run.record = self.engine.reproducibility_record(run)
        ticket.put("start", t=t)
        ticket.flush()

    def _start(self, ticket: Ticket) -> None:
        with self._cv:
            for other in self._active:
                other.shared_with.add(ticket.seq)
                ticket.shared_with.add(other.seq)
            self._active.append(ticket)
        self._open(ticket)

    def _close_unstarted(self, ticket: Ticket, kind: str, error: str | None = None) -> None:
        """A run that never reaches the batch (refused, or stopped while it waited) ends with empty lanes."""
        self._open(ticket)
        self._end_rows(ticket.rows, kind, time.perf_counter(), error)

    def _deliver(self, rows: list[Row], logits) -> None:
        """Pick every row's token, hand it to its run, and let the rows that ended leave the batch."""
        eng = self.engine
        picks = pick_tokens(rows, logits, eng.eos_list)
        t = time.perf_counter()
        ended: dict[str, list[Row]] = {"stopped": [], "eos": [], "length": []}
        for row, (tok, forced) in zip(rows, picks, strict=True):
            if row.owner.run.stop_event.is_set():  # Stop came during the step: the row ends here
                ended["stopped"].append(row)
                continue
            row.count += 1
            if tok in eng.eos_ids and not forced:
                ended["eos"].append(row)
                continue
            if row.settings.thinking_budget is not None and not row.budget_spent:
                row.track_budget(eng.tokenizer.decode([tok], skip_special_tokens=False))
            row.last = tok
            row.owner.put("token", row.key, tok, t, forced)
            if row.count >= row.settings.max_new_tokens:
                ended["length"].append(row)
        for kind, done in ended.items():
            if done:
                self._end_rows(done, kind, t)

    def _end_rows(self, rows: list[Row], kind: str, t: float, error: str | None = None) -> None:
        """End `rows` (`kind`: stopped, eos, length or error), drop them from the batch, and release
        every run whose rows have all ended."""
        ending = [row for row in rows if not row.done]
        tickets = {row.owner for row in ending}
        for row in ending:
            row.done = True
        for ticket in tickets:  # before the lanes' last events: whoever saves a lane as it ends reads it
            self._note_sharing(ticket)
        for row in ending:
            row.owner.put(kind, row.key, error, t)
        if threading.current_thread() is self._thread:  # only the loop touches the batch
            self.batch.keep([r for r in self.batch.rows if not r.done])
        for ticket in tickets:
            if all(r.done for r in ticket.rows) and not ticket.released.is_set():
                self._release(ticket)

    @staticmethod
    def _note_sharing(ticket: Ticket) -> None:
        """The run's record says how many rows shared its decode steps, and how many other runs."""
        if ticket.steps:
            ticket.run.record["shared_steps"] = {
                "steps": ticket.steps, "rows_max": ticket.rows_max,
                "rows_mean": round(ticket.rows_sum / ticket.steps, 2), "other_runs": len(ticket.shared_with)}

    def _release(self, ticket: Ticket) -> None:
        with self._cv:
            if ticket in self._active:
                self._active.remove(ticket)
        ticket.flush()
        ticket.events.put(_END)
        ticket.released.set()

    def _count_sharing(self) -> None:
        n = len(self.batch.rows)
        for ticket in self._active:
            ticket.steps += 1
            ticket.rows_sum += n
            ticket.rows_max = max(ticket.rows_max, n)

    def _fail(self, tickets: list[Ticket], exc: BaseException) -> None:
        """End every row of `tickets` as an error that says what happened and what to change."""
        msg = explain_failure(exc)
        log.warning("generation failed for %d run(s): %s", len(tickets), msg)
        rows = [r for t in tickets for r in t.rows]
        if any(r in self.batch.rows for r in rows) and set(self.batch.rows) - set(rows):
            # Rows of other runs share a cache that may now be half-written: they end too.
            rows += [r for r in self.batch.rows if r not in rows]
        self._end_rows(rows, "error", time.perf_counter(), msg)

    def _drain_pending(self) -> list[Ticket]:
        with self._cv:
            waiting, self._pending = self._pending, []
        for ticket in waiting:
            self._start(ticket)
        return waiting


@atexit.register
def _close_loops() -> None:
    for scheduler in list(_LOOPS):
        scheduler.close()


def explain_failure(exc: BaseException) -> str:
    """A failed step in the user's terms: out of memory names the device and what to change."""
    import re

    import torch

    text = str(exc)
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower():
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        gpu = re.search(r"GPU (\d+)", text)
        where = f"cuda:{gpu.group(1)}" if gpu else ("the GPU" if "cuda" in text.lower() else "the CPU's memory")
        return (f"Out of memory on {where} during generation: run fewer lanes at once "
                "(PLAYGROUND_MAX_CONCURRENT_RUNS), lower max new tokens or the thinking budget, shorten the "
                "prompt, load the model in nf4, or spread it over more GPUs. The model is still loaded.")
    return f"Generation failed: {type(exc).__name__}: {exc}"
