"""Which cell a browser tab shows in its open-cell view, and who may write into that view.

The page has ONE open-cell view (a fixed set of components). Several events write into it: opening
a cell, a run streaming its lanes, the live charts. A write that was decided for cell A must never
land after the view switched to cell B. gradio sends an event's output when the handler returns (or,
for a generator, when it yields), so every writer here is a generator that holds the tab's gate from
its decision until gradio resumes it, that is, until its output is queued to the browser:

    with gate.writing(cell_id) as ok:    # a run's update: skipped at once if the gate is taken
        if ok:
            yield outputs
    with gate.opening(cell_id):          # opening a cell: waits for a write in progress, then switches
        yield outputs

Plain Python (no gradio): tests drive it from threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field

# How long opening a cell waits for a write in progress (a write lasts as long as gradio takes to queue
# one update: milliseconds). Past it the open goes ahead: a stale update is then the worst that happens.
OPEN_WAIT_S = 2.0
MAX_TABS = 10_000  # gates kept; the oldest tab's is forgotten first (abandoned tabs never say goodbye)


@dataclass
class Gate:
    """One tab's open-cell view: the cell it shows, the runs it follows, and its write lock."""

    cell_id: str | None = None
    session_id: str | None = None  # the session whose rows the tab has
    pending: set = field(default_factory=set)  # cells whose run was asked for and has not started
    live: dict = field(default_factory=dict)  # cell id -> its run in flight (a RunLike)
    finished: list = field(default_factory=list)  # cells whose run ended since the last settle
    seq: int = 0  # of the last message sent to the tab's list (rows.py)
    panels: set = field(default_factory=set)  # the tab's open chart panels (insights.py)
    folded: set = field(default_factory=set)  # cells whose running trace was folded once already
    # What opening cells last put into the view's read-only components (see unchanged_dropped): anything
    # else that writes into the view forgets it, so it only ever matches what the page shows.
    sent: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def writing(self, cell_id: str, wait: bool = False):
        """ok=True (and the view is held until the block ends) only when `cell_id` is the open cell and no
        one else is writing. A run's stream does not wait (wait=False: it is never slowed by the page);
        a one-off write (a chart, a title) waits as long as opening does."""
        if not self.lock.acquire(timeout=OPEN_WAIT_S if wait else 0):
            yield False
            return
        try:
            ok = self.cell_id == cell_id
            if ok:
                self.sent.clear()
            yield ok
        finally:
            self.lock.release()

    @contextmanager
    def opening(self, cell_id: str | None):
        """Make `cell_id` (None: nothing) the open cell once the write in progress, if any, is queued."""
        got = self.lock.acquire(timeout=OPEN_WAIT_S)
        try:
            self.cell_id = cell_id
            yield
        finally:
            if got:
                self.lock.release()

    def next_seq(self) -> int:
        with self._guard:
            self.seq += 1
            return self.seq

    def unchanged_dropped(self, values: dict, keep: set) -> dict:
        """`values` (component -> value) less the read-only ones (`keep` lists them) whose value is the one
        the view already shows: opening one unrun cell after another then re-sends nothing of its lanes.
        Call it inside opening()."""
        out = {}
        for component, value in values.items():
            if component in keep and isinstance(value, str | None):
                if self.sent.get(component, ...) == value:
                    continue
                self.sent[component] = value
            out[component] = value
        return out

    # --- runs the tab follows ---------------------------------------------------------------
    def asked(self, cell_id: str) -> None:
        with self._guard:
            self.pending.add(cell_id)

    def started(self, cell_id: str, run) -> None:
        with self._guard:
            self.pending.discard(cell_id)
            self.folded.discard(cell_id)
            self.live[cell_id] = run

    def fold_once(self, cell_id: str):
        """A callable answering True the first time only (per run): fold the trace once its answer starts."""
        def first() -> bool:
            with self._guard:
                if cell_id in self.folded:
                    return False
                self.folded.add(cell_id)
                return True
        return first

    def ended(self, cell_id: str) -> None:
        """The run of `cell_id` is over (done, stopped, failed, or refused before it started): the next
        settle shows the cell's row as the store has it."""
        with self._guard:
            self.pending.discard(cell_id)
            self.live.pop(cell_id, None)
            if cell_id not in self.finished:
                self.finished.append(cell_id)

    def live_runs(self) -> dict:
        with self._guard:
            return dict(self.live)

    def take_finished(self) -> list[str]:
        with self._guard:
            out, self.finished = self.finished, []
            return out

    def following(self) -> bool:
        """True while a run of this tab waits, runs, or ended unsettled: the live charts keep ticking."""
        with self._guard:
            return bool(self.pending or self.live or self.finished)


class Gates:
    """The gate of every tab, by gradio session hash (one per page load)."""

    def __init__(self, max_tabs: int = MAX_TABS):
        self._gates: OrderedDict[str, Gate] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_tabs

    def of(self, request) -> Gate:
        key = getattr(request, "session_hash", None) or "none"
        with self._lock:
            gate = self._gates.get(key)
            if gate is None:
                gate = self._gates[key] = Gate()
                while len(self._gates) > self._max:
                    self._gates.popitem(last=False)
            else:
                self._gates.move_to_end(key)
            return gate

