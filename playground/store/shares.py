"""SessionStore's share links: read-only tokens for a session, revocable, readable without its owner."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from playground.errors import InvalidInput, NotFound

from .checks import check_owner, check_share_token
from .models import utcnow
from .queries import MISSING_SHARE, load_full, owned_session, sessions_t, shared_source, shares_t
from .records import SessionFull, ShareInfo


class ShareMethods:
    """Mixed into SessionStore, whose _read/_write transactions these methods use."""

    def create_share(self, owner: str, session_id: str, token: str) -> str:
        """Register `token` (the caller makes it with secrets.token_urlsafe(32)) as a read-only link."""
        check_share_token(token)
        try:
            with self._write() as s:
                owned_session(s, owner, session_id)
                s.execute(shares_t.insert().values(token=token, session_id=session_id, created_at=utcnow()))
        except IntegrityError:
            raise InvalidInput("This share token is already in use: make a new one.") from None
        return token

    def revoke_share(self, owner: str, token: str) -> None:
        """The link stops working at once; revoking twice is harmless."""
        check_owner(owner)
        with self._write() as s:
            row = s.execute(select(shares_t.c.token).join(sessions_t, sessions_t.c.id == shares_t.c.session_id)
                            .where(shares_t.c.token == token, sessions_t.c.owner == owner)).first()
            if row is None:
                raise NotFound(MISSING_SHARE)
            s.execute(update(shares_t).where(shares_t.c.token == token, shares_t.c.revoked_at.is_(None))
                      .values(revoked_at=utcnow()))

    def shared_session(self, token: str) -> SessionFull:
        """The session behind a live share token, for anyone holding it. Its owner comes back
        blank: an owner identity may be a browser's secret, which would let a viewer act as it."""
        with self._read() as s:
            return replace(load_full(s, shared_source(s, token)), owner="")

    def list_shares(self, owner: str, session_id: str) -> list[ShareInfo]:
        """Every token of the session, revoked ones included, newest first."""
        with self._read() as s:
            owned_session(s, owner, session_id)
            rows = s.execute(select(shares_t.c.token, shares_t.c.session_id, shares_t.c.created_at,
                                    shares_t.c.revoked_at).where(shares_t.c.session_id == session_id)
                             .order_by(shares_t.c.created_at.desc()))
            return [ShareInfo(*r) for r in rows]
