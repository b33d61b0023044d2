"""E-mail address changes confirmed from both addresses.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from glucoshare.db.base import UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "email_changes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("new_email_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("new_token_sha256", sa.String(length=64), nullable=False),
        sa.Column("old_token_sha256", sa.String(length=64), nullable=False),
        sa.Column("new_confirmed_at", UTCDateTime(), nullable=True),
        sa.Column("old_confirmed_at", UTCDateTime(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_email_changes_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_changes")),
        sa.UniqueConstraint("new_token_sha256", name=op.f("uq_email_changes_new_token_sha256")),
        sa.UniqueConstraint("old_token_sha256", name=op.f("uq_email_changes_old_token_sha256")),
    )
    with op.batch_alter_table("email_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_email_changes_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("email_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_email_changes_user_id"))
    op.drop_table("email_changes")
