"""Kept files move into the database: raw uploads and held clinic uploads, sealed as they were.

Until now they lived in the data folder (``uploads/<patient>/<sha256>``, ``pending/<clinic>/<id>``),
so every application server needed the same folder and a file written just before a crash could
outlive its rolled-back upload. Each file's bytes, already sealed for its place, are copied
unchanged into ``sealed_file_pieces`` (1 MiB a row) under a row of ``sealed_files``; the old files
are removed once this revision has committed (see :func:`glucoshare.db.migrate.upgrade`). A file
that is missing stays missing (it was already lost).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07
"""

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import context, op

from glucoshare.db.base import UTCDateTime, utcnow

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PIECE_BYTES = 1 << 20
"""The most sealed bytes one row of ``sealed_file_pieces`` holds (as ``vault.models.PIECE_BYTES``)."""

_FILE = sa.text(
    "INSERT INTO sealed_files (place, subject_id, size_bytes, created_at) "
    "VALUES (:place, :subject, :size, :created)"
).bindparams(sa.bindparam("created", type_=UTCDateTime()))
_PIECE = sa.text(
    "INSERT INTO sealed_file_pieces (place, number, data) VALUES (:place, :number, :data)"
).bindparams(sa.bindparam("data", type_=sa.LargeBinary()))


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "sealed_files",
        sa.Column("place", sa.String(length=128), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("place", name=op.f("pk_sealed_files")),
    )
    op.create_index(op.f("ix_sealed_files_subject_id"), "sealed_files", ["subject_id"], unique=False)
    op.create_table(
        "sealed_file_pieces",
        sa.Column("place", sa.String(length=128), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["place"],
            ["sealed_files.place"],
            name=op.f("fk_sealed_file_pieces_place_sealed_files"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("place", "number", name=op.f("pk_sealed_file_pieces")),
    )
    data_dir: Path | None = context.config.attributes.get("data_dir")
    if data_dir is None:
        return
    conn = op.get_bind()
    moved: list[Path] = context.config.attributes.setdefault("legacy_raw_files", [])
    uploads = conn.execute(
        sa.text("SELECT patient_id, sha256, MAX(size_bytes) FROM uploads GROUP BY patient_id, sha256")
    ).all()
    for patient_id, sha256, size in uploads:
        path = data_dir / "uploads" / patient_id / sha256
        _move(conn, path, place=f"raw:{patient_id}:{sha256}", subject=patient_id, size=size, moved=moved)
    held = conn.execute(
        sa.text("SELECT clinic_id, id, size_bytes FROM pending_uploads WHERE assigned_at IS NULL")
    ).all()
    for clinic_id, pending_id, size in held:
        path = data_dir / "pending" / clinic_id / pending_id
        _move(
            conn, path, place=f"pending:{clinic_id}:{pending_id}", subject=clinic_id, size=size, moved=moved
        )


def _move(conn: sa.Connection, path: Path, *, place: str, subject: str, size: int, moved: list[Path]) -> None:
    """Copy one sealed file into the tables (its bytes as they are, in pieces); remember it for removal."""
    if not path.is_file():
        return
    conn.execute(_FILE, {"place": place, "subject": subject, "size": size, "created": utcnow()})
    with path.open("rb") as handle:
        number = 0
        while True:
            data = handle.read(PIECE_BYTES)
            if data or number == 0:  # an empty file still has its one (empty) piece
                conn.execute(_PIECE, {"place": place, "number": number, "data": data})
                number += 1
            if len(data) < PIECE_BYTES:
                break
    moved.append(path)


def downgrade() -> None:
    """Revert this revision (only when no file is kept: the files are not written back to a folder)."""
    conn = op.get_bind()
    if conn.execute(sa.text("SELECT 1 FROM sealed_files LIMIT 1")).first() is not None:
        msg = "cannot downgrade: sealed_files holds kept files; restore a backup taken before the upgrade"
        raise RuntimeError(msg)
    op.drop_table("sealed_file_pieces")
    op.drop_index(op.f("ix_sealed_files_subject_id"), table_name="sealed_files")
    op.drop_table("sealed_files")
