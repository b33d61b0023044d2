"""Tables of the vault: one wrapped data key per subject (a patient or a user)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from glucoshare.db.base import Base, UTCDateTime, utcnow


class DataKey(Base):
    """A subject's AES-256 data key, wrapped (AES-256-GCM) by a master key that is not in the database.

    ``subject_id`` is the id of the patient or user whose identifying data the key seals; deleting
    the row destroys every value sealed with it (crypto-shredding), backups included.
    """

    __tablename__ = "data_keys"

    subject_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    master_key_id: Mapped[str] = mapped_column(String(32), index=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    rewrapped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
