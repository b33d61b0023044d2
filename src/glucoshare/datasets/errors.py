"""Errors of data sets (the native upload API).

::

    InputError (glucoshare.errors)
    ├── RecordsBodyError        the body is not ``{"records": [...]}`` (HTTP 400)
    ├── RecordsInvalidError     records break the rules; ``errors`` points at each (HTTP 422)
    ├── TooManyRecordsError     more records in one request than a request may carry (HTTP 413)
    └── ConflictError
        └── DatasetClosedError  the data set takes no more records (HTTP 409)
    NotFoundError (glucoshare.errors)
    └── DatasetNotFoundError    no such data set, or not the caller's (HTTP 404)

Messages and pointers name the field and the rule, never a value the client sent (it may be
health data).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from glucoshare.errors import ConflictError, InputError, NotFoundError


@dataclasses.dataclass(frozen=True, slots=True)
class RecordError:
    """One problem of a request's records.

    ``pointer`` is an RFC 6901 JSON pointer into the request body: ``/records/3/value`` (a field),
    ``/records/7`` (a whole record, or a field it lacks), ``/records`` or ``""`` (the body).
    ``message`` names the field and the rule it breaks.
    """

    pointer: str
    message: str


class RecordsInvalidError(InputError):
    """Records of a request break the rules; nothing of the request is stored.

    ``errors`` lists the problems in record order (at most
    :data:`~glucoshare.datasets.records.MAX_ERRORS`); ``more`` says how many more there were.
    """

    code = "records_invalid"
    http_status = 422

    def __init__(self, errors: Sequence[RecordError], more: int = 0) -> None:
        total = len(errors) + more
        first = errors[0]
        where = f"{first.pointer}: " if first.pointer else ""
        noun = "problem" if total == 1 else "problems"
        super().__init__(
            f"nothing was stored: {total} {noun} in the records; the first: {where}{first.message}"
        )
        self.errors = tuple(errors)
        self.more = more

    def to_dict(self) -> dict[str, object]:
        """The one JSON error shape, with ``errors`` (``pointer``, ``message``) and ``more_errors``."""
        document = super().to_dict()
        body = document["error"]
        assert isinstance(body, dict)  # noqa: S101 - error_document's shape
        body["errors"] = [{"pointer": e.pointer, "message": e.message} for e in self.errors]
        body["more_errors"] = self.more
        return document


class TooManyRecordsError(InputError):
    """A request carries more records than one request may (split it into several)."""

    code = "too_many_records"
    http_status = 413


class RecordsBodyError(InputError):
    """The request body is not a JSON object ``{"records": [...]}``."""

    code = "invalid_records_body"


class DatasetClosedError(ConflictError):
    """The data set is closed (or its device is gone): it takes no more records."""

    code = "dataset_closed"


class DatasetNotFoundError(NotFoundError):
    """No data set has this id, or the caller may not know it."""

    code = "dataset_not_found"
