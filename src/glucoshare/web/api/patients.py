"""``/v1/patients``: the patients a caller may see, their statistics and uploads.

A caller without access to a patient gets ``404``, exactly as for a patient that does not exist.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Request, Response, UploadFile, status

from glucoshare.accounts.schemas import PatientOut
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.devices.schemas import DeviceListedOut
from glucoshare.devices.service import list_devices
from glucoshare.ingest.diary import DiaryEntry, add_diary_entries
from glucoshare.ingest.queued import import_request_out, queue_import
from glucoshare.ingest.schemas import ImportRequestOut
from glucoshare.ingest.service import import_files, remove_upload
from glucoshare.jobs.service import queue_available
from glucoshare.jobs.tasks import perform_import
from glucoshare.records.errors import UploadNotFoundError
from glucoshare.records.schemas import UploadOut
from glucoshare.records.service import get_upload, list_uploads
from glucoshare.sharing.access import accessible_patients
from glucoshare.summaries.service import patient_stats, resolve_period
from glucoshare.web.deps import Caller, reach_patient, read_uploads, refresh_after, settings_of, unit_of_work

router = APIRouter(prefix="/v1/patients", tags=["patients"])
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such patient, or no access"}}


@router.get("")
def list_patients(caller: Caller, request: Request) -> list[PatientOut]:
    """The patients whose data the caller may read."""
    with unit_of_work(request) as session:
        patients = accessible_patients(session, caller)
        record_event(
            session, actor=caller.actor, action=AuditTag.PATIENT_LIST, details={"count": len(patients)}
        )
        return [PatientOut.model_validate(p) for p in patients]


@router.get("/{patient_id}", responses=_NOT_FOUND)
def get_patient(patient_id: str, caller: Caller, request: Request) -> PatientOut:
    """One patient's profile."""
    with unit_of_work(request) as session:
        patient = reach_patient(request, session, caller, patient_id, "view")
        record_event(
            session,
            actor=caller.actor,
            action=AuditTag.PROFILE_READ,
            patient_id=patient.id,
            target=patient.id,
        )
        return PatientOut.model_validate(patient)


@router.get("/{patient_id}/stats", responses=_NOT_FOUND)
def get_stats(
    patient_id: str,
    caller: Caller,
    request: Request,
    days: Annotated[int | None, Query(ge=1, le=3660)] = None,
    from_: Annotated[dt.date | None, Query(alias="from")] = None,
    to: Annotated[dt.date | None, Query()] = None,
) -> dict[str, Any]:
    """The ``stats --json`` document (CONTRACT.md): glucose in mg/dL, percentages 0–100."""
    with unit_of_work(request) as session:
        patient = reach_patient(request, session, caller, patient_id, "view")
        period = resolve_period(session, patient, days=days, first=from_, last=to)
        return patient_stats(session, patient, period, actor=caller.actor).document()


@router.get("/{patient_id}/devices", responses=_NOT_FOUND)
def get_devices(patient_id: str, caller: Caller, request: Request) -> list[DeviceListedOut]:
    """The patient's devices, oldest first."""
    with unit_of_work(request) as session:
        patient = reach_patient(request, session, caller, patient_id, "view")
        devices = [DeviceListedOut.model_validate(d) for d in list_devices(session, patient.id)]
        record_event(session, actor=caller.actor, action=AuditTag.DEVICE_LIST, patient_id=patient.id)
        return devices


@router.get("/{patient_id}/uploads", responses=_NOT_FOUND)
def get_uploads(patient_id: str, caller: Caller, request: Request) -> list[UploadOut]:
    """The patient's uploads, newest first."""
    with unit_of_work(request) as session:
        patient = reach_patient(request, session, caller, patient_id, "view")
        uploads = list_uploads(session, patient.id)
        record_event(session, actor=caller.actor, action=AuditTag.UPLOAD_LIST, patient_id=patient.id)
        return uploads


