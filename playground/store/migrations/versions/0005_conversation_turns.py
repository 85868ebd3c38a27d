"""Runs belong to a conversation turn: a follow-up continues an earlier execution of its cell.

An execution of a cell is one turn of one branch of its conversation: ``turn`` (1 for a first
prompt), ``parent`` (the execution number of the previous turn it continues; NULL for turn 1) and
``turn_prompt`` (the text the user asked at this turn; the cell's prompt is turn 1's, and may be
edited later). Re-running a turn is a new execution with the same parent; editing an earlier turn
gives it a new execution under the same parent, so the old branch's later turns stay readable as
versions. Every existing execution was a first prompt: ``turn`` defaults to 1 and the other two are
nullable, so SQLite adds the columns in place with no backfill.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("turn", sa.Integer(), nullable=False, server_default="1"))
    op.add_column("runs", sa.Column("parent", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("turn_prompt", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("turn_prompt")
        batch.drop_column("parent")
        batch.drop_column("turn")
