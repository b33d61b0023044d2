"""Errors of the summaries domain."""

from __future__ import annotations

from glucoshare.errors import InputError


class InvalidStatsPeriodError(InputError):
    """The requested period is not usable (too long, or ``--days`` not positive)."""

    code = "invalid_period"


class InvalidTargetRangeError(InputError):
    """A target range that cannot be (a custom range without both ends, or ends out of order)."""

    code = "invalid_target_range"
