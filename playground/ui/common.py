"""What every handler needs: who the visitor is, and the key of a cell's run in flight."""

from __future__ import annotations

from ..owner import COOKIE_NAME, verify


def owner_of(request, secret: bytes) -> str:
    """Who owns what this request touches: the logged-in user when login is on, else the signed
    cookie the server sets on first visit.

    An API client that never loaded the page has no cookie: it gets an identity of its own for
    its connection (gradio's session hash), so it can never see anyone else's sessions."""
    username = getattr(request, "username", None) if request is not None else None
    if isinstance(username, str) and username:
        return f"user:{username}"
    cookie = None
    if request is not None:
        try:
            cookie = request.cookies.get(COOKIE_NAME)
        except AttributeError:
            cookie = None
    owner = verify(cookie, secret)
    if owner:
        return owner
    session_hash = getattr(request, "session_hash", None) or "none"
    return f"anon:{session_hash}"


def run_key(request, cell_id: str) -> str:
    """Runs in flight are keyed per browser connection and cell, so Stop reaches only that run."""
    return f"{getattr(request, 'session_hash', None) or 'none'}:{cell_id}"
