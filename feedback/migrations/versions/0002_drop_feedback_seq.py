"""Drop feedback.seq: it was always 0 (feedback order is created_at, then id).

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
    with op.batch_alter_table("feedback") as batch:  # SQLite rebuilds the table; PostgreSQL drops the column
        batch.drop_column("seq")


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("seq", sa.Integer(), nullable=False, server_default="0"))
