"""Errors of the sharing domain."""

from __future__ import annotations

from glucoshare.errors import (
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)


class ClinicNotFoundError(NotFoundError):
    """No such clinic, or the caller is not one of its members."""

    code = "clinic_not_found"


class ShareCodeNotFoundError(NotFoundError):
    """No clinic has this share code."""

    code = "share_code_not_found"


class ShareNotFoundError(NotFoundError):
    """No such share, or not one the caller may see."""

    code = "share_not_found"


class InvitationInvalidError(UnauthenticatedError):
    """The invitation is unknown, used, revoked or older than 7 days."""

    code = "invitation_invalid"


class InvitationNotFoundError(NotFoundError):
    """No such invitation, or not one the caller may manage."""

    code = "invitation_not_found"


class NotClinicAdminError(PermissionDeniedError):
    """Only the clinic's admins may do this."""

    code = "clinic_admin_required"


class InvalidSharingError(InputError):
    """A sharing request that cannot be carried out as asked."""

    code = "invalid_sharing"


class AlreadySharedError(ConflictError):
    """The patient already shares with this clinic or person."""

    code = "already_shared"


class MrnTakenError(ConflictError):
    """Another patient of the clinic has this MRN."""

    code = "mrn_taken"


class ReminderTooSoonError(InvalidSharingError):
    """The patient was reminded less than a day ago."""

    code = "reminder_too_soon"
