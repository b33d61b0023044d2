"""Tables of the audit domain."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from glucoshare.db.base import Base, UTCDateTime, utcnow


class AuditEvent(Base):
    """One audited action.

    ``hash`` = SHA-256 over the previous event's hash and this event's
    fields, so any change, insertion or removal inside the chain is detected by ``audit verify``.
    ``patient_id`` is a plain column (no foreign key): the trail outlives what it describes.
    ``ip`` and ``user_agent`` say where the action came from (``None`` on the command line);
    ``outcome`` is ``success``, ``failure`` or ``denied``. Events written before these columns existed
    hold ``None`` in all three (shown as a success) and keep their original hash.
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(64), index=True)
    patient_id: Mapped[str | None] = mapped_column(String(32), index=True)
    target: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    outcome: Mapped[str | None] = mapped_column(String(16))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
