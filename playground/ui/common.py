"""What every handler needs: one error wrapper, who the visitor is, and the key of a cell's run in flight.

Every function the page or an API client calls goes through `guarded` (or `listen`, which applies
it): our errors (PlaygroundError, SignInRequired from owner_of included) reach the visitor as their
message, anything else as "a bug" (service.explain), never as gradio's bare "Error".
"""

from __future__ import annotations

import functools
import inspect

import gradio as gr

from playground.app.service import explain
from playground.web.identity import owner_of

__all__ = ["GPU_POOL", "guarded", "listen", "owner_of", "run_key"]

# Every run on the model shares one queue pool: the model generates one batch at a time.
GPU_POOL = "gpu"


def guarded(fn):
    """fn with every exception turned into gr.Error(explain(exc)); a gr.Error passes as raised.

    Generators stay generators (gradio streams them), and functools.wraps keeps the signature and
    annotations gradio reads to inject gr.Request and gr.Progress."""
    if getattr(fn, "guarded", False):
        return fn
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:
                raise gr.Error(explain(exc)) from None
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


def listen(trigger, fn, inputs=None, outputs=None, **kwargs):
    """trigger(guarded(fn), …) for a page handler: private, and (unless it joins a pool such as
    GPU_POOL) without a concurrency limit. `trigger` is an event method (btn.click) or a list for gr.on."""
    if "concurrency_id" not in kwargs:
        kwargs.setdefault("concurrency_limit", None)
    kwargs.setdefault("api_visibility", "private")
    if isinstance(trigger, list):
        return gr.on(trigger, guarded(fn), inputs, outputs, **kwargs)
    return trigger(guarded(fn), inputs, outputs, **kwargs)


def run_key(request, cell_id: str) -> str:
    """Runs in flight are keyed per browser connection and cell, so Stop reaches only that run."""
    return f"{getattr(request, 'session_hash', None) or 'none'}:{cell_id}"
