"""Errors of the reports domain."""

from __future__ import annotations

from glucoshare.errors import InputError, NotFoundError


class InvalidReportError(InputError):
    """A report that cannot be made as asked (unknown kind, no weekday chosen, bad unit)."""

    code = "invalid_report"


class ReportRecipientError(InputError):
    """A report cannot be sent to that recipient (no access to the patient's data, or not theirs)."""

    code = "invalid_recipient"


class ReportRenderNotFoundError(NotFoundError):
    """No rendered report with this id for this patient (or it is not ready)."""

    code = "render_not_found"
