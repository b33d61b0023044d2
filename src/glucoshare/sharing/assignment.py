"""Device assignment, the RocheDiabetes Care Platform flow.

A clinic uploads a device's export: a device already assigned goes to its patient; an unassigned
one is held until a clinician assigns it, after which later uploads of that device go to the same
patient. Devices can be moved to another patient of the clinic. Every step is audited.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from glucoshare.accounts.access import Principal
from glucoshare.accounts.models import Patient
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.config import Settings
from glucoshare.db.base import ID_LENGTH
from glucoshare.devices.models import Device
from glucoshare.devices.service import device_key
from glucoshare.errors import ConflictError, NotFoundError
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_files, inspect_file, move_upload, read_raw, remove_upload
from glucoshare.records.models import Record, Upload
from glucoshare.records.schemas import UploadOut
from glucoshare.sharing.access import patient_access, permissions_of
from glucoshare.sharing.errors import InvalidSharingError
from glucoshare.sharing.models import Clinic, PendingUpload
from glucoshare.summaries.service import mark_outdated
from glucoshare.vault.service import open_file, remove_file, seal_file


class DeviceElsewhereError(ConflictError):
    """The device belongs to a patient who does not share it with this clinic."""

    code = "device_elsewhere"


class PendingUploadNotFoundError(NotFoundError):
    """No such held upload in this clinic."""

    code = "pending_upload_not_found"


class PendingUploadOut(BaseModel):
    """A held upload: the device to confirm and what the file holds."""

    id: str
    file: str | None
    format: str
    manufacturer: str | None
    model: str | None
    serial: str | None
    records: int
    first: dt.datetime | None
    last: dt.datetime | None
    uploaded_by: str
    created_at: dt.datetime
    status: Literal["pending", "assigned"]
    patient_id: str | None
    upload_id: str | None


class ClinicUploadOut(BaseModel):
    """What became of one file a clinic uploaded: imported for a patient, or held."""

    file: str
    outcome: Literal["imported", "pending"]
    patient_id: str | None = None
    uploads: list[UploadOut] = Field(default_factory=list)
    """The uploads made (one per file, or per member of a zip archive)."""
    pending: PendingUploadOut | None = None


def _instant(ms: int | None) -> dt.datetime | None:
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def pending_out(pending: PendingUpload) -> PendingUploadOut:
    """A held upload as the clinic sees it."""
    return PendingUploadOut(
        id=pending.id,
        file=pending.file_name,
        format=pending.format,
        manufacturer=pending.manufacturer,
        model=pending.model,
        serial=pending.serial,
        records=pending.records,
        first=_instant(pending.first_ms),
        last=_instant(pending.last_ms),
        uploaded_by=pending.uploaded_by,
        created_at=pending.created_at,
        status="assigned" if pending.assigned_at is not None else "pending",
        patient_id=pending.assigned_patient_id,
        upload_id=pending.upload_id,
    )


def _place(clinic_id: str, pending_id: str) -> str:
    return f"pending:{clinic_id}:{pending_id}"


def upload_for_clinic(
    session: Session,
    settings: Settings,
    clinic: Clinic,
    principal: Principal,
    incoming: IncomingFile,
    *,
    timezone: str | None,
    actor: str,
) -> ClinicUploadOut:
    """Import a device export for the patient its device is assigned to, or hold it for assignment."""
    inspection = inspect_file(settings, incoming, timezone=timezone or "UTC")
    primary = inspection.primary
    if primary is not None and primary.serial:
        device = session.scalar(
            select(Device).where(
                Device.device_key == device_key(primary.manufacturer, primary.model, primary.serial, "")
            )
        )
        if device is not None:
            patient = session.get(Patient, device.patient_id)
            if patient is None or "upload" not in permissions_of(session, principal, patient):
                msg = (
                    f"{incoming.name}: this device is assigned to a patient who does not share their data "
                    "with this clinic; ask them to share it, or to upload it themselves"
                )
                raise DeviceElsewhereError(msg)
            uploads = import_files(
                session, settings=settings, patient=patient, files=[incoming], timezone=timezone, actor=actor
            )
            return ClinicUploadOut(
                file=incoming.name, outcome="imported", patient_id=patient.id, uploads=uploads
            )
    pending = PendingUpload(
        clinic_id=clinic.id,
        sha256=hashlib.sha256(incoming.data).hexdigest(),
        size_bytes=len(incoming.data),
        format=inspection.format,
        timezone=timezone or "UTC",
        manufacturer=None if primary is None else primary.manufacturer,
        model=None if primary is None else primary.model,
        serial=None if primary is None else primary.serial,
        records=inspection.records,
        first_ms=inspection.first_ms,
        last_ms=inspection.last_ms,
        uploaded_by=actor,
    )
    held = _hold(session, pending, file_name=incoming.name[:255], data=incoming.data, actor=actor)
    return ClinicUploadOut(file=incoming.name, outcome="pending", pending=held)


def _hold(
    session: Session,
    pending: PendingUpload,
    *,
    file_name: str | None,
    data: bytes,
    actor: str,
) -> PendingUploadOut:
    """Store a held upload: its row, and its raw file sealed with the clinic's data key."""
    pending.file_name = file_name
    session.add(pending)
    session.flush()
    seal_file(session, pending.clinic_id, data, _place(pending.clinic_id, pending.id))
    record_event(
        session,
        actor=actor,
        action=AuditTag.PENDING_HOLD,
        target=pending.id,
        details={"format": pending.format},
    )
    return pending_out(pending)


