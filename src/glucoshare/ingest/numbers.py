"""Locale-aware number parsing for vendor exports (decimal point or decimal comma)."""

from __future__ import annotations

import math


def parse_number(text: str, *, decimal_comma: bool = False) -> float:
    """Parse a decimal number written with ``.`` or, when ``decimal_comma``, with ``,``.

    Raises ``ValueError`` for empty, non-numeric, infinite or NaN text.
    """
    value = text.strip()
    if decimal_comma:
        value = value.replace(".", "").replace(",", ".") if "," in value else value
    if "_" in value:
        msg = "not a number"
        raise ValueError(msg)
    number = float(value)
    if not math.isfinite(number):
        msg = "not a finite number"
        raise ValueError(msg)
    return number


def bounded_amount(text: str, what: str, upper: float) -> float:
    """A cell's number in ``[0, upper]``, written with a decimal point or comma.

    Raises ``ValueError`` naming ``what`` and the rule broken (never the text itself).
    """
    try:
        number = parse_number(text, decimal_comma="," in text)
    except ValueError:
        msg = f"{what} is not a number"
        raise ValueError(msg) from None
    if number < 0:
        msg = f"{what} is negative"
        raise ValueError(msg)
    if number > upper:
        msg = f"{what} is out of range"
        raise ValueError(msg)
    return number


def parse_duration_ms(text: str) -> int:
    """Parse ``h:mm:ss`` (or ``hh:mm:ss``) into milliseconds; ``ValueError`` when malformed."""
    parts = text.strip().split(":")
    if len(parts) != 3:  # noqa: PLR2004 - h:mm:ss
        msg = "duration is not h:mm:ss"
        raise ValueError(msg)
    hours, minutes, seconds = (int(p) for p in parts)
    if hours < 0 or not 0 <= minutes < 60 or not 0 <= seconds < 60:  # noqa: PLR2004
        msg = "duration out of range"
        raise ValueError(msg)
    return ((hours * 60 + minutes) * 60 + seconds) * 1000
