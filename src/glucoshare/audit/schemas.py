"""Outputs of the audit domain."""

from __future__ import annotations

from pydantic import BaseModel


class ChainReport(BaseModel):
    """Result of verifying the audit chain."""

    events: int
    intact: bool
    first_bad_event: int | None = None
    reason: str | None = None
