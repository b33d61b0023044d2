"""Printed invitations: a one-page PDF with the clinic's invitation code and plain instructions.

Rendered from a Jinja2 template shipped in the package with WeasyPrint; the page holds no health
data and no patient's name, only the clinic and the code.
"""

from __future__ import annotations

from glucoshare.config import Settings
from glucoshare.sharing.errors import InvalidSharingError
from glucoshare.sharing.models import Clinic, Invitation
from glucoshare.templating import templates

_DETAILS = ("address", "country", "phone", "website")


def invitation_pdf(settings: Settings, clinic: Clinic, invitation: Invitation) -> bytes:
    """The printable invitation (A4 PDF) of a clinic's invitation to a patient."""
    if invitation.kind != "patient" or invitation.code is None:
        msg = "only a clinic's invitations to patients have a printable code"
        raise InvalidSharingError(msg)
    html = (
        templates("glucoshare.sharing")
        .get_template("invitation.html")
        .render(
            clinic=clinic,
            details=[str(clinic.details[k]) for k in _DETAILS if clinic.details.get(k)],
            code=invitation.code,
            base_url=settings.base_url,
            expires=invitation.expires_at.strftime("%d %B %Y, %H:%M UTC"),
        )
    )
    import weasyprint  # noqa: PLC0415 - loads Pango and fonts: only when a PDF is made

    pdf: bytes = weasyprint.HTML(string=html).write_pdf()
    return pdf
