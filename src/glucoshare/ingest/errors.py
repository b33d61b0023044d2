"""Errors of the ingest domain.

Every message names the file and, where there is one, the line; none repeats the content of a row
(it may be health data).
"""

from collections.abc import Sequence

from glucoshare.errors import (
    InputError,
    InvalidFileError,
    NotFoundError,
    UnreadableFileError,
    UnrecognisedFormatError,
)


class FileTooLargeError(UnreadableFileError):
    """The file is larger than ``GLUCOSHARE_MAX_UPLOAD_BYTES``."""

    code = "file_too_large"
    http_status = 413


class EmptyFileError(UnreadableFileError):
    """The file has no content."""

    code = "empty_file"


class BinaryFileError(UnreadableFileError):
    """The file is not text (and not an archive we read)."""

    code = "binary_file"


class EncodingError(UnreadableFileError):
    """The file is text in an encoding we cannot read."""

    code = "bad_encoding"


class UnknownFormatError(UnrecognisedFormatError):
    """No importer recognises the content."""

    code = "unrecognised_format"


class ArchiveRefusedError(UnreadableFileError):
    """A zip archive that is damaged, or breaks a safety rule (traversal, links, bombs, encryption)."""

    code = "archive_refused"
    http_status = 422


class MalformedFileError(InvalidFileError):
    """The file is of a known format but broken: truncated, missing its header, or mostly unreadable."""

    code = "malformed_file"


class NoRecordsError(InvalidFileError):
    """The file is well formed but holds no records; ``notes`` say what of it was not stored, and why."""

    code = "no_records"

    def __init__(self, message: str, notes: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.notes = tuple(notes)


class InvalidTimezoneError(InputError):
    """The time zone given for the file's local times is not an IANA name."""

    code = "invalid_timezone"


class ImportRequestNotFoundError(NotFoundError):
    """No queued import with this id for this patient."""

    code = "import_not_found"
