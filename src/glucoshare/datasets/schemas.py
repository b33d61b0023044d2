"""Shapes of the native upload API for its OpenAPI description.

:class:`RecordIn` and :class:`RecordsIn` describe ``POST /v1/datasets/{id}/records``; the route
checks a body with :func:`glucoshare.datasets.records.validate_records`, which points at every
problem (a pydantic check would stop at types and miss the rules of version 1).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from glucoshare.accounts.schemas import check_timezone
from glucoshare.datasets.records import MAX_ID, MAX_ORIG_UNIT, MAX_PAYLOAD_CHARS, MAX_RECORDS
from glucoshare.devices.schemas import DeviceOut
from glucoshare.ingest.glucoshare_csv import MAX_DURATION_MIN, MAX_TEXT, RULES

_TYPES = ", ".join(RULES)
_EXAMPLES: list[JsonValue] = [
    {"type": "cbg", "subtype": "sensor", "time": "2026-01-15T07:00:00+01:00", "value": 142, "unit": "mg/dL"},
    {"type": "smbg", "time": "2026-01-15T07:10", "timezone": "Europe/Berlin", "value": 7.9, "unit": "mmol/L"},
    {
        "type": "bolus",
        "subtype": "extended",
        "time": "2026-01-15T07:15:00+01:00",
        "value": 3.5,
        "unit": "U",
        "duration_min": 120,
    },
    {"type": "deviceEvent", "subtype": "alarm", "time": "2026-01-15T03:12:40Z", "text": "Low glucose"},
]


class RecordIn(BaseModel):
    """One record: the columns of the generic CSV, version 1 (docs/formats/generic-csv.md), and more."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": _EXAMPLES})

    type: str = Field(
        description=f"The record type (case-insensitive): {_TYPES}. wizard, pumpSettings and cgmSettings "
        "are not part of version 1."
    )
    subtype: str | None = Field(
        default=None,
        description="The type's subtype (docs/formats/generic-csv.md, record types); left out: the type's "
        "default. A deviceEvent needs one.",
    )
    time: str = Field(
        description="ISO 8601 date and time: with a UTC offset (2026-01-15T07:00:00+01:00, exact), with Z "
        "(the time zone's offset at that instant is stored) or a local wall time without offset "
        "(2026-01-15T07:00) in the record's timezone or the data set's. Milliseconds are kept.",
    )
    timezone: str | None = Field(
        default=None,
        description="IANA time zone of the record (Europe/Berlin); left out: the data set's. A time with an "
        "offset must have this zone's offset at that instant.",
    )
    value: float | None = Field(
        default=None,
        description="The number, in unit; a JSON number (not a string). Required for cbg, smbg, bloodKetone, "
        "basal, bolus, food and insulin; only a prime among device events has one; ranges as in the "
        "generic CSV.",
    )
    unit: str | None = Field(
        default=None,
        description="The unit of value (case-insensitive): mg/dL or mmol/L for glucose (stored in mg/dL), "
        "mmol/L for ketones, U/h for basal, U for bolus, insulin and a prime, g for food. With a value "
        "and only with one.",
    )
    annotation: str | None = Field(
        default=None,
        description="low or high: the glucose device showed LO or HI, and value is its limit (cbg, smbg "
        "only).",
    )
    duration_min: float | None = Field(
        default=None,
        description=f"Minutes, above 0 and at most {MAX_DURATION_MIN:g}: a basal rate's, an extended or dual "
        "bolus's extended part, a physical activity.",
    )
    text: str | None = Field(
        default=None,
        description="A note's text (required for a note) or a device event's (an alarm's name); on any "
        f"other type an extra note at the same time. At most {MAX_TEXT} characters.",
    )
    id: str | None = Field(
        default=None,
        description="The record's identity beside type, instant and value: two records alike in those stay "
        "two when their ids differ, and a record sent again with its id is stored once. Left out: a "
        "note's or device event's text, else empty. Not kept for cbg (sensor readings are told apart "
        f"by instant and subtype). At most {MAX_ID} characters.",
    )
    payload: dict[str, Any] | None = Field(
        default=None,
        description=f"Further fields of the record, stored as its payload (at most {MAX_PAYLOAD_CHARS} "
        "characters as compact JSON, 8 levels deep, finite numbers, whole numbers within ±2^53). On a "
        "note or device event the text goes in text, not here.",
    )
    orig_value: float | None = Field(
        default=None,
        description="What the device wrote, where it is not value in unit (an importer's rounding, a LO "
        "whose limit is value); null: the device wrote no number. Given (either of orig_value and "
        "orig_unit, null included), they replace what is kept by default: value and unit for glucose and "
        "ketones, nothing for other types.",
    )
    orig_unit: str | None = Field(
        default=None,
        description=f"The unit of orig_value as the device wrote it (1 to {MAX_ORIG_UNIT} characters); "
        "required with orig_value.",
    )


class RecordsIn(BaseModel):
    """The body of ``POST /v1/datasets/{id}/records``."""

    model_config = ConfigDict(extra="forbid")

    records: list[RecordIn] = Field(
        description=f"At most {MAX_RECORDS} records (more: 413). Every record is checked; one that breaks "
        "a rule refuses the request (422) with a JSON pointer and a reason per problem, and nothing is "
        "stored.",
    )


# -- data sets (the lead's part) -------------------------------------------------------------------


class DeviceIn(BaseModel):
    """The device a data set's records come from."""

    model_config = ConfigDict(extra="forbid")

    manufacturer: str = Field(min_length=1, max_length=100, description="The device's maker, e.g. Dexcom.")
    model: str = Field(min_length=1, max_length=100, description="The model, e.g. G7.")
    serial: str | None = Field(
        default=None,
        max_length=100,
        description="The serial number (a device with one is the same device whoever uploads it).",
    )


class DatasetIn(BaseModel):
    """Open a data set."""

    model_config = ConfigDict(extra="forbid")

    patient_id: str | None = Field(
        default=None, max_length=32, description="Whose data; an app token's own patient when left out."
    )
    device: DeviceIn
    continuous: bool = Field(
        default=False,
        description=(
            "True: records are visible as they arrive (an app). "
            "False: when the data set is closed, all at once."
        ),
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description=(
            "Your name for the data set: opening one with the same name again returns it (a retried open)."
        ),
    )
    timezone: str | None = Field(
        default=None,
        max_length=64,
        description="IANA time zone of records given in local time; default the patient's.",
    )
    source_format: str | None = Field(
        default=None,
        max_length=40,
        description="The export format the records were read from (dexcom_clarity, libreview...), if any.",
    )

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)


class AppendOut(BaseModel):
    """What a request of records did."""

    accepted: int = Field(description="Records in the request, all valid and kept.")
    new: int | None = Field(
        description=(
            "Records stored that were not stored before (continuous data sets; open ones count at close)."
        )
    )
    first_line: int = Field(
        description="The position of the request's first record in the data set (1 = first)."
    )
    repeated: bool = Field(
        description="True when this answers a request already made with the same Idempotency-Key."
    )


class DatasetOut(BaseModel):
    """A data set."""

    id: str
    patient_id: str
    state: Literal["open", "closed", "continuous"]
    name: str | None
    format: str
    timezone: str
    device: DeviceOut | None
    records_received: int
    counts: dict[str, int]
    new: int
    duplicates: int
    first: str | None
    last: str | None
    created_at: dt.datetime
    device_latest: dict[str, str] = Field(
        description="The newest instant stored for each record type of the device (send only what is newer)."
    )
