"""What every handler needs: who the visitor is (as gr.Error when they must sign in first), and
the key of a cell's run in flight."""

from __future__ import annotations

import gradio as gr

from playground.errors import PlaygroundError
from playground.web import identity

# Every run on the model shares one queue pool: the model generates one batch at a time.
GPU_POOL = "gpu"


def owner_of(request, secret: bytes) -> str:
    """identity.owner_of, with its refusal shown in the page."""
    try:
        return identity.owner_of(request, secret)
    except PlaygroundError as exc:
        raise gr.Error(str(exc)) from None


def run_key(request, cell_id: str) -> str:
    """Runs in flight are keyed per browser connection and cell, so Stop reaches only that run."""
    return f"{getattr(request, 'session_hash', None) or 'none'}:{cell_id}"
