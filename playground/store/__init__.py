"""Persistence: sessions of notebook cells, every run of every lane, and share tokens, in SQLite.

`open_store(path)` migrates the file to the latest schema and returns a `SessionStore`, whose
methods take plain values and return frozen dataclasses (records.py), so nothing outside this
package touches SQLAlchemy. Every method that reads or writes a session takes its `owner` and
raises `NotFound` alike for a missing session and for someone else's.
"""

from __future__ import annotations

from playground.errors import NotFound, StoreUnavailable

from .codec import TokenArray
from .db import BUSY_TIMEOUT_S, default_db_path
from .records import CellFull, CellInfo, Execution, RunInfo, SessionFull, SessionInfo, ShareInfo
from .store import SessionStore, open_store

__all__ = ["BUSY_TIMEOUT_S", "CellFull", "CellInfo", "Execution", "NotFound", "RunInfo", "SessionFull",
           "SessionInfo", "SessionStore", "ShareInfo", "StoreUnavailable", "TokenArray", "default_db_path",
           "open_store"]
