"""Spreadsheet formula-injection guard for CSV cells (OWASP ASVS 5.0 requirement 1.2.10)."""

from __future__ import annotations

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\x00")


def safe_cell(value: str) -> str:
    """Prefix a text cell that a spreadsheet would read as a formula with a single quote.

    Apply to text only; numbers are written by Glucoshare itself and must stay numbers.
    """
    if value.startswith(_TRIGGERS):
        return "'" + value
    return value
