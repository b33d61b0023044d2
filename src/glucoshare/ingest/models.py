"""Imports waiting for a background worker (PostgreSQL) or done in process (SQLite)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from glucoshare.db.base import BULKY, Base, UTCDateTime, new_id, utcnow


class ImportRequest(Base):
    """One batch of files to import for a patient, and how it went.

    The files wait sealed with the patient's data key (``files_sealed``) until the import has
    run; then they are dropped (the import keeps the raw files of what it stored). ``state`` is
    ``queued``, ``running``, ``done`` or ``failed``; ``outcome_sealed`` then holds, sealed too
    (file names can carry a patient's name), the import's answer or its error.
    """

    __tablename__ = "import_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(12), default="queued")
    files_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, info=BULKY)
    file_count: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    timezone: Mapped[str | None] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(254))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    outcome_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
