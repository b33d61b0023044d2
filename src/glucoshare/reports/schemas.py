"""Outputs of the reports domain."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel


class ReportRenderOut(BaseModel):
    """A report rendered in the background: its state, and once ``done`` where to fetch the PDF."""

    id: str
    patient_id: str
    kind: str
    first: dt.date
    last: dt.date
    state: Literal["queued", "running", "done", "failed"]
    created_at: dt.datetime
    finished_at: dt.datetime | None
    size_bytes: int | None
    pdf: str | None
    """The PDF's path (``GET``), once done."""
    error_code: str | None = None
    error_message: str | None = None
