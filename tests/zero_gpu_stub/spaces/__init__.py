"""A stand-in for Hugging Face's `spaces` package, which exists only on Spaces (no machine here has
ZeroGPU). It keeps the two properties the playground depends on: `spaces.GPU(duration=…)` runs the
wrapped function in a process forked for the call, and its arguments and every yielded value cross
that boundary pickled. (The real package also attaches and detaches the GPU around the call.)
"""

from __future__ import annotations

import functools
import inspect
import multiprocessing
import os
import pickle

_fork = multiprocessing.get_context("fork")
calls: list[dict] = []  # one entry per wrapped call, in the calling process: for tests to read


def GPU(fn=None, duration: int = 60):  # noqa: N802 (the real package's name)
    if fn is None:
        return functools.partial(GPU, duration=duration)
    if not inspect.isgeneratorfunction(fn):
        raise NotImplementedError("this stand-in wraps generator functions only")

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        payload = pickle.dumps((args, kwargs))  # the real package pickles arguments too
        q = _fork.Queue()

        def child():
            try:
                a, kw = pickle.loads(payload)
                q.put(("pid", os.getpid()))
                for item in fn(*a, **kw):
                    q.put(("item", pickle.dumps(item)))
                q.put(("end", None))
            except BaseException as exc:  # noqa: BLE001 (reported to the caller, as spaces does)
                q.put(("error", f"{type(exc).__name__}: {exc}"))

        proc = _fork.Process(target=child, daemon=True)
        proc.start()
        record = {"duration": duration, "pid": None}
        calls.append(record)
        try:
            while True:
                kind, value = q.get(timeout=600)
                if kind == "pid":
                    record["pid"] = value
                elif kind == "item":
                    yield pickle.loads(value)
                elif kind == "end":
                    return
                else:
                    raise RuntimeError(value)
        finally:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()

    return wrapper
