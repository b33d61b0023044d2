"""The one error tree of Glucoshare.

::

    GlucoshareError                 root; .code is stable and machine readable
    ├── InputError                  bad input or a request that cannot be carried out (exit 2, HTTP 400)
    │   ├── UnreadableFileError     the file cannot be read at all (empty, binary, wrong encoding, too big)
    │   ├── UnrecognisedFormatError no importer recognises the content
    │   ├── InvalidFileError        a recognised format whose content is broken (names file and line)
    │   └── ConflictError           the request contradicts stored state (HTTP 409)
    ├── NotFoundError               the thing does not exist or the caller may not know it (exit 2, HTTP 404)
    ├── UnauthenticatedError        the caller could not be identified (exit 2, HTTP 401)
    ├── TooManyRequestsError        too many attempts; try again later (exit 2, HTTP 429)
    ├── PermissionDeniedError       the caller may not do this (exit 2, HTTP 403)
    └── InternalError               a bug or an environment fault (exit 1, HTTP 500)

Each domain package subclasses these in its own ``errors.py``. The command line maps every
``GlucoshareError`` except ``InternalError`` to exit code 2 and one line on stderr; anything else is
exit code 1. Messages never contain health data, secrets or tokens.
"""

from __future__ import annotations

from typing import ClassVar


def error_document(code: str, message: str, status: int) -> dict[str, object]:
    """The one JSON error shape: ``{"error": {"code", "message", "status"}}``."""
    return {"error": {"code": code, "message": message, "status": status}}


class GlucoshareError(Exception):
    """Root of every error Glucoshare raises on purpose."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        """This error in the one JSON error shape (:func:`error_document`)."""
        return error_document(self.code, self.message, self.http_status)


class InputError(GlucoshareError):
    """Bad input, or a request that cannot be carried out."""

    code = "invalid_input"
    http_status = 400
    exit_code = 2


class UnreadableFileError(InputError):
    """The file cannot be read at all."""

    code = "unreadable_file"


class UnrecognisedFormatError(InputError):
    """No importer recognises the file's content."""

    code = "unrecognised_format"
    http_status = 415


class InvalidFileError(InputError):
    """A recognised format whose content is broken."""

    code = "invalid_file"
    http_status = 422


class ConflictError(InputError):
    """The request contradicts what is stored."""

    code = "conflict"
    http_status = 409


class NotFoundError(GlucoshareError):
    """The thing does not exist, or the caller may not know that it does."""

    code = "not_found"
    http_status = 404
    exit_code = 2


class UnauthenticatedError(GlucoshareError):
    """The caller could not be identified (wrong or missing credentials)."""

    code = "unauthenticated"
    http_status = 401
    exit_code = 2


class TooManyRequestsError(GlucoshareError):
    """Too many attempts in a short time; ``retry_after`` says when to try again (seconds)."""

    code = "too_many_requests"
    http_status = 429
    exit_code = 2

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermissionDeniedError(GlucoshareError):
    """The caller may not do this."""

    code = "permission_denied"
    http_status = 403
    exit_code = 2


class InternalError(GlucoshareError):
    """A bug or an environment fault."""

    code = "internal_error"
    http_status = 500
    exit_code = 1
