"""Generation on a ZeroGPU Space: the GPU exists only inside functions wrapped by `spaces.GPU`.

`spaces` runs a wrapped function in a forked worker: the worker inherits the loaded model (fork),
its arguments and every yielded value cross the process boundary pickled. So the worker gets
picklable prompts and settings, runs an ordinary Run there and yields LaneUpdates; this side
mirrors them into its own Run so views, the store and stop work exactly as with a local engine.
A threading.Event cannot cross a fork made after it, so stop travels as a flag file that the
worker polls.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from playground.backends.local.engine import Engine, Run
from playground.config import on_zero_gpu
from playground.lanes import LaneResult, LaneUpdate, add_text, add_token

STOP_POLL_S = 0.05  # how often the worker looks for the stop flag: well under the one-second stop promise

# The engine a forked worker inherits. One per process: a server serves one model at a time.
_ENGINE: Engine | None = None


def _generate_in_worker(prompts: dict, settings: dict, stop_flag: str) -> Iterator[tuple]:
    """Runs in the GPU worker. Yields ("start", t_start, record) once, then ("update", LaneUpdate)
    per event, then ("end", results): the last word on every lane."""
    if _ENGINE is None:
        raise RuntimeError("no engine in this worker: load a model before the first run")
    run = Run(_ENGINE, prompts, settings)
    done = threading.Event()

    def watch():
        while not done.wait(STOP_POLL_S):
            if os.path.exists(stop_flag):
                run.stop()
                return

    threading.Thread(target=watch, name="zero-gpu-stop", daemon=True).start()
    try:
        started = False
        # The parent holds the engine lock for this run; the fork copied it locked, so a step loop of
        # the worker's own runs it (one run per GPU call: ZeroGPU lends the GPU call by call).
        for update in _ENGINE.execute_alone(run):
            if not started:
                started = True
                yield ("start", run.t_start, run.record)
            yield ("update", update)
        yield ("end", run.results)
    finally:
        done.set()


def mirror(result: LaneResult, u: LaneUpdate) -> None:
    """Apply one update to a LaneResult the way the engine built it on the other side."""
    if u.kind == "token":
        add_text(result, u.text, u.reasoning, u.answer, u.t)
        for tok in u.token_ids:
            add_token(result, tok, u.t, u.token_kind, u.forced)
        return
    status = "error" if u.kind == "error" else "stopped" if u.finish_reason == "stopped" else "done"
    result.end(status, u.finish_reason, u.t, u.error)


def zero_gpu_wrap(fn: Callable, duration: int) -> Callable:
    """`spaces.GPU(duration=duration)(fn)` on ZeroGPU, `fn` itself everywhere else."""
    if not on_zero_gpu():
        return fn
    import spaces

    return spaces.GPU(duration=duration)(fn)


class ZeroGpuEngine(Engine):
    """An Engine whose generation runs inside `spaces.GPU(duration=…)`; everything else is local."""

    def __init__(self, loaded, duration_s: int):
        super().__init__(loaded)
        global _ENGINE
        _ENGINE = self
        self.duration_s = duration_s
        self._gpu_generate = zero_gpu_wrap(_generate_in_worker, duration_s)
        self._flags = Path(tempfile.mkdtemp(prefix="pg-zero-gpu-"))

    def _execute(self, run: Run) -> Iterator[LaneUpdate]:
        flag = self._flags / uuid.uuid4().hex
        stopped = finished = False
        with self.lock:
            try:
                for msg in self._gpu_generate(run.prompts, run.settings, str(flag)):
                    if msg[0] == "start":
                        # Fresh results, built up by mirroring every update from the first one on.
                        run.t_start, run.record = msg[1], {**msg[2], "zero_gpu": True}
                        run.results = {lane: LaneResult(lane, len(p.input_ids), run.settings[lane], run.t_start)
                                       for lane, p in run.prompts.items()}
                    elif msg[0] == "update":
                        mirror(run.results[msg[1].lane], msg[1])
                        yield msg[1]
                    else:
                        run.results.update(msg[1])
                    if run.stop_event.is_set() and not stopped:
                        stopped = True
                        flag.touch()
                finished = True
            except Exception as exc:  # a worker that dies or cannot start ends the run, never the server
                msg = f"The GPU worker failed: {type(exc).__name__}: {exc}"
                if not run.results:  # it failed before its first event: every lane still gets a result
                    run.t_start = run.t_start or time.perf_counter()
                    run.results = {lane: LaneResult(lane, len(p.input_ids), run.settings[lane], run.t_start)
                                   for lane, p in run.prompts.items()}
                for result in run.results.values():
                    if result.status == "running":
                        result.status, result.finish_reason, result.error = "error", "error", msg
                        yield LaneUpdate(result.lane, "error", time.perf_counter(), finish_reason="error", error=msg)
                finished = True
            finally:
                if finished:
                    flag.unlink(missing_ok=True)
                else:  # the consumer went away (closed tab): the worker must stop too
                    flag.touch()
