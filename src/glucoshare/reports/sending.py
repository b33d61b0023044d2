"""Send a report to someone who already has access: a notification with a link, never the report itself.

The recipient is one of the patient's active shares with the ``view`` permission (a clinic, whose
clinicians are all told, or a care partner). The e-mail holds no health data and no name: only
which report and period, and a link that opens it in Glucoshare after signing in, where the
permission service decides again. Reports never go to arbitrary addresses or as attachments.
"""

from __future__ import annotations

from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from glucoshare.accounts.links import public_url
from glucoshare.accounts.models import Patient, User
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.config import Settings
from glucoshare.mail.service import Mail, queue_mail
from glucoshare.reports.errors import ReportRecipientError
from glucoshare.reports.views import TITLES, ReportKind
from glucoshare.sharing.models import ClinicMember, Share
from glucoshare.sharing.schemas import real_address
from glucoshare.summaries.stats import Period


def report_path(patient_id: str, kind: ReportKind, period: Period) -> str:
    """The web page that opens the report of ``patient_id`` over ``period`` (after signing in)."""
    query = urlencode({"from": period.first.isoformat(), "to": period.last.isoformat()})
    return f"/patients/{patient_id}/reports/{kind}?{query}"


def _recipients(session: Session, share: Share) -> list[str]:
    if share.clinic_id is not None:
        users = session.scalars(
            select(User)
            .join(ClinicMember, ClinicMember.user_id == User.id)
            .where(ClinicMember.clinic_id == share.clinic_id)
        )
    else:
        users = session.scalars(select(User).where(User.id == share.user_id))
    return sorted({address for user in users if (address := real_address(user.email)) is not None})


def send_report(
    session: Session,
    settings: Settings,
    patient: Patient,
    kind: ReportKind,
    period: Period,
    *,
    share_id: str,
    actor: str,
) -> int:
    """Tell the holders of share ``share_id`` that a report of ``patient`` is ready; return how many."""
    share = session.get(Share, share_id)
    if (
        share is None
        or share.patient_id != patient.id
        or share.revoked_at is not None
        or "view" not in share.permissions
    ):
        msg = "the report can only go to a clinic or care partner who may view this patient's data"
        raise ReportRecipientError(msg)
    addresses = _recipients(session, share)
    if not addresses:
        msg = "nobody with an e-mail address holds this share"
        raise ReportRecipientError(msg)
    link = public_url(settings, report_path(patient.id, kind, period))
    days = f"{period.first:%d %b %Y} to {period.last:%d %b %Y}"
    for address in addresses:
        queue_mail(
            session,
            settings,
            Mail(
                to=address,
                subject=f"Glucoshare: a report was shared with you ({TITLES[kind]})",
                body=(
                    "Hello,\n\nsomeone whose diabetes data you can see in Glucoshare sent you a report: "
                    f"{TITLES[kind]}, {days}.\n\nSign in to open it:\n\n{link}\n\n"
                    "This message holds no health data; the report opens only for people who have access.\n"
                ),
            ),
        )
    record_event(
        session,
        actor=actor,
        action=AuditTag.REPORT_SEND,
        patient_id=patient.id,
        target=share.id,
        details={
            "report": kind,
            "from": period.first.isoformat(),
            "to": period.last.isoformat(),
            "recipients": len(addresses),
        },
    )
    return len(addresses)
