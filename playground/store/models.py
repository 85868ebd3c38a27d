"""The tables, as SQLAlchemy 2 declarative models: the schema at Alembic's head.

The migrations in `migrations/versions/` are frozen snapshots written by hand and never import
these classes; `schema_drift()` (db.py) and its test keep the two in agreement.
Datetimes are stored as naive UTC (SQLite has no time zones) and come back as aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

CELL_KINDS = ("prompt", "note")
REPLICA_ID_CHARS = 100


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out; naive UTC ISO text in the file, so it sorts."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store: pass an aware (UTC) datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class SessionRow(Base):
    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_owner_updated_at", "owner", "updated_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The (owner, updated_at) index also serves owner-only lookups: no separate owner index.
    owner: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    forked_from: Mapped[str | None] = mapped_column(String(32), nullable=True)


class CellRow(Base):
    __tablename__ = "cells"
    # Positions are dense (0..n-1) per session but not UNIQUE: SQLite checks uniqueness row by
    # row during an UPDATE, so shifting a block of positions by one would fail half-way.
    __table_args__ = (Index("ix_cells_session_position", "session_id", "position"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(32), ForeignKey("sessions.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    prompt: Mapped[str] = mapped_column(Text)
    system_prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    note: Mapped[str] = mapped_column(Text)
    settings: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Added by 0003 (appended, as SQLite's ADD COLUMN does): what a right answer is and how to judge it.
    expected: Mapped[str | None] = mapped_column(Text, nullable=True)
    grader: Mapped[dict | None] = mapped_column(JSON(none_as_null=True), nullable=True)


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (
        # One row per lane per execution; its leading cell_id doubles as the cell_id index.
        Index("ux_runs_cell_execution_lane", "cell_id", "execution", "lane", unique=True),
        # mark_interrupted() runs at every start-up (and replicas.reap_dead every lease): a partial
        # index finds the few running rows without scanning every run ever made.
        Index("ix_runs_running", "status", sqlite_where=text("status = 'running'"),
              postgresql_where=text("status = 'running'")),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    cell_id: Mapped[str] = mapped_column(String(32), ForeignKey("cells.id", ondelete="CASCADE"))
    execution: Mapped[int] = mapped_column(Integer)
    lane: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    generated_tokens: Mapped[int] = mapped_column(Integer)
    reasoning_tokens: Mapped[int] = mapped_column(Integer)
    answer_tokens: Mapped[int] = mapped_column(Integer)
    finish_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The large columns come last: SQLite reads a row's columns in order, so scans that stop at
    # status never touch the overflow pages that hold texts and token arrays.
    metrics: Mapped[dict | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    record: Mapped[dict] = mapped_column(JSON)
    raw_text: Mapped[str] = mapped_column(Text)
    reasoning_text: Mapped[str] = mapped_column(Text)
    answer_text: Mapped[str] = mapped_column(Text)
    # Layout of the token columns: codec.py (packed int32 / float64, one char per token).
    token_ids: Mapped[bytes] = mapped_column(LargeBinary)
    token_times: Mapped[bytes] = mapped_column(LargeBinary)  # seconds since the run started
    token_kinds: Mapped[str] = mapped_column(Text)  # "r"/"a"
    forced: Mapped[str] = mapped_column(Text)  # "0"/"1"
    # Added by 0003: the answer's grade, cached (a python test costs seconds); see graders.Grade.
    grade: Mapped[dict | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    # Added by 0004: the server process (replicas.id) that runs it; None for runs from before 0004
    # and for copies, which nothing runs.
    replica: Mapped[str | None] = mapped_column(String(REPLICA_ID_CHARS), nullable=True)
    # Added by 0005: the conversation turn this execution is (1 = the first prompt), the execution
    # number of the turn it continues (None for turn 1), and what the user asked at this turn.
    turn: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    parent: Mapped[int | None] = mapped_column(Integer, nullable=True)
    turn_prompt: Mapped[str | None] = mapped_column(Text, nullable=True)


class ShareRow(Base):
    __tablename__ = "shares"
    __table_args__ = (Index("ix_shares_session_id", "session_id"),)

    token: Mapped[str] = mapped_column(String(200), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(32), ForeignKey("sessions.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ReplicaRow(Base):
    """Added by 0004: one row per live server process on this database, kept fresh by its heartbeat."""

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(REPLICA_ID_CHARS), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())