def pending_uploads(session: Session, clinic: Clinic) -> list[PendingUpload]:
    """The clinic's held uploads waiting for assignment, newest first."""
    return list(
        session.scalars(
            select(PendingUpload)
            .where(PendingUpload.clinic_id == clinic.id, PendingUpload.assigned_at.is_(None))
            .order_by(PendingUpload.created_at.desc())
        )
    )


def _pending(session: Session, clinic: Clinic, pending_id: str) -> PendingUpload:
    pending = session.get(PendingUpload, pending_id) if len(pending_id) <= ID_LENGTH else None
    if pending is None or pending.clinic_id != clinic.id or pending.assigned_at is not None:
        msg = "no such upload waiting for assignment"
        raise PendingUploadNotFoundError(msg)
    return pending


def _device_of(session: Session, principal: Principal, device_id: str) -> tuple[Device, Patient]:
    """A device and its patient, when ``principal`` may upload for that patient; else not found."""
    device = (
        session.scalar(select(Device).where(Device.id == device_id)) if len(device_id) <= ID_LENGTH else None
    )
    patient = None if device is None else session.get(Patient, device.patient_id)
    if device is None or patient is None or "upload" not in permissions_of(session, principal, patient):
        msg = "no such device"
        raise NotFoundError(msg)
    return device, patient


def assign_pending(
    session: Session,
    settings: Settings,
    clinic: Clinic,
    principal: Principal,
    pending_id: str,
    *,
    patient_id: str,
    serial: str | None,
    actor: str,
) -> list[UploadOut]:
    """Assign a held upload's device to a patient: the serial must be confirmed; the data becomes theirs.

    Returns the uploads made: one, or one per member when the held file is a zip archive.
    """
    pending = _pending(session, clinic, pending_id)
    if pending.serial and (serial or "").strip().upper() != pending.serial.strip().upper():
        msg = "serial: it does not match the serial number in the file; check the device"
        raise InvalidSharingError(msg)
    patient = patient_access(session, principal, patient_id, "upload")
    data = open_file(session, clinic.id, _place(clinic.id, pending.id))
    if data is None:
        msg = "the held file is gone; upload the export again"
        raise PendingUploadNotFoundError(msg)
    uploads = import_files(
        session,
        settings=settings,
        patient=patient,
        files=[IncomingFile(pending.file_name or "upload", data)],
        timezone=None if pending.timezone == "UTC" else pending.timezone,
        actor=actor,
    )
    pending.assigned_at = dt.datetime.now(dt.UTC)
    pending.assigned_patient_id = patient.id
    pending.assigned_by = actor
    pending.upload_id = uploads[0].id
    session.flush()
    remove_file(session, _place(clinic.id, pending.id))
    record_event(
        session,
        actor=actor,
        action=AuditTag.PENDING_ASSIGN,
        patient_id=patient.id,
        target=pending.id,
        details={"uploads": [u.id for u in uploads]},
    )
    return uploads


