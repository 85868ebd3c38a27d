"""What every handler needs: one error wrapper, who the visitor is, and the key of a cell's run in flight.

Every function the page or an API client calls goes through `guarded` (or `listen`, which applies
it): our errors (PlaygroundError, SignInRequired from owner_of included) reach the visitor as their
message, anything else as "a bug" (service.explain), never as gradio's bare "Error".
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path

import gradio as gr

from playground.app.service import explain
from playground.web.identity import owner_of

__all__ = ["GPU_POOL", "STATIC", "guarded", "listen", "nothing_like", "owner_of", "page", "run_key", "static_text"]

# Every run on the model shares one queue pool: the model generates one batch at a time.
GPU_POOL = "gpu"
STATIC = Path(__file__).resolve().parents[2] / "static"  # the page's own scripts and styles


def static_text(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def guarded(fn, *, quiet_end: bool = False):
    """fn with every exception turned into gr.Error(explain(exc)); a gr.Error passes as raised.

    Generators stay generators (gradio streams them), and functools.wraps keeps the signature and
    annotations gradio reads to inject gr.Request and gr.Progress. quiet_end (page handlers, never
    API endpoints, whose clients read the last update as the result): a generator ends with one more
    update that changes nothing, because gradio's closing message repeats the last update whole, which
    would send it twice, and land after writers that came since (gate.py)."""
    if getattr(fn, "guarded", False):
        return fn
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            last = None
            try:
                for last in fn(*args, **kwargs):
                    yield last
            except gr.Error:
                raise
            except Exception as exc:
                raise gr.Error(explain(exc)) from None
            if quiet_end and last is not None:
                yield nothing_like(last)
        stream.guarded = True
        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise gr.Error(explain(exc)) from None
    call.guarded = True
    return call


def nothing_like(update):
    """An update of the same shape as `update` that changes nothing."""
    if isinstance(update, dict):
        return {next(iter(update)): gr.skip()} if update else update
    if isinstance(update, tuple | list):
        return tuple(gr.skip() for _ in update)
    return gr.skip()


def page(fn):
    """The wrapper of a page handler chained with .then (listen applies it to the others)."""
    return guarded(fn, quiet_end=True)


def listen(trigger, fn, inputs=None, outputs=None, **kwargs):
    """trigger(guarded(fn), …) for a page handler: private, no loading overlay (a quick handler's spinner
    costs the page more than the handler), and (unless it joins a pool such as GPU_POOL) without a
    concurrency limit. `trigger` is an event method (btn.click) or a list for gr.on."""
    if "concurrency_id" not in kwargs:
        kwargs.setdefault("concurrency_limit", None)
    kwargs.setdefault("api_visibility", "private")
    kwargs.setdefault("show_progress", "hidden")
    if isinstance(trigger, list):
        return gr.on(trigger, page(fn), inputs, outputs, **kwargs)
    return trigger(page(fn), inputs, outputs, **kwargs)


def run_key(request, cell_id: str) -> str:
    """Runs in flight are keyed per browser connection and cell, so Stop reaches only that run."""
    return f"{getattr(request, 'session_hash', None) or 'none'}:{cell_id}"
