"""View models of the reports: what a page shows, already worded and formatted, ready for a template.

A report is a header, notices (too little data, what was left out) and sections; a section holds
figures (label, value, goal and whether it is met), a chart (SVG), a table and sentences, and may
have a second section beside it. One template renders every report (``report.html``), for the
web app and, with print styles, for the PDF.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from markupsafe import Markup

ReportKind = Literal["agp", "daily", "overlay", "patterns", "progress", "settings"]
REPORT_KINDS: tuple[ReportKind, ...] = ("agp", "daily", "overlay", "patterns", "progress", "settings")
TITLES: dict[str, str] = {
    "agp": "AGP Report: Continuous Glucose Monitoring",
    "daily": "Daily view",
    "overlay": "Trends by time of day",
    "patterns": "Patterns",
    "progress": "Assessment and progress",
    "settings": "Device settings",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Header:
    """Who and which period the report is about."""

    title: str
    patient_name: str
    birthdate: str | None
    period: str
    """Such as ``1 Nov 2026 – 14 Nov 2026 (14 days)``."""
    first: str
    """First local date, ISO."""
    last: str
    """Last local date, ISO."""
    timezone: str
    unit: str
    generated: str
    """When and by what the report was made (UTC)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Figure:
    """One number with its label, the goal it is held against and whether it meets it."""

    label: str
    value: str
    goal: str | None = None
    met: bool | None = None
    note: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Table:
    """A plain table; ``numeric`` marks the columns aligned right."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...] = ()

    @property
    def numeric_columns(self) -> frozenset[int]:
        """Indexes of the columns aligned right."""
        return frozenset(at for at, flag in enumerate(self.numeric) if flag)


@dataclasses.dataclass(frozen=True, slots=True)
class Section:
    """A titled block of a report page."""

    title: str
    figures: tuple[Figure, ...] = ()
    chart: Markup | None = None
    table: Table | None = None
    sentences: tuple[str, ...] = ()
    side: Section | None = None
    """A second block shown beside this one (on wide pages)."""
    new_page: bool = False
    """Start this section on a new printed page."""


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    """A whole report."""

    kind: ReportKind
    header: Header
    notices: tuple[str, ...]
    sections: tuple[Section, ...]
    landscape: bool = False
