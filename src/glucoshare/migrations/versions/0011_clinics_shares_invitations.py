"""Clinics, members, shares and invitations.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from glucoshare.db.base import UTCDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "clinics",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("share_code", sa.String(length=14), nullable=False),
        sa.Column("mrn_required", sa.Boolean(), nullable=False),
        sa.Column("mrn_unique", sa.Boolean(), nullable=False),
        sa.Column("patient_tags", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinics")),
        sa.UniqueConstraint("share_code", name=op.f("uq_clinics_share_code")),
    )
    op.create_table(
        "clinic_members",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("clinic_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinics.id"],
            name=op.f("fk_clinic_members_clinic_id_clinics"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_clinic_members_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinic_members")),
        sa.UniqueConstraint("clinic_id", "user_id", name=op.f("uq_clinic_members_clinic_id_user_id")),
    )
    with op.batch_alter_table("clinic_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clinic_members_clinic_id"), ["clinic_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_clinic_members_user_id"), ["user_id"], unique=False)

    op.create_table(
        "invitations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("clinic_id", sa.String(length=32), nullable=True),
        sa.Column("patient_id", sa.String(length=32), nullable=True),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("email_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("email_lookup", sa.String(length=64), nullable=True),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=14), nullable=True),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("sent_count", sa.Integer(), nullable=False),
        sa.Column("accepted_at", UTCDateTime(), nullable=True),
        sa.Column("accepted_by", sa.String(length=32), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_invitations_clinic_id_clinics"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_invitations_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("code", name=op.f("uq_invitations_code")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_invitations_token_sha256")),
    )
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invitations_clinic_id"), ["clinic_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_invitations_email_lookup"), ["email_lookup"], unique=False)
        batch_op.create_index(batch_op.f("ix_invitations_patient_id"), ["patient_id"], unique=False)

    op.create_table(
        "shares",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("clinic_id", sa.String(length=32), nullable=True),
        sa.Column("user_id", sa.String(length=32), nullable=True),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.Column("custodian", sa.Boolean(), nullable=False),
        sa.Column("mrn_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("mrn_lookup", sa.String(length=64), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("last_reviewed_at", UTCDateTime(), nullable=True),
        sa.Column("last_reviewed_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_shares_clinic_id_clinics"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_shares_patient_id_patients"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_shares_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shares")),
        sa.UniqueConstraint("patient_id", "clinic_id", name=op.f("uq_shares_patient_id_clinic_id")),
        sa.UniqueConstraint("patient_id", "user_id", name=op.f("uq_shares_patient_id_user_id")),
    )
    with op.batch_alter_table("shares", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shares_clinic_id"), ["clinic_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_shares_mrn_lookup"), ["mrn_lookup"], unique=False)
        batch_op.create_index(batch_op.f("ix_shares_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_shares_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("shares", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shares_user_id"))
        batch_op.drop_index(batch_op.f("ix_shares_patient_id"))
        batch_op.drop_index(batch_op.f("ix_shares_mrn_lookup"))
        batch_op.drop_index(batch_op.f("ix_shares_clinic_id"))

    op.drop_table("shares")
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invitations_patient_id"))
        batch_op.drop_index(batch_op.f("ix_invitations_email_lookup"))
        batch_op.drop_index(batch_op.f("ix_invitations_clinic_id"))

    op.drop_table("invitations")
    with op.batch_alter_table("clinic_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clinic_members_user_id"))
        batch_op.drop_index(batch_op.f("ix_clinic_members_clinic_id"))

    op.drop_table("clinic_members")
    op.drop_table("clinics")
