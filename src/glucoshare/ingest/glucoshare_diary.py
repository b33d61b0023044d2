"""The manual diary (``glucoshare_diary``): what a paper blood-glucose diary holds, as JSON Lines.

Line 1 is the header ``{"format": "glucoshare-diary", "version": 1}``; every further line is one
diary row, a JSON object with a ``time`` and any of the fields below. ``time`` is the local wall
time (``2026-11-20T08:15``, in the upload's time zone) or an ISO instant with an offset. One row
may hold several values, as a paper diary row does; each becomes its own record, and the row's
line is its provenance.

==================  ==========================================================================
field               record
==================  ==========================================================================
``glucose``         ``smbg`` ``manual``, in ``unit`` (``mg/dL`` or ``mmol/L``; required with it)
``rapid_u``         ``insulin`` ``rapid`` (meal bolus by pen or syringe), units
``correction_u``    ``insulin`` ``rapid`` with ``{"purpose": "correction"}``, units
``long_u``          ``insulin`` ``long`` (background insulin), units
``carbs_g``         ``food``, grams of carbohydrate
``note``            ``note`` (its text is sealed like every note)
``carb_ratio``      with ``sensitivity`` and ``target_low``/``target_high`` (same glucose unit):
                    ``pumpSettings`` from this time on: a one-entry schedule of each (the diary's
                    ratios, as a paper diary notes them)
==================  ==========================================================================

The device is the patient's own "Glucoshare Diary" (one per patient). Rows that cannot be read are
reported with their line and reason; a file without a valid header is not this format.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator
from typing import Any, ClassVar

from glucoshare.analytics.settings import InvalidPumpSettingsError, parse_pump_settings
from glucoshare.ingest.base import (
    DeviceInfo,
    ParseContext,
    ParsedItem,
    ParsedRecord,
    ParseResult,
    RejectedRow,
    RowOrigin,
    SourceText,
    shown,
    storable_json,
)
from glucoshare.ingest.errors import MalformedFileError
from glucoshare.records.vocabulary import mmol_to_mgdl

FORMAT_NAME = "glucoshare-diary"
VERSION = 1
DEVICE = "diary"
_FIELDS = frozenset(
    {"time", "glucose", "unit", "rapid_u", "correction_u", "long_u", "carbs_g", "note", "carb_ratio",
     "sensitivity", "target_low", "target_high"}
)  # fmt: skip
_MAX_UNITS = 100.0
_MAX_CARBS = 1000.0


class DiaryRowError(ValueError):
    """One diary row that cannot be read (the message names the field, never its value)."""


def diary_header() -> str:
    """The first line of a diary document."""
    return json.dumps({"format": FORMAT_NAME, "version": VERSION})


def _number(row: dict[str, Any], field: str, upper: float) -> float | None:
    value = row.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        msg = f"{field}: not a number"
        raise DiaryRowError(msg)
    try:
        number = float(value)
    except ValueError:
        msg = f"{field}: not a number"
        raise DiaryRowError(msg) from None
    if not math.isfinite(number) or number <= 0 or number > upper:
        msg = f"{field}: must be above 0 and at most {upper:g}"
        raise DiaryRowError(msg)
    return number


def _glucose_mgdl(row: dict[str, Any], field: str) -> tuple[float, float, str] | None:
    """``(mg/dL, value as written, unit)`` of a glucose field, checked against its unit."""
    unit = row.get("unit")
    value = _number(row, field, 600.0)
    if value is None:
        return None
    if unit not in ("mg/dL", "mmol/L"):
        msg = "unit: a glucose value needs its unit, mg/dL or mmol/L"
        raise DiaryRowError(msg)
    mgdl = value if unit == "mg/dL" else mmol_to_mgdl(value)
    if not 10.0 <= mgdl <= 600.0:  # noqa: PLR2004 - what meters can show
        msg = f"{field}: out of the range meters show (10–600 mg/dL, 0.6–33.3 mmol/L)"
        raise DiaryRowError(msg)
    return mgdl, value, unit


def _row_object(text: str) -> dict[str, Any]:
    """One diary line as its JSON object, its fields checked."""
    try:
        row = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply for the decoder
        msg = "not a JSON object"
        raise DiaryRowError(msg) from None
    if not isinstance(row, dict):
        msg = "a diary row is a JSON object"
        raise DiaryRowError(msg)
    unknown = sorted(set(row) - _FIELDS)
    if unknown:
        msg = f"unknown field {shown(unknown[0])}"
        raise DiaryRowError(msg)
    return row


def _instant(row: dict[str, Any], ctx: ParseContext) -> tuple[int, int]:
    text = row.get("time")
    if not isinstance(text, str):
        msg = "time: missing; give the local time as 2026-11-20T08:15"
        raise DiaryRowError(msg)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        msg = "time: not a date and time like 2026-11-20T08:15"
        raise DiaryRowError(msg) from None
    if moment.tzinfo is not None:
        offset = moment.utcoffset()
        minutes = 0 if offset is None else int(offset.total_seconds() // 60)
        return int(moment.timestamp() * 1000), minutes
    return ctx.clock(DEVICE).resolve(moment)


class GlucoshareDiaryImporter:
    """Reads diary documents (module notes)."""

    format: ClassVar[str] = "glucoshare_diary"
    label: ClassVar[str] = "Glucoshare manual diary (JSON Lines)"

    def detect(self, head: list[str]) -> bool:
        """The first line is the diary header."""
        if not head:
            return False
        try:
            first = json.loads(head[0])
        except ValueError:
            return False
        return isinstance(first, dict) and first.get("format") == FORMAT_NAME

    def parse(self, source: SourceText, ctx: ParseContext) -> ParseResult:
        """Every row's values as records; unreadable rows are reported."""
        # Lines end at line feeds only, as detect() saw them: str.splitlines() would also split at a
        # U+2028 inside a JSON string.
        lines = [line.removesuffix("\r") for line in storable_json(source).text.split("\n")]
        header = json.loads(lines[0])
        version = header.get("version")
        if version != VERSION:
            msg = f"this diary is version {shown(str(version))}; Glucoshare reads version {VERSION}"
            raise MalformedFileError(msg)
        result = ParseResult(
            records=iter(()),
            devices={DEVICE: DeviceInfo(manufacturer="Glucoshare", model="Diary", serial=None)},
            primary_device=DEVICE,
        )
        result.records = self._records(lines, ctx, result.rejected)
        return result

    def _records(
        self, lines: list[str], ctx: ParseContext, rejected: list[RejectedRow]
    ) -> Iterator[ParsedItem]:
        for number, text in enumerate(lines[1:], start=2):
            if not text.strip():
                continue
            try:
                records = list(self._row(_row_object(text), number, ctx))
            except DiaryRowError as exc:
                rejected.append(RejectedRow(number, str(exc)))
                continue
            if not records:
                rejected.append(RejectedRow(number, "the row holds no value"))
            yield from records

    def _row(self, row: dict[str, Any], line: int, ctx: ParseContext) -> Iterator[ParsedRecord]:
        time_ms, offset = _instant(row, ctx)

        record = RowOrigin(time_ms, offset, line, DEVICE).record

        glucose = _glucose_mgdl(row, "glucose")
        if glucose is not None:
            yield record("smbg", "manual", value=glucose[0], orig_value=glucose[1], orig_unit=glucose[2])
        for field, subtype, purpose in (
            ("rapid_u", "rapid", None),
            ("correction_u", "rapid", "correction"),
            ("long_u", "long", None),
        ):
            units = _number(row, field, _MAX_UNITS)
            if units is not None:
                payload = {"purpose": purpose} if purpose else None
                yield record("insulin", subtype, value=units, payload=payload, identity=purpose or "")
        carbs = _number(row, "carbs_g", _MAX_CARBS)
        if carbs is not None:
            yield record("food", "", value=carbs)
        note = row.get("note")
        if note is not None:
            if not isinstance(note, str) or not note.strip() or len(note) > 2000:  # noqa: PLR2004
                msg = "note: text of 1 to 2000 characters"
                raise DiaryRowError(msg)
            yield record("note", "", payload={"text": note.strip()}, identity=note.strip())
        if row.get("carb_ratio") is not None or row.get("sensitivity") is not None:
            yield record("pumpSettings", "", payload=_settings(row, time_ms + offset * 60_000))


def _settings(row: dict[str, Any], local_ms: int) -> dict[str, Any]:
    """The canonical pumpSettings payload of the diary's ratios (checked by the settings analytics)."""
    ratio = _number(row, "carb_ratio", 150.0)
    sensitivity = _glucose_mgdl(row, "sensitivity")
    low, high = _glucose_mgdl(row, "target_low"), _glucose_mgdl(row, "target_high")
    payload: dict[str, Any] = {
        "basal_schedules": {},
        "active_schedule": None,
        "carb_ratios": [] if ratio is None else [{"start_min": 0, "g_per_u": ratio}],
        "sensitivities": [] if sensitivity is None else [{"start_min": 0, "mgdl_per_u": sensitivity[0]}],
        "targets": []
        if low is None or high is None
        else [{"start_min": 0, "low_mgdl": low[0], "high_mgdl": high[0]}],
        "max_bolus_u": None,
        "max_basal_u_h": None,
        "insulin_duration_h": None,
    }
    try:
        parse_pump_settings(payload, local_ms)
    except InvalidPumpSettingsError as exc:
        raise DiaryRowError(str(exc)) from None
    return payload
