"""One flat, documented view of a stored record, shared by the CSV and JSON exports."""

from __future__ import annotations

import datetime as dt
from typing import Any

from glucoshare.devices.models import Device
from glucoshare.records.models import Record
from glucoshare.records.schemas import iso_utc
from glucoshare.records.vocabulary import VALUE_UNITS

EXPORT_FIELDS = (
    "id",
    "type",
    "subtype",
    "time_utc",
    "local_time",
    "utc_offset_min",
    "value",
    "unit",
    "orig_value",
    "orig_unit",
    "duration_ms",
    "annotation",
    "payload",
    "device_manufacturer",
    "device_model",
    "device_serial",
    "upload_id",
    "source_line",
)


def local_time(time_ms: int, offset_min: int) -> str:
    """The source's wall time (ISO 8601 without offset) from a UTC instant and its offset."""
    wall = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=time_ms + offset_min * 60_000)  # noqa: DTZ001
    spec = "milliseconds" if time_ms % 1000 else "seconds"
    return wall.isoformat(timespec=spec)


def record_row(
    record: Record, device: Device, upload_id: str | None, payload: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The export fields of one record (``payload`` stays a mapping); ``upload_id`` is public.

    ``payload`` replaces the stored one (a note's, opened from its seal).
    """
    return {
        "id": record.id,
        "type": record.type,
        "subtype": record.subtype,
        "time_utc": iso_utc(record.time_ms),
        "local_time": local_time(record.time_ms, record.utc_offset_min),
        "utc_offset_min": record.utc_offset_min,
        "value": record.value,
        "unit": VALUE_UNITS.get(record.type) if record.value is not None else None,
        "orig_value": record.orig_value,
        "orig_unit": record.orig_unit,
        "duration_ms": record.duration_ms,
        "annotation": record.annotation,
        "payload": record.payload if payload is None else payload,
        "device_manufacturer": device.manufacturer,
        "device_model": device.model,
        "device_serial": device.serial,
        "upload_id": upload_id,
        "source_line": record.source_line,
    }
