"""Errors of the records domain."""

from glucoshare.errors import NotFoundError


class UploadNotFoundError(NotFoundError):
    """No upload has this id."""

    code = "upload_not_found"
