"""Who a visitor is: the logged-in user, the Hugging Face account, or, without a login, an unguessable
owner id in a signed, HttpOnly cookie (the routes and the page both ask `owner_of`).

The id is 128+ bits from `secrets`; the cookie carries it with an HMAC so a visitor cannot
forge someone else's id. The signing secret comes from PLAYGROUND_SECRET, else it is made once
and kept in the home folder, so identities survive restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from playground.errors import PlaygroundError

COOKIE_NAME = "pg_owner"
OWNER_ID_BYTES = 24  # 192 bits
SECRET_FILE = "secret.key"
COOKIE_MAX_AGE_S = 400 * 24 * 3600  # browsers cap cookie lifetime at 400 days


def load_secret(home: Path) -> bytes:
    env = os.environ.get("PLAYGROUND_SECRET")
    if env:
        return env.encode()
    path = Path(home) / SECRET_FILE
    if path.is_file():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32).encode()
    # O_EXCL: two processes starting together agree on whichever secret was written first.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(value)
    return value


def new_owner_id() -> str:
    return secrets.token_urlsafe(OWNER_ID_BYTES)


def sign(owner_id: str, secret: bytes) -> str:
    mac = hmac.new(secret, owner_id.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{owner_id}.{mac}"


def verify(cookie: str | None, secret: bytes) -> str | None:
    """The owner id inside a valid cookie, else None."""
    if not cookie or "." not in cookie or len(cookie) > 200:
        return None
    owner_id, mac = cookie.rsplit(".", 1)
    expected = sign(owner_id, secret).rsplit(".", 1)[1]
    return owner_id if hmac.compare_digest(mac, expected) else None


# --- who owns what a request touches ----------------------------------------------------------------


class SignInRequired(PlaygroundError):
    """Sign in with Hugging Face is on and the visitor has not signed in."""


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
            raise SignInRequired(SIGN_IN_FIRST)
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
