"""What every writer returns."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class ExpectedRecord:
    """A canonical record as an importer must read it from the written file.

    ``value`` is in the canonical unit (glucose in mg/dL, converted from what was written).
    """

    type: str
    subtype: str
    utc_ms: int
    value: float | None
    annotation: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class WrittenExport:
    """A vendor file and the records it holds."""

    file_name: str
    data: bytes
    expected: list[ExpectedRecord]
