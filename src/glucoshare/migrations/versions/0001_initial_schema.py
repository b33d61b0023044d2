"""Initial schema: patients, devices, uploads, records and the audit trail.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from glucoshare.db.base import UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=254), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=32), nullable=True),
        sa.Column("target", sa.String(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_patient_id"), ["patient_id"], unique=False)

    op.create_table(
        "patients",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("birthdate", sa.Date(), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("display_units", sa.String(length=8), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patients")),
        sa.UniqueConstraint("email", name=op.f("uq_patients_email")),
    )
    op.create_table(
        "devices",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("manufacturer", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("serial", sa.String(length=100), nullable=True),
        sa.Column("device_key", sa.String(length=400), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_devices_patient_id_patients"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_devices")),
        sa.UniqueConstraint("device_key", name=op.f("uq_devices_device_key")),
        sa.UniqueConstraint("id", name=op.f("uq_devices_id")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_patient_id"), ["patient_id"], unique=False)

    op.create_table(
        "device_identifiers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_seq"],
            ["devices.seq"],
            name=op.f("fk_device_identifiers_device_seq_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_identifiers")),
        sa.UniqueConstraint("kind", "value", name=op.f("uq_device_identifiers_kind_value")),
    )
    with op.batch_alter_table("device_identifiers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_device_identifiers_device_seq"), ["device_seq"], unique=False)

    op.create_table(
        "records",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("device_seq", sa.Integer(), nullable=False),
        sa.Column("upload_seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("subtype", sa.String(length=20), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("utc_offset_min", sa.SmallInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("orig_value", sa.Float(), nullable=True),
        sa.Column("orig_unit", sa.String(length=10), nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("annotation", sa.String(length=20), nullable=True),
        sa.Column("payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.Column("source_line", sa.Integer(), nullable=False),
        sa.Column("dedup_key", sa.String(length=120), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_seq"], ["devices.seq"], name=op.f("fk_records_device_seq_devices"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_records")),
        sa.UniqueConstraint("device_seq", "type", "time_ms", "dedup_key", name="uq_records_identity"),
    )
    op.create_table(
        "uploads",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("device_seq", sa.Integer(), nullable=True),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(length=40), nullable=False),
        sa.Column("encoding", sa.String(length=20), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("uploaded_by", sa.String(length=254), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("counts", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("new_count", sa.Integer(), nullable=False),
        sa.Column("duplicate_count", sa.Integer(), nullable=False),
        sa.Column("rejected_count", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("first_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_ms", sa.BigInteger(), nullable=True),
        sa.Column("first_record_id", sa.BigInteger(), nullable=True),
        sa.Column("last_record_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_seq"], ["devices.seq"], name=op.f("fk_uploads_device_seq_devices"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_uploads_patient_id_patients"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_uploads")),
        sa.UniqueConstraint("id", name=op.f("uq_uploads_id")),
    )
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_uploads_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_uploads_sha256"), ["sha256"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_uploads_sha256"))
        batch_op.drop_index(batch_op.f("ix_uploads_patient_id"))

    op.drop_table("uploads")
    op.drop_table("records")
    with op.batch_alter_table("device_identifiers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_identifiers_device_seq"))

    op.drop_table("device_identifiers")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_patient_id"))

    op.drop_table("devices")
    op.drop_table("patients")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_patient_id"))
        batch_op.drop_index(batch_op.f("ix_audit_events_action"))

    op.drop_table("audit_events")
