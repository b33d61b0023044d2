"""Audit events record where an action came from and how it ended.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ip", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("user_agent", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("outcome", sa.String(length=16), nullable=True))


def downgrade() -> None:
    """Revert this revision.

    Events written since the upgrade hashed their origin and outcome: without these columns they no
    longer verify.
    """
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("outcome")
        batch_op.drop_column("user_agent")
        batch_op.drop_column("ip")
