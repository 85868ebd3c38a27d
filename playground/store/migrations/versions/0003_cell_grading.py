"""Cells carry an expected answer and a grader; runs keep the grade they got.

"Did reasoning pay?" needs to know whether each lane's answer was right. The cell holds what is
right (expected, free text) and how to judge it (grader, a small JSON spec, see graders.py); a
run holds its grade, because the python grader runs code in a sandbox (seconds) and a session
page must not rerun every test on each render. All three columns are nullable, so every existing
row stays valid (ungraded) without a backfill, and SQLite adds them in place.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cells", sa.Column("expected", sa.Text(), nullable=True))
    op.add_column("cells", sa.Column("grader", sa.JSON(), nullable=True))
    op.add_column("runs", sa.Column("grade", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("grade")
    with op.batch_alter_table("cells") as batch:
        batch.drop_column("grader")
        batch.drop_column("expected")
