"""Checker workers with a deadline: how the math and gym graders run Math-Verify and Reasoning Gym's
verifiers from any thread, with a runaway check stopped.

A small pool of long-lived child processes (worker.py) answers one request at a time each. A
request that runs past its deadline, or a worker that dies, costs that worker: it is killed with
its process group and a fresh one is started on the next call. Callers wait for a free worker,
and each wait is bounded by the deadlines of the requests ahead of it.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from playground.errors import CheckerFailed, CheckTimeout
from playground.evaluation.worker import FAMILIES

# Named limits of the checker workers.
CHECK_DEADLINE_S = 5.0  # one check (read both sides and compare); Math-Verify's own default is 5 s too
CHECK_START_S = 60.0  # start a worker and import a library (reasoning_gym: ~3 s here, more under load)
CHECK_MEMORY_BYTES = 2 * 1024**3  # address space of a worker: sympy + reasoning_gym need ~0.5 GB
CHECK_WORKERS = 2  # concurrent checks; the machines this runs on have few cores to spare
MAX_REPLY_BYTES = 1024 * 1024

_ROOT = str(Path(__file__).resolve().parents[2])


class Worker:
    """One child process and its pipes. Not thread-safe: the pool hands it to one caller at a time."""

    def __init__(self, memory_bytes: int = CHECK_MEMORY_BYTES):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p),
               # numpy's BLAS reserves address space per thread: one thread keeps a worker small.
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "playground.evaluation.worker", str(memory_bytes)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env, start_new_session=True, close_fds=True)
        self.loaded: set[str] = set()
        self._buffer = b""
        self._last_id = 0

    def request(self, op: str, args: dict, deadline_s: float) -> dict:
        """The worker's reply to one request. Raises CheckTimeout past the deadline, CheckerFailed
        when the worker is gone or out of step: either way the worker must be killed."""
        self._last_id += 1
        line = json.dumps({"id": self._last_id, "op": op, "args": args}, ensure_ascii=True) + "\n"
        try:
            self.proc.stdin.write(line.encode())
            self.proc.stdin.flush()
        except OSError:
            raise CheckerFailed(f"the checker worker exited (status {self.proc.poll()})") from None
        end = time.monotonic() + deadline_s
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = end - time.monotonic()
            if left <= 0:
                raise CheckTimeout(f"the check took over {deadline_s:g} s and was stopped")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise CheckerFailed(f"the checker worker exited (status {self.proc.wait()})")
            self._buffer += chunk
            if len(self._buffer) > MAX_REPLY_BYTES:
                raise CheckerFailed(f"the checker's reply is over {MAX_REPLY_BYTES:,} bytes (MAX_REPLY_BYTES)")
        line_bytes, _, self._buffer = self._buffer.partition(b"\n")
        reply = json.loads(line_bytes)
        if reply.get("id") != self._last_id:
            raise CheckerFailed("the checker worker answered out of step")
        return reply

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


class CheckerPool:
    def __init__(self, workers: int = CHECK_WORKERS, memory_bytes: int = CHECK_MEMORY_BYTES):
        self.size = workers
        self.memory_bytes = memory_bytes
        self._cond = threading.Condition()
        self._idle: list[Worker] = []
        self._live = 0
        self.started = 0  # workers started over the pool's life: a test sees a killed one replaced

    def call(self, op: str, args: dict, deadline_s: float = CHECK_DEADLINE_S):
        """Run one op in a worker; its result. Raises CheckTimeout, or CheckerFailed with the
        library's own error (the worker is kept) or the worker's end (it is replaced)."""
        worker = self._take()
        healthy = False
        try:
            family = FAMILIES[op]
            if family not in worker.loaded:
                reply = worker.request("load", {"family": family}, CHECK_START_S)
                if reply.get("ok"):
                    worker.loaded.add(family)
            if family in worker.loaded:
                reply = worker.request(op, args, deadline_s)
            healthy = True
        finally:
            self._give(worker, healthy)
        if not reply.get("ok"):
            raise CheckerFailed(str(reply.get("error")))
        return reply.get("result")

    def _take(self) -> Worker:
        with self._cond:
            while True:
                while not self._idle and self._live >= self.size:
                    self._cond.wait()
                if not self._idle:
                    break
                worker = self._idle.pop()
                if worker.proc.poll() is None:
                    return worker
                self._live -= 1  # died while idle (killed from outside, out of memory): start a fresh one
            self._live += 1
            self.started += 1
        try:
            return Worker(self.memory_bytes)
        except OSError as exc:
            with self._cond:
                self._live -= 1
                self._cond.notify()
            raise CheckerFailed(f"could not start a checker worker: {exc}") from None

    def _give(self, worker: Worker, healthy: bool) -> None:
        if not healthy:
            worker.kill()
        with self._cond:
            if healthy:
                self._idle.append(worker)
            else:
                self._live -= 1
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
            self._live -= len(idle)
        for w in idle:
            w.kill()


_default: CheckerPool | None = None
_default_lock = threading.Lock()


def default_pool() -> CheckerPool:
    """The process's pool, started on first use and closed at exit."""
    global _default
    with _default_lock:
        if _default is None:
            _default = CheckerPool()
            atexit.register(_default.close)
        return _default
