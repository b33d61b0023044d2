"""The upload API and the Nightscout-compatible API: data sets, their batches, Nightscout documents.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("state", sa.String(length=12), nullable=False, server_default="file"))
        batch.add_column(sa.Column("client_key", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("line_count", sa.Integer(), nullable=False, server_default="0"))
        batch.create_unique_constraint("uq_uploads_client_key", ["patient_id", "client_key"])
    op.create_table(
        "dataset_batches",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("upload_seq", sa.Integer(), nullable=False),
        sa.Column("first_line", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("new_count", sa.Integer(), nullable=False),
        sa.Column("request_key", sa.String(length=100), nullable=True),
        sa.Column("body_sealed", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["upload_seq"],
            ["uploads.seq"],
            name=op.f("fk_dataset_batches_upload_seq_uploads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_dataset_batches")),
        sa.UniqueConstraint("upload_seq", "request_key", name="uq_dataset_batches_request"),
    )
    op.create_index(op.f("ix_dataset_batches_upload_seq"), "dataset_batches", ["upload_seq"])
    op.create_table(
        "ns_documents",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("collection", sa.String(length=16), nullable=False),
        sa.Column("identity", sa.String(length=160), nullable=True),
        sa.Column("identifier", sa.String(length=160), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("modified_ms", sa.BigInteger(), nullable=False),
        sa.Column("upload_seq", sa.Integer(), nullable=False),
        sa.Column("document_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("record_ids", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_ns_documents_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_ns_documents")),
        sa.UniqueConstraint("id", name=op.f("uq_ns_documents_id")),
        sa.UniqueConstraint("patient_id", "collection", "identity", name="uq_ns_documents_identity"),
    )
    op.create_index("ix_ns_documents_time", "ns_documents", ["patient_id", "collection", "time_ms"])
    op.create_index("ix_ns_documents_modified", "ns_documents", ["patient_id", "collection", "modified_ms"])
    op.create_index("ix_ns_documents_identifier", "ns_documents", ["patient_id", "collection", "identifier"])
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("roles", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("roles")
    op.drop_index("ix_ns_documents_identifier", table_name="ns_documents")
    op.drop_index("ix_ns_documents_modified", table_name="ns_documents")
    op.drop_index("ix_ns_documents_time", table_name="ns_documents")
    op.drop_table("ns_documents")
    op.drop_index(op.f("ix_dataset_batches_upload_seq"), table_name="dataset_batches")
    op.drop_table("dataset_batches")
    with op.batch_alter_table("uploads") as batch:
        batch.drop_constraint("uq_uploads_client_key", type_="unique")
        batch.drop_column("line_count")
        batch.drop_column("client_key")
        batch.drop_column("state")
