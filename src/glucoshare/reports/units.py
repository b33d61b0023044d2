"""Glucose as the reader wants it printed: mg/dL or mmol/L, with the consensus cut-offs as printed.

Values are stored and charted in mg/dL; only labels change with the unit. The consensus cut-offs
have printed mmol/L forms (3.0, 3.9, 7.8, 10.0, 13.9; Battelino T et al., Diabetes Care
2019;42:1593) that are not the exact conversions, so they are printed from a table, while any
other value is converted with 18.01559 mg/dL per mmol/L.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from glucoshare.records.vocabulary import mgdl_to_mmol

Unit = Literal["mg/dL", "mmol/L"]
UNITS: tuple[Unit, ...] = ("mg/dL", "mmol/L")
_PRINTED_MMOL = {
    54.0: "3.0",
    63.0: "3.5",
    70.0: "3.9",
    140.0: "7.8",
    154.0: "8.6",
    180.0: "10.0",
    250.0: "13.9",
}
DASH = "–"
"""What a report prints for a figure that cannot be computed."""


@dataclasses.dataclass(frozen=True, slots=True)
class Glucose:
    """Formats glucose values (given in mg/dL) in the report's unit."""

    unit: Unit

    def value(self, mgdl: float) -> float:
        """``mgdl`` in the report's unit."""
        return mgdl if self.unit == "mg/dL" else mgdl_to_mmol(mgdl)

    def fmt(self, mgdl: float | None) -> str:
        """A glucose value as printed: whole mg/dL, or mmol/L with one decimal (cut-offs as printed)."""
        if mgdl is None or not math.isfinite(mgdl):
            return DASH
        if self.unit == "mg/dL":
            return f"{mgdl:.0f}"
        printed = _PRINTED_MMOL.get(round(mgdl, 6))
        return printed if printed is not None else f"{mgdl_to_mmol(mgdl):.1f}"

    def with_unit(self, mgdl: float | None) -> str:
        """:meth:`fmt` followed by the unit."""
        text = self.fmt(mgdl)
        return text if text == DASH else f"{text} {self.unit}"

    def span(self, low_mgdl: float, high_mgdl: float) -> str:
        """A range such as ``70–180 mg/dL``."""
        return f"{self.fmt(low_mgdl)}–{self.fmt(high_mgdl)} {self.unit}"


def pct(value: float | None, digits: int = 0) -> str:
    """A percentage as printed (``None`` and NaN as a dash)."""
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value:.{digits}f} %"


def number(value: float | None, digits: int = 1, suffix: str = "") -> str:
    """A number with ``digits`` decimals and an optional unit suffix (``None`` as a dash)."""
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value:.{digits}f}{' ' + suffix if suffix else ''}"


def duration_per_day(pct_value: float | None) -> str:
    """The time per day a percentage of the day stands for, such as ``2 h 24 min``."""
    if pct_value is None or not math.isfinite(pct_value):
        return DASH
    minutes = round(pct_value / 100.0 * 1440)
    hours, rest = divmod(minutes, 60)
    if hours and rest:
        return f"{hours} h {rest} min"
    return f"{hours} h" if hours else f"{rest} min"
