"""Sessions remember where a fork came from: sessions.forked_from (nullable, no foreign key).

Forking a shared session arrived after the first schema. The column is nullable so every
existing row stays valid without a backfill, and SQLite's plain ALTER TABLE ADD COLUMN does it
in place (no table copy). No foreign key: the source may be deleted later, and a fork must
outlive it, keeping the id as a plain note of provenance.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("forked_from", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("forked_from")
