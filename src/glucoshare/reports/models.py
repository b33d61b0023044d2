"""Reports rendered in the background: the request, and the PDF once made (sealed)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from glucoshare.db.base import BULKY, Base, UTCDateTime, new_id, utcnow


class ReportRender(Base):
    """One report to render as a PDF for a patient: ``queued``, ``running``, ``done`` or ``failed``.

    The PDF is kept sealed with the patient's data key; ``error`` is the one error shape's code and
    message when rendering was refused (no health data).
    """

    __tablename__ = "report_renders"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    first_day: Mapped[dt.date] = mapped_column(Date)
    last_day: Mapped[dt.date] = mapped_column(Date)
    unit: Mapped[str | None] = mapped_column(String(10))
    weekdays: Mapped[str | None] = mapped_column(String(20))
    requested_by: Mapped[str] = mapped_column(String(254))
    state: Mapped[str] = mapped_column(String(12), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    pdf_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, info=BULKY)
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(String(500))
