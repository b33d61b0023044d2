"""Outputs of the audit domain."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel

Outcome = Literal["success", "failure", "denied"]
"""How an audited action ended: done, failed (a wrong password), refused (no permission, throttled)."""


class ChainReport(BaseModel):
    """Result of verifying the audit chain."""

    events: int
    intact: bool
    first_bad_event: int | None = None
    reason: str | None = None


class AccessEntryOut(BaseModel):
    """One entry of a patient's access log: when, who, what, from where, how it ended (never the data)."""

    at: dt.datetime
    actor: str
    action: str
    target: str | None
    ip: str | None = None
    user_agent: str | None = None
    outcome: Outcome = "success"
