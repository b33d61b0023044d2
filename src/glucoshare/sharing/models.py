"""Tables of the sharing domain: clinics, their members, shares and invitations."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from glucoshare.db.base import Base, UTCDateTime, new_id, utcnow
from glucoshare.vault.sealed import OptionalSealedText


class Clinic(Base):
    """A clinic's workspace: its details, settings and the share code patients enter."""

    __tablename__ = "clinics"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Address, country, phone, website and clinic type (what the clinic shows its patients)."""
    share_code: Mapped[str] = mapped_column(String(14), unique=True)
    """``XXXX-XXXX-XXXX`` from an alphabet without 0, O, 1 and I; rotatable."""
    mrn_required: Mapped[bool] = mapped_column(Boolean, default=False)
    mrn_unique: Mapped[bool] = mapped_column(Boolean, default=True)
    patient_tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ClinicMember(Base):
    """A clinician's membership of a clinic, as ``admin`` or ``member``."""

    __tablename__ = "clinic_members"
    __table_args__ = (UniqueConstraint("clinic_id", "user_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinics.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Share(Base):
    """Access to one patient's data for a clinic or a care partner, with its permissions.

    Exactly one of ``clinic_id`` and ``user_id`` is set. ``custodian`` marks the clinic that created
    the patient's account, until the patient claims it. The clinic's MRN of the patient is sealed
    with the patient's data key; ``mrn_lookup`` is its keyed hash (search and uniqueness).
    """

    __tablename__ = "shares"
    __table_args__ = (
        UniqueConstraint("patient_id", "clinic_id"),
        UniqueConstraint("patient_id", "user_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    clinic_id: Mapped[str | None] = mapped_column(ForeignKey("clinics.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
    custodian: Mapped[bool] = mapped_column(Boolean, default=False)
    mrn_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    mrn = OptionalSealedText("mrn_sealed", subject="patient_id")
    mrn_lookup: Mapped[str | None] = mapped_column(String(64), index=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    last_reviewed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_reviewed_by: Mapped[str | None] = mapped_column(String(32))
    last_reminder_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    """When the clinic last reminded the patient to upload."""
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Invitation(Base):
    """An invitation, single use and valid 7 days: found by the SHA-256 of its link or by its code.

    ``kind`` is ``carepartner`` (a patient invites someone to see their data), ``patient`` (a clinic
    invites a patient to share with it), ``clinician`` (a clinic admin invites a clinician) or
    ``claim`` (a clinic asks a patient to take over the account it created for them). The address
    is sealed with the inviting clinic's or patient's data key.
    """

    __tablename__ = "invitations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16))
    clinic_id: Mapped[str | None] = mapped_column(ForeignKey("clinics.id", ondelete="CASCADE"), index=True)
    patient_id: Mapped[str | None] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    subject_id: Mapped[str] = mapped_column(String(32))
    """Whose data key seals the address: the inviting clinic or patient."""
    email_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    email = OptionalSealedText("email_sealed", subject="subject_id", lookup_column="email_lookup")
    email_lookup: Mapped[str | None] = mapped_column(String(64), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    code: Mapped[str | None] = mapped_column(String(14), unique=True)
    """For printed invitations: typed in by the patient."""
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
    role: Mapped[str | None] = mapped_column(String(8))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    sent_count: Mapped[int] = mapped_column(Integer, default=0)
    accepted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    accepted_by: Mapped[str | None] = mapped_column(String(32))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))


class PendingUpload(Base):
    """A device export a clinic uploaded whose device is not assigned to a patient yet.

    The raw file is kept sealed with the clinic's data key (``pending/<clinic>/<id>``) until a
    clinician assigns the device to one of the clinic's patients, when it is imported for them.
    """

    __tablename__ = "pending_uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinics.id", ondelete="CASCADE"), index=True)
    file_name_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    file_name = OptionalSealedText("file_name_sealed", subject="clinic_id")
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(40))
    timezone: Mapped[str] = mapped_column(String(64))
    manufacturer: Mapped[str | None] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(100))
    serial: Mapped[str | None] = mapped_column(String(100))
    records: Mapped[int] = mapped_column(Integer, default=0)
    first_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_ms: Mapped[int | None] = mapped_column(BigInteger)
    uploaded_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    assigned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    assigned_patient_id: Mapped[str | None] = mapped_column(String(32))
    assigned_by: Mapped[str | None] = mapped_column(String(64))
    upload_id: Mapped[str | None] = mapped_column(String(32))
