"""Reports rendered as PDF in the background: queued, rendered once by a worker, kept sealed.

A PDF takes about a second of a core (WeasyPrint); a clinic preparing tomorrow's patients asks for
dozens. :func:`queue_render` defers the work in the caller's transaction; :func:`run_render` builds
and renders the report and stores it, sealed with the patient's data key, in one transaction. The
read of the patient's data is audited when it happens, in the name of whoever asked for it.
"""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.errors import GlucoshareError
from glucoshare.jobs.claims import claim
from glucoshare.jobs.schemas import RENDER_REPORT
from glucoshare.jobs.service import defer, queue_available
from glucoshare.reports.errors import ReportRenderNotFoundError
from glucoshare.reports.models import ReportRender
from glucoshare.reports.render import render_pdf
from glucoshare.reports.schemas import ReportRenderOut
from glucoshare.reports.service import ReportOptions, build_report
from glucoshare.reports.views import ReportKind
from glucoshare.summaries.service import resolve_period
from glucoshare.summaries.stats import Period
from glucoshare.vault.cipher import seal, unseal
from glucoshare.vault.service import data_key


def _place(render: ReportRender) -> str:
    return f"report:{render.patient_id}:{render.id}"


def queue_render(
    session: Session,
    patient: Patient,
    kind: ReportKind,
    period: Period,
    *,
    options: ReportOptions,
    actor: str,
) -> ReportRender:
    """Ask for the PDF of report ``kind`` over ``period``; a worker renders it (SQLite: the caller)."""
    render = ReportRender(
        patient_id=patient.id,
        kind=kind,
        first_day=period.first,
        last_day=period.last,
        unit=options.unit,
        weekdays=None if options.weekdays is None else ",".join(str(d) for d in sorted(options.weekdays)),
        requested_by=actor,
        state="queued",
    )
    session.add(render)
    session.flush()
    if queue_available(session):
        defer(session, RENDER_REPORT, queueing_lock=f"render:{render.id}", render_id=render.id)
    return render


def claim_render(session: Session, render_id: str) -> bool:
    """Mark a render as running (one more attempt); ``False`` when it is finished already.

    The claim of every background request (:func:`glucoshare.jobs.claims.claim`).
    """
    return claim(session, ReportRender, render_id) is not None


def run_render(session: Session, render_id: str) -> None:
    """Build, render and keep the PDF, in the session's transaction (refusals propagate)."""
    render = session.scalar(select(ReportRender).where(ReportRender.id == render_id).with_for_update())
    if render is None or render.state in {"done", "failed"}:
        return
    patient = session.get(Patient, render.patient_id)
    if patient is None:
        return
    period = resolve_period(session, patient, days=None, first=render.first_day, last=render.last_day)
    weekdays = None if render.weekdays is None else frozenset(int(d) for d in render.weekdays.split(","))
    options = ReportOptions(unit=render.unit, weekdays=weekdays)  # type: ignore[arg-type]
    kind = cast("ReportKind", render.kind)
    report = build_report(
        session, patient, kind, period, actor=render.requested_by, options=options, output="pdf"
    )
    pdf = render_pdf(report)
    render.pdf_sealed = seal(data_key(session, patient.id), pdf, _place(render))
    render.size_bytes = len(pdf)
    render.state = "done"
    render.finished_at = dt.datetime.now(dt.UTC)
    session.flush()


def record_render_refusal(session: Session, render_id: str, error: GlucoshareError) -> None:
    """End a render that cannot be made: ``failed``, with the error's code and message."""
    render = session.get(ReportRender, render_id)
    if render is None or render.state in {"done", "failed"}:
        return
    render.state = "failed"
    render.error_code = error.code
    render.error_message = error.message[:500]
    render.finished_at = dt.datetime.now(dt.UTC)
    session.flush()


def _get(session: Session, patient_id: str, render_id: str) -> ReportRender:
    render = session.get(ReportRender, render_id)
    if render is None or render.patient_id != patient_id:
        msg = "no rendered report with this id"
        raise ReportRenderNotFoundError(msg)
    return render


def render_out(session: Session, patient_id: str, render_id: str) -> ReportRenderOut:
    """A render of the patient's, with the path of its PDF once done."""
    render = _get(session, patient_id, render_id)
    done = render.state == "done"
    return ReportRenderOut(
        id=render.id,
        patient_id=render.patient_id,
        kind=render.kind,
        first=render.first_day,
        last=render.last_day,
        state=render.state,
        created_at=render.created_at,
        finished_at=render.finished_at,
        size_bytes=render.size_bytes,
        pdf=f"/v1/patients/{render.patient_id}/renders/{render.id}/pdf" if done else None,
        error_code=render.error_code,
        error_message=render.error_message,
    )


def rendered_pdf(session: Session, patient_id: str, render_id: str) -> tuple[bytes, str]:
    """The rendered PDF and a file name for it; not found until the render is done."""
    render = _get(session, patient_id, render_id)
    if render.state != "done" or render.pdf_sealed is None:
        msg = "this report is not rendered (yet)"
        raise ReportRenderNotFoundError(msg)
    pdf = unseal(data_key(session, patient_id), render.pdf_sealed, _place(render))
    name = f"glucoshare-{render.kind}-{render.first_day.isoformat()}-{render.last_day.isoformat()}.pdf"
    return pdf, name
