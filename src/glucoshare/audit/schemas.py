"""Outputs of the audit domain."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel


class ChainReport(BaseModel):
    """Result of verifying the audit chain."""

    events: int
    intact: bool
    first_bad_event: int | None = None
    reason: str | None = None


class AccessEntryOut(BaseModel):
    """One entry of a patient's access log: when, who, what (never the data itself)."""

    at: dt.datetime
    actor: str
    action: str
    target: str | None
