"""Imports that run in the background: queued with their files sealed, run once by a worker.

:func:`queue_import` stores the files sealed with the patient's data key and defers the job in
the same transaction. :func:`run_import_request` does the import and records its outcome in one
transaction, so a worker killed at any point leaves either nothing (the request is run again from
its sealed files) or the whole import and its outcome: never a part of an upload.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.config import Settings
from glucoshare.errors import GlucoshareError
from glucoshare.ingest.errors import ImportRequestNotFoundError
from glucoshare.ingest.models import ImportRequest
from glucoshare.ingest.schemas import ErrorBody, ImportRequestOut, IncomingFile
from glucoshare.ingest.service import import_files
from glucoshare.jobs.claims import claim
from glucoshare.jobs.schemas import RUN_IMPORT
from glucoshare.jobs.service import defer, queue_available, refresh_summaries_later
from glucoshare.records.schemas import UploadOut
from glucoshare.vault.cipher import seal, unseal
from glucoshare.vault.service import data_key


def _place(request: ImportRequest, what: str) -> str:
    return f"import:{what}:{request.patient_id}:{request.id}"


def _bundle(files: Sequence[IncomingFile]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as bundle:
        for index, item in enumerate(files):
            # The index keeps the order and tells apart two files of the same name.
            bundle.writestr(f"{index:04d}/{item.name}", item.data)
    return buffer.getvalue()


def _unbundle(data: bytes) -> list[IncomingFile]:
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        return [
            IncomingFile(info.filename.split("/", 1)[1], bundle.read(info))
            for info in sorted(bundle.infolist(), key=lambda i: i.filename)
        ]


def queue_import(
    session: Session, *, patient: Patient, files: Sequence[IncomingFile], timezone: str | None, actor: str
) -> ImportRequest:
    """Keep ``files`` for a background import of ``patient``'s data; the job is deferred with them.

    On SQLite (no queue) the caller runs :func:`run_import_request` itself.
    """
    request = ImportRequest(
        patient_id=patient.id,
        state="queued",
        file_count=len(files),
        size_bytes=sum(len(f.data) for f in files),
        timezone=timezone,
        requested_by=actor,
    )
    session.add(request)
    session.flush()
    request.files_sealed = seal(data_key(session, patient.id), _bundle(files), _place(request, "files"))
    session.flush()
    if queue_available(session):
        defer(session, RUN_IMPORT, queueing_lock=f"import:{request.id}", request_id=request.id)
    return request


def _finish(session: Session, request: ImportRequest, outcome: dict[str, object], state: str) -> None:
    request.state = state
    request.finished_at = dt.datetime.now(dt.UTC)
    request.files_sealed = None
    key = data_key(session, request.patient_id)
    request.outcome_sealed = seal(key, json.dumps(outcome).encode(), _place(request, "outcome"))
    session.flush()


def claim_import_request(session: Session, request_id: str) -> ImportRequest | None:
    """Mark a queued request as running (one more attempt); ``None`` when it is finished already.

    The claim of every background request (:func:`glucoshare.jobs.claims.claim`).
    """
    return claim(session, ImportRequest, request_id)


def run_import_request(session: Session, settings: Settings, request_id: str) -> None:
    """Import a queued request's files and record its outcome, in the session's transaction.

    A refusal (bad file, unknown format, ...) propagates like any error, so that the caller's
    transaction rolls back whatever the import had written; the caller then records it with
    :func:`record_refusal` in a transaction of its own.
    """
    request = session.scalar(select(ImportRequest).where(ImportRequest.id == request_id).with_for_update())
    if request is None or request.state in {"done", "failed"} or request.files_sealed is None:
        return
    patient = session.get(Patient, request.patient_id)
    if patient is None:  # erased meanwhile: the request went with them (cascade)
        return
    files = _unbundle(
        unseal(data_key(session, request.patient_id), request.files_sealed, _place(request, "files"))
    )
    uploads = import_files(
        session,
        settings=settings,
        patient=patient,
        files=files,
        timezone=request.timezone,
        actor=request.requested_by,
    )
    _finish(session, request, {"uploads": [u.model_dump(mode="json") for u in uploads]}, "done")
    refresh_summaries_later(session, [patient.id])


def record_refusal(session: Session, request_id: str, error: GlucoshareError) -> None:
    """End a request whose import was refused: ``failed``, with the error; its files dropped."""
    request = session.get(ImportRequest, request_id)
    if request is None or request.state in {"done", "failed"}:
        return
    _finish(session, request, {"error": error.to_dict()["error"]}, "failed")


def fail_import_request(session: Session, request_id: str, message: str) -> None:
    """Give up on a request whose import kept failing for reasons of the installation."""
    request = session.get(ImportRequest, request_id)
    if request is None or request.state in {"done", "failed"}:
        return
    _finish(session, request, {"error": {"code": "internal", "message": message, "status": 500}}, "failed")


def import_request_out(session: Session, patient_id: str, request_id: str) -> ImportRequestOut:
    """A queued import of the patient's, with its outcome once finished."""
    request = session.get(ImportRequest, request_id)
    if request is None or request.patient_id != patient_id:
        msg = "no import with this id"
        raise ImportRequestNotFoundError(msg)
    out = ImportRequestOut(
        id=request.id,
        patient_id=request.patient_id,
        state=request.state,
        files=request.file_count,
        size_bytes=request.size_bytes,
        created_at=request.created_at,
        finished_at=request.finished_at,
    )
    if request.outcome_sealed is not None:
        key = data_key(session, request.patient_id)
        outcome = json.loads(unseal(key, request.outcome_sealed, _place(request, "outcome")))
        if "uploads" in outcome:
            out.uploads = [UploadOut.model_validate(u) for u in outcome["uploads"]]
        else:
            out.error = ErrorBody.model_validate(outcome["error"])
    return out
