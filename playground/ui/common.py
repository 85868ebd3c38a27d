"""What every handler needs: who the visitor is, and the key of a cell's run in flight."""

from __future__ import annotations

import time

import gradio as gr

from ..owner import COOKIE_NAME, verify

SIGN_IN_FIRST = "Sign in with Hugging Face first (the button at the top of the page): this playground requires it."


def hf_user(request) -> str | None:
    """The Hugging Face username of a visitor signed in through OAuth, else None.

    gradio keeps the OAuth result in a signed session cookie, read through the SessionMiddleware it
    installs only when the page has a LoginButton (PLAYGROUND_HF_OAUTH)."""
    session = _oauth_session(request)
    info = (session or {}).get("oauth_info")
    if not isinstance(info, dict) or float(info.get("expires_at") or 0) <= time.time():
        return None
    name = (info.get("userinfo") or {}).get("preferred_username")
    return name if isinstance(name, str) and name else None


def _oauth_session(request) -> dict | None:
    raw = getattr(request, "request", None)
    scope = getattr(raw, "scope", None)
    return scope.get("session") if isinstance(scope, dict) else None


def owner_of(request, secret: bytes) -> str:
    """Who owns what this request touches: the logged-in user when login is on, else the signed
    cookie the server sets on first visit.

    An API client that never loaded the page has no cookie: it gets an identity of its own for
    its connection (gradio's session hash), so it can never see anyone else's sessions."""
    username = getattr(request, "username", None) if request is not None else None
    if isinstance(username, str) and username:
        return f"user:{username}"
    if _oauth_session(request) is not None:  # Sign in with HF is on: no anonymous visitors
        user = hf_user(request)
        if user is None:
            raise gr.Error(SIGN_IN_FIRST)
        return f"hf:{user}"
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
