"""Inputs and outputs of the ingest domain."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Literal

from pydantic import BaseModel

from glucoshare.records.schemas import UploadOut


@dataclasses.dataclass(frozen=True, slots=True)
class IncomingFile:
    """A file to import: its name (for messages and provenance only) and its bytes."""

    name: str
    data: bytes


class ErrorBody(BaseModel):
    """The one error shape's body (``{"code", "message", "status"}``)."""

    code: str
    message: str
    status: int


class ImportRequestOut(BaseModel):
    """A queued import: its state and, once finished, the uploads it made or why it was refused."""

    id: str
    patient_id: str
    state: Literal["queued", "running", "done", "failed"]
    files: int
    size_bytes: int
    created_at: dt.datetime
    finished_at: dt.datetime | None
    uploads: list[UploadOut] | None = None
    error: ErrorBody | None = None
