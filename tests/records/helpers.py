"""Helpers of the record tests: an upload row for records written without an import."""

from __future__ import annotations

from sqlalchemy.orm import Session

from glucoshare.records.models import Upload


def bare_upload(session: Session, patient_id: str, *, file_name: str = "f", timezone: str = "UTC") -> Upload:
    """An upload row (flushed, so that it has its ``seq``) for records a test writes itself."""
    upload = Upload(
        patient_id=patient_id,
        file_name=file_name,
        sha256="0" * 64,
        size_bytes=1,
        format="test",
        encoding="utf-8",
        timezone=timezone,
        uploaded_by="test",
    )
    session.add(upload)
    session.flush()
    return upload
