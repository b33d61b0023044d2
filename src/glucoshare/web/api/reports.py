"""``/v1/patients/{id}/reports``: a patient's reports as HTML or PDF, and sending one to someone with access.

Reading a report needs the ``view`` permission; a caller without it gets ``404``, as for a patient
that does not exist. Every report made is audited.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.jobs.service import queue_available
from glucoshare.jobs.tasks import perform_render
from glucoshare.reports.render import STYLESHEET, render_html, render_pdf
from glucoshare.reports.renders import queue_render, render_out, rendered_pdf
from glucoshare.reports.schemas import ReportRenderOut
from glucoshare.reports.sending import send_report
from glucoshare.reports.service import ReportOptions, build_report
from glucoshare.reports.units import Unit
from glucoshare.reports.views import ReportKind
from glucoshare.summaries.service import resolve_period
from glucoshare.web.deps import Caller, reach_patient, settings_of, unit_of_work

router = APIRouter(prefix="/v1/patients", tags=["reports"])
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such patient, or no access"}}
_DOCUMENTS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The report",
        "content": {"text/html": {}, "application/pdf": {}},
    },
    **_NOT_FOUND,
}


class SendReportIn(BaseModel):
    """Whom to tell about a report, and which period it covers (default: the last 14 days of data)."""

    share_id: str = Field(max_length=32, description="One of the patient's shares (GET /v1/shares)")
    days: int | None = Field(default=None, ge=1, le=3660)
    from_: dt.date | None = Field(default=None, alias="from")
    to: dt.date | None = None


class SendReportOut(BaseModel):
    """How many people were told."""

    recipients: int


@dataclasses.dataclass(frozen=True, slots=True)
class ReportQuery:
    """The period, unit and weekdays a report is asked for."""

    days: int | None
    first: dt.date | None
    last: dt.date | None
    options: ReportOptions


def report_query(
    days: Annotated[int | None, Query(ge=1, le=3660)] = None,
    from_: Annotated[dt.date | None, Query(alias="from")] = None,
    to: Annotated[dt.date | None, Query()] = None,
    units: Annotated[Unit | None, Query(description="mg/dL or mmol/L (default: the patient's)")] = None,
    weekdays: Annotated[
        list[int] | None, Query(description="overlay only: weekdays to include, 0 = Monday … 6 = Sunday")
    ] = None,
) -> ReportQuery:
    """The report's query parameters, shared by the report itself and its background rendering."""
    options = ReportOptions(unit=units, weekdays=None if weekdays is None else frozenset(weekdays))
    return ReportQuery(days=days, first=from_, last=to, options=options)


ReportQueryParams = Annotated[ReportQuery, Depends(report_query)]


@router.get("/{patient_id}/reports/{kind}", responses=_DOCUMENTS, response_class=Response)
def get_report(
    patient_id: str,
    kind: ReportKind,
    caller: Caller,
    request: Request,
    query: ReportQueryParams,
    output: Annotated[Literal["html", "pdf"], Query(alias="format")] = "html",
) -> Response:
    """The report as an HTML page (default) or a PDF download."""
    with unit_of_work(request) as session:
        patient = reach_patient(request, session, caller, patient_id, "view")
        period = resolve_period(session, patient, days=query.days, first=query.first, last=query.last)
        report = build_report(
            session, patient, kind, period, actor=caller.actor, options=query.options, output=output
        )
    if output == "pdf":
        name = f"glucoshare-{kind}-{period.first.isoformat()}-{period.last.isoformat()}.pdf"
        return Response(
            render_pdf(report),
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return HTMLResponse(render_html(report, stylesheet_href=f"/static/reports/{STYLESHEET}"))


@router.post(
    "/{patient_id}/reports/{kind}/send",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**_NOT_FOUND, 400: {"description": "Not someone with access to the patient's data"}},
)
def post_send_report(
    patient_id: str, kind: ReportKind, body: SendReportIn, caller: Caller, request: Request
) -> SendReportOut:
    """Tell a clinic or care partner with access that a report is ready (an e-mail with a link, no data)."""
    settings = settings_of(request)
    with unit_of_work(request) as session:
        patient = reach_patient(request, session, caller, patient_id, "view")
        period = resolve_period(session, patient, days=body.days, first=body.from_, last=body.to)
        count = send_report(
            session, settings, patient, kind, period, share_id=body.share_id, actor=caller.actor
        )
    return SendReportOut(recipients=count)


@router.post(
    "/{patient_id}/reports/{kind}/renders", status_code=status.HTTP_202_ACCEPTED, responses=_NOT_FOUND
)
def post_render(
    patient_id: str,
    kind: ReportKind,
    caller: Caller,
    request: Request,
    query: ReportQueryParams,
) -> ReportRenderOut:
    """Render the report as a PDF in the background: answers at once with the render's id and state.

    Follow ``GET /v1/patients/{patient_id}/renders/{render_id}`` until ``done``, then fetch its
    ``pdf``. On PostgreSQL a worker renders it; on SQLite it is rendered before the answer comes.
    """
    with unit_of_work(request) as session:
        patient = reach_patient(request, session, caller, patient_id, "view")
        period = resolve_period(session, patient, days=query.days, first=query.first, last=query.last)
        render_id = queue_render(session, patient, kind, period, options=query.options, actor=caller.actor).id
    engine = request.app.state.engine
    if not queue_available(engine):
        perform_render(engine, render_id)
    with unit_of_work(request) as session:
        return render_out(session, patient_id, render_id)


@router.get("/{patient_id}/renders/{render_id}", responses=_NOT_FOUND)
def get_render(patient_id: str, render_id: str, caller: Caller, request: Request) -> ReportRenderOut:
    """A report rendered in the background: its state, and once done the path of its PDF."""
    with unit_of_work(request) as session:
        reach_patient(request, session, caller, patient_id, "view")
        return render_out(session, patient_id, render_id)


@router.get(
    "/{patient_id}/renders/{render_id}/pdf",
    responses={200: {"content": {"application/pdf": {}}}, **_NOT_FOUND},
    response_class=Response,
)
def get_render_pdf(patient_id: str, render_id: str, caller: Caller, request: Request) -> Response:
    """The rendered PDF (``404`` until it is done); every download is audited."""
    with unit_of_work(request) as session:
        patient = reach_patient(request, session, caller, patient_id, "view")
        pdf, name = rendered_pdf(session, patient_id, render_id)
        record_event(
            session,
            actor=caller.actor,
            action=AuditTag.REPORT_READ,
            patient_id=patient.id,
            target=render_id,
            details={"output": "pdf", "rendered": True},
        )
    return Response(
        pdf, media_type="application/pdf", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )
