"""``/v1/datasets``: the native upload API for apps and uploaders (issue 9, docs/upload-api.md).

Open a data set for a device, append records in requests of at most 1,000 (``413`` beyond, so the
client halves the batch), close it: its records become visible all at once. A continuous data set
(an app) shows each request's records at once. A request that is retried with the same
``Idempotency-Key`` header gets the first answer; records are deduplicated by their natural key
in any case. A request with faulty records stores nothing and names each fault with a JSON pointer.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response, status
from starlette.concurrency import run_in_threadpool

from glucoshare.accounts.access import Principal
from glucoshare.accounts.errors import PatientNotFoundError
from glucoshare.accounts.models import Patient
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.datasets.schemas import AppendOut, DatasetIn, DatasetOut
from glucoshare.datasets.service import (
    append_records,
    close_dataset,
    dataset_out,
    get_dataset,
    open_dataset,
    records_of,
)
from glucoshare.ingest.service import remove_upload
from glucoshare.records.models import Upload
from glucoshare.web.deps import Caller, reach_patient, refresh_after, settings_of, unit_of_work

router = APIRouter(prefix="/v1/datasets", tags=["upload API"])
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such data set or patient, or no access"}
}


def _patient_id(caller: Principal, given: str | None) -> str:
    if given is not None:
        return given
    if caller.token is not None:
        return caller.token.patient_id
    msg = "patient_id is required when a person (not an app token) opens a data set"
    raise PatientNotFoundError(msg)


def _reach(request: Request, session: Any, caller: Principal, dataset_id: str) -> tuple[Patient, Upload]:  # noqa: ANN401
    upload = get_dataset(session, dataset_id)
    patient = reach_patient(request, session, caller, upload.patient_id, "upload")
    return patient, upload


@router.post("", status_code=status.HTTP_201_CREATED, responses=_NOT_FOUND)
def post_dataset(body: DatasetIn, caller: Caller, request: Request) -> DatasetOut:
    """Open a data set for a device (or find the one opened with the same ``name``)."""
    with unit_of_work(request) as session:
        patient = reach_patient(request, session, caller, _patient_id(caller, body.patient_id), "upload")
        upload = open_dataset(session, patient=patient, given=body, actor=caller.actor)
        record_event(
            session,
            actor=caller.actor,
            action=AuditTag.DATASET_OPEN,
            patient_id=patient.id,
            target=upload.id,
            details={"continuous": upload.state == "continuous", "format": upload.format},
        )
        return dataset_out(session, upload)


@router.get("/{dataset_id}", responses=_NOT_FOUND)
def get_dataset_route(dataset_id: str, caller: Caller, request: Request) -> DatasetOut:
    """A data set: its state, what it has received and stored, and what the device already has."""
    with unit_of_work(request) as session:
        _patient, upload = _reach(request, session, caller, dataset_id)
        return dataset_out(session, upload)


@router.post(
    "/{dataset_id}/records",
    responses={
        **_NOT_FOUND,
        409: {"description": "The data set is closed"},
        413: {"description": "More than 1,000 records: send smaller batches"},
        422: {"description": "Faulty records, each named by a JSON pointer; nothing stored"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RecordsIn"}}},
        }
    },
)
async def post_records(
    dataset_id: str,
    caller: Caller,
    request: Request,
    idempotency_key: Annotated[str | None, Header(max_length=100)] = None,
) -> AppendOut:
    """Append records to a data set (all or none); the body is ``{"records": [...]}`` (``RecordsIn``)."""
    records = records_of(await request.body())

    def work() -> tuple[AppendOut, str, bool]:
        with unit_of_work(request) as session:
            patient, upload = _reach(request, session, caller, dataset_id)
            answer = append_records(
                session, patient=patient, upload=upload, records=records, request_key=idempotency_key
            )
            return answer, patient.id, upload.state == "continuous"

    answer, patient_id, continuous = await run_in_threadpool(work)
    if continuous and answer.new:
        await run_in_threadpool(refresh_after, request, [patient_id])
    return answer


@router.post("/{dataset_id}/close", responses={**_NOT_FOUND, 409: {"description": "A continuous data set"}})
def post_close(dataset_id: str, caller: Caller, request: Request) -> DatasetOut:
    """Close an open data set: its records become visible, all at once. Closing again changes nothing."""
    with unit_of_work(request) as session:
        patient, upload = _reach(request, session, caller, dataset_id)
        was_open = upload.state == "open"
        close_dataset(session, patient=patient, upload=upload)
        if was_open:
            record_event(
                session,
                actor=caller.actor,
                action=AuditTag.UPLOAD_CREATE,
                patient_id=patient.id,
                target=upload.id,
                details={
                    "format": upload.format,
                    "new": upload.new_count,
                    "duplicates": upload.duplicate_count,
                },
            )
        answer = dataset_out(session, upload)
    refresh_after(request, [patient.id])
    return answer


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND)
def delete_dataset(dataset_id: str, caller: Caller, request: Request) -> Response:
    """Discard a data set: an open one's records are dropped, a closed one's removed like an upload."""
    with unit_of_work(request) as session:
        patient, upload = _reach(request, session, caller, dataset_id)
        remove_upload(session, settings=settings_of(request), upload_id=upload.id, actor=caller.actor)
    refresh_after(request, [patient.id])
    return Response(status_code=status.HTTP_204_NO_CONTENT)