def discard_pending(session: Session, clinic: Clinic, pending_id: str, *, actor: str) -> None:
    """Drop a held upload without assigning it, and its file."""
    pending = _pending(session, clinic, pending_id)
    session.delete(pending)
    remove_file(session, _place(clinic.id, pending.id))
    session.flush()
    record_event(session, actor=actor, action=AuditTag.PENDING_DISCARD, target=pending_id)


def reassign_device(
    session: Session,
    principal: Principal,
    device_id: str,
    *,
    patient_id: str,
    actor: str,
) -> Device:
    """Move a device, its records and the uploads it came in, to another patient of the clinic.

    Both patients must let the caller upload; the raw files are sealed again with the new
    patient's data key; both patients' summaries are brought up to date.
    """
    device, source = _device_of(session, principal, device_id)
    target = patient_access(session, principal, patient_id, "upload")
    if target.id == source.id:
        msg = "patient_id: the device already belongs to this patient"
        raise InvalidSharingError(msg)
    uploads = list(session.scalars(select(Upload).where(Upload.device_seq == device.seq)))
    for upload in uploads:
        move_upload(session, upload, target.id)
    device.patient_id = target.id
    if device.serial is None:  # a device without a serial is keyed per patient
        device.device_key = device_key(device.manufacturer, device.model, None, target.id)
    session.flush()
    spans = [(u.first_ms, u.last_ms) for u in uploads if u.first_ms is not None and u.last_ms is not None]
    if spans:
        first, last = min(s[0] for s in spans), max(s[1] for s in spans)
        mark_outdated(session, source.id, first, last, "device moved away")
        mark_outdated(session, target.id, first, last, "device moved here")
    for patient in (source, target):
        record_event(
            session,
            actor=actor,
            action=AuditTag.DEVICE_REASSIGN,
            patient_id=patient.id,
            target=device.id,
            details={"from": source.id, "to": target.id, "uploads": len(uploads)},
        )
    return device


def unassign_device(
    session: Session,
    settings: Settings,
    clinic: Clinic,
    principal: Principal,
    device_id: str,
    *,
    actor: str,
) -> list[PendingUploadOut]:
    """Take a device away from its patient: each upload it came in is held again for assignment.

    The uploads and the records they brought are removed from the patient (records another upload
    also holds stay); the raw files wait, sealed with the clinic's data key. Returns the held uploads.
    """
    device, patient = _device_of(session, principal, device_id)
    held: list[PendingUploadOut] = []
    for upload in list(session.scalars(select(Upload).where(Upload.device_seq == device.seq))):
        data = read_raw(session, upload)
        if data is None:  # pragma: no cover - raw files live as long as their upload
            continue
        pending = PendingUpload(
            clinic_id=clinic.id,
            sha256=upload.sha256,
            size_bytes=upload.size_bytes,
            format=upload.format,
            timezone=upload.timezone,
            manufacturer=device.manufacturer,
            model=device.model,
            serial=device.serial,
            records=upload.new_count + upload.duplicate_count,
            first_ms=upload.first_ms,
            last_ms=upload.last_ms,
            uploaded_by=actor,
        )
        held.append(_hold(session, pending, file_name=upload.file_name, data=data, actor=actor))
        remove_upload(session, settings=settings, upload_id=upload.id, actor=actor)
    if session.scalar(select(Record.id).where(Record.device_seq == device.seq).limit(1)) is None:
        session.delete(device)
    session.flush()
    record_event(
        session,
        actor=actor,
        action=AuditTag.DEVICE_UNASSIGN,
        patient_id=patient.id,
        target=device_id,
        details={"held": len(held)},
    )
    return held
