"""Daily CGM summaries, their backlog, and patients' target ranges.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from glucoshare.db.base import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "daily_summaries",
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("readings", sa.Integer(), nullable=False),
        sa.Column("interval_min", sa.Integer(), nullable=False),
        sa.Column("very_low", sa.Integer(), nullable=False),
        sa.Column("low", sa.Integer(), nullable=False),
        sa.Column("in_range", sa.Integer(), nullable=False),
        sa.Column("high", sa.Integer(), nullable=False),
        sa.Column("very_high", sa.Integer(), nullable=False),
        sa.Column("tight", sa.Integer(), nullable=False),
        sa.Column("extreme_high", sa.Integer(), nullable=False),
        sa.Column("sum_mgdl", sa.Float(), nullable=False),
        sa.Column("sum_sq_mgdl", sa.Float(), nullable=False),
        sa.Column("last_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_daily_summaries_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("patient_id", "day", name=op.f("pk_daily_summaries")),
    )
    op.create_table(
        "period_summaries",
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("previous", sa.Boolean(), nullable=False),
        sa.Column("last_day", sa.Integer(), nullable=False),
        sa.Column("last_ms", sa.BigInteger(), nullable=False),
        sa.Column("readings", sa.Integer(), nullable=False),
        sa.Column("very_low", sa.Integer(), nullable=False),
        sa.Column("low", sa.Integer(), nullable=False),
        sa.Column("in_range", sa.Integer(), nullable=False),
        sa.Column("high", sa.Integer(), nullable=False),
        sa.Column("very_high", sa.Integer(), nullable=False),
        sa.Column("tight", sa.Integer(), nullable=False),
        sa.Column("extreme_high", sa.Integer(), nullable=False),
        sa.Column("sum_mgdl", sa.Float(), nullable=False),
        sa.Column("sum_sq_mgdl", sa.Float(), nullable=False),
        sa.Column("minutes", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_period_summaries_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("patient_id", "days", "previous", name=op.f("pk_period_summaries")),
    )
    op.create_table(
        "summary_backlog",
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("first_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_ms", sa.BigInteger(), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_summary_backlog_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_summary_backlog")),
    )
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("target_scheme", sa.String(length=16), server_default="standard", nullable=False)
        )
        batch_op.add_column(sa.Column("target_low_mgdl", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("target_high_mgdl", sa.Float(), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_column("target_high_mgdl")
        batch_op.drop_column("target_low_mgdl")
        batch_op.drop_column("target_scheme")

    op.drop_table("summary_backlog")
    op.drop_table("period_summaries")
    op.drop_table("daily_summaries")
