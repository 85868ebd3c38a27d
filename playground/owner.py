"""Who a visitor is, without a login: an unguessable owner id in a signed, HttpOnly cookie.

The id is 128+ bits from `secrets`; the cookie carries it with an HMAC so a visitor cannot
forge someone else's id. The signing secret comes from PLAYGROUND_SECRET, else it is made once
and kept in the home folder, so identities survive restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

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
