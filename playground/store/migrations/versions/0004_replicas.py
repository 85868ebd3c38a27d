"""Several server processes (replicas) on one database: runs name the replica that runs them, and
each live replica keeps a heartbeat row.

With one server per database, "running" at start-up meant "its process died". With replicas on
one PostgreSQL, another replica's runs are running for real: each replica's runs are marked with
its id, and a live replica marks a dead one's runs interrupted once that one's heartbeat is older
than the lease (see playground/store/replicas.py). runs.replica is nullable: rows made before
this revision, and copies, belong to no replica. SQLite adds the column in place.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("replica", sa.String(100), nullable=True))
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("replicas")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("replica")
