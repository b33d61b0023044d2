"""Errors of the Nightscout-compatible API."""

from __future__ import annotations

from glucoshare.errors import ConflictError, InputError, PermissionDeniedError, UnauthenticatedError


class DocumentInvalidError(InputError):
    """A posted document cannot be read (the message names its index and field)."""

    code = "invalid_document"


class DocumentConflictError(ConflictError):
    """A posted ``_id`` belongs to another document."""

    code = "document_conflict"


class BodyUnreadableError(InputError):
    """A request body that is neither JSON nor a form, or a broken gzip stream."""

    code = "unreadable_body"


class CredentialMissingError(UnauthenticatedError):
    """No API secret, access token or JWT came with the request, or it is not valid."""

    code = "unauthorized"


class RoleMissingError(PermissionDeniedError):
    """The credential is valid but its roles do not allow this."""

    code = "forbidden"