@router.post(
    "/{patient_id}/uploads",
    status_code=status.HTTP_201_CREATED,
    responses={**_NOT_FOUND, 413: {"description": "Too large"}, 415: {"description": "Unknown format"}},
)
def post_uploads(
    patient_id: str,
    caller: Caller,
    request: Request,
    files: Annotated[list[UploadFile], File(description="One or more device exports")],
    timezone: Annotated[str | None, Query(max_length=64)] = None,
) -> list[UploadOut]:
    """Import device exports; all are stored, or (when one is refused) none."""
    settings = settings_of(request)
    incoming = read_uploads(files, settings.max_upload_bytes)
    with unit_of_work(request) as session:
        patient = reach_patient(request, session, caller, patient_id, "upload")
        results = import_files(
            session, settings=settings, patient=patient, files=incoming, timezone=timezone, actor=caller.actor
        )
    refresh_after(request, [patient_id])
    return results


@router.post(
    "/{patient_id}/imports",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**_NOT_FOUND, 413: {"description": "Too large"}},
)
def post_import(
    patient_id: str,
    caller: Caller,
    request: Request,
    files: Annotated[list[UploadFile], File(description="One or more device exports")],
    timezone: Annotated[str | None, Query(max_length=64)] = None,
) -> ImportRequestOut:
    """Import device exports in the background: answers at once with the import's id and state.

    Follow ``GET /v1/patients/{patient_id}/imports/{import_id}`` until the state is ``done`` (the
    uploads, as the direct upload route answers them) or ``failed`` (the error; nothing stored).
    On PostgreSQL a worker runs it; on SQLite it has run before the answer comes.
    """
    settings = settings_of(request)
    incoming = read_uploads(files, settings.max_upload_bytes)
    with unit_of_work(request) as session:
        patient = reach_patient(request, session, caller, patient_id, "upload")
        queued = queue_import(session, patient=patient, files=incoming, timezone=timezone, actor=caller.actor)
        import_id = queued.id
    engine = request.app.state.engine
    if not queue_available(engine):
        perform_import(engine, settings, import_id)
    with unit_of_work(request) as session:
        return import_request_out(session, patient_id, import_id)


@router.get("/{patient_id}/imports/{import_id}", responses=_NOT_FOUND)
def get_import(patient_id: str, import_id: str, caller: Caller, request: Request) -> ImportRequestOut:
    """A background import: its state, and once finished the uploads it made or why it was refused."""
    with unit_of_work(request) as session:
        patient = reach_patient(request, session, caller, patient_id, "view")
        out = import_request_out(session, patient.id, import_id)
        record_event(
            session, actor=caller.actor, action=AuditTag.UPLOAD_LIST, patient_id=patient.id, target=import_id
        )
        return out


@router.delete(
    "/{patient_id}/uploads/{upload_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND
)
def delete_upload(patient_id: str, upload_id: str, caller: Caller, request: Request) -> Response:
    """Remove one upload and exactly the records it brought."""
    with unit_of_work(request) as session:
        patient = reach_patient(request, session, caller, patient_id, "upload")
        if get_upload(session, upload_id).patient_id != patient.id:
            msg = "no upload with this id"
            raise UploadNotFoundError(msg)
        remove_upload(session, settings=settings_of(request), upload_id=upload_id, actor=caller.actor)
    refresh_after(request, [patient_id])
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{patient_id}/diary", status_code=status.HTTP_201_CREATED, responses=_NOT_FOUND)
def post_diary(patient_id: str, body: DiaryEntry, caller: Caller, request: Request) -> UploadOut:
    """Add a diary entry (glucose, insulin doses, carbohydrate, a note, ratios) at its local time."""
    with unit_of_work(request) as session:
        patient = reach_patient(request, session, caller, patient_id, "upload")
        upload = add_diary_entries(session, settings_of(request), patient, [body], actor=caller.actor)
    refresh_after(request, [patient_id])
    return upload
