"""Persistence: sessions of notebook cells, every run of every lane, and share tokens, in SQLite
(the embedded default) or PostgreSQL (several replicas on one database).

`open_store(target)` migrates the database to the latest schema and returns a `SessionStore`,
whose methods take plain values and return frozen dataclasses (records.py), so nothing outside
this package touches SQLAlchemy. Every method that reads or writes a session takes its `owner`
and raises `NotFound` alike for a missing session and for someone else's.
"""

from __future__ import annotations

from playground.errors import NotFound, StoreUnavailable

from .codec import TokenArray
from .db import DB_URL_ENV, default_db_path, default_target, describe
from .opening import open_store
from .records import CellFull, CellInfo, Execution, RunInfo, SessionFull, SessionInfo, ShareInfo
from .replicas import BEATS_PER_LEASE, ReplicaLease
from .sqlite import BUSY_TIMEOUT_S
from .store import SessionStore

__all__ = ["BEATS_PER_LEASE", "BUSY_TIMEOUT_S", "DB_URL_ENV", "CellFull", "CellInfo", "Execution", "NotFound",
           "ReplicaLease", "RunInfo", "SessionFull", "SessionInfo", "SessionStore", "ShareInfo", "StoreUnavailable",
           "TokenArray", "default_db_path", "default_target", "describe", "open_store"]
