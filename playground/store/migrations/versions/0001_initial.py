"""The first schema: sessions, cells, runs (one row per lane per execution) and share tokens.

Written by hand as a frozen snapshot: it must not import models.py, whose classes describe the
head schema and move on with later revisions.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_sessions_owner_updated_at", "sessions", ["owner", "updated_at"])

    op.create_table(
        "cells",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("session_id", sa.String(32), sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("system_prompt", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_cells_session_position", "cells", ["session_id", "position"])

    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("cell_id", sa.String(32), sa.ForeignKey("cells.id", ondelete="CASCADE"), nullable=False),
        sa.Column("execution", sa.Integer(), nullable=False),
        sa.Column("lane", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("generated_tokens", sa.Integer(), nullable=False),
        sa.Column("reasoning_tokens", sa.Integer(), nullable=False),
        sa.Column("answer_tokens", sa.Integer(), nullable=False),
        sa.Column("finish_reason", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        # Large columns last: SQLite reads a row's columns in order, so a query that stops at
        # status never reads the overflow pages holding texts and token arrays.
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("raw_text", sa.Text(), nullable=False),
        sa.Column("reasoning_text", sa.Text(), nullable=False),
        sa.Column("answer_text", sa.Text(), nullable=False),
        # Packed little-endian int32 ids and float64 times (see playground/store/codec.py).
        sa.Column("token_ids", sa.LargeBinary(), nullable=False),
        sa.Column("token_times", sa.LargeBinary(), nullable=False),
        sa.Column("token_kinds", sa.Text(), nullable=False),
        sa.Column("forced", sa.Text(), nullable=False),
    )
    op.create_index("ux_runs_cell_execution_lane", "runs", ["cell_id", "execution", "lane"], unique=True)
    # postgresql_where was added when PostgreSQL became the store's second engine; SQLite ignores it, so
    # every SQLite file this revision ever made is the same, and PostgreSQL gets the same partial index.
    op.create_index("ix_runs_running", "runs", ["status"], sqlite_where=sa.text("status = 'running'"),
                    postgresql_where=sa.text("status = 'running'"))

    op.create_table(
        "shares",
        sa.Column("token", sa.String(200), primary_key=True),
        sa.Column("session_id", sa.String(32), sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_shares_session_id", "shares", ["session_id"])


def downgrade() -> None:
    for table in ("shares", "runs", "cells", "sessions"):
        op.drop_table(table)
